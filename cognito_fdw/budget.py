"""The request budget of one statement: option ``max_requests_per_statement``.

The rate cap bounds how fast a statement spends the account's quota, not how much of it: a
role with SELECT only could otherwise keep every connection's budget busy for hours with
one statement (a full scan of a million users: 16,667 requests; a join or a correlated
sub-select that looks Cognito up once per outer row; an IN list of group names, one
GetGroup each).  So a statement has a budget of requests:

* a scan whose plan needs more than what is left fails before it sends anything
  (:meth:`Budget.check_plan`), naming the option, the estimate and what to do;
* every request is charged as it is made (:meth:`Budget.charge`, from any thread), and the
  one past the budget stops the statement with the same kind of error.

The budget belongs to the backend's statement (``backend.statement_started()``) and its
transaction: every scan of every table in it (each rescan of a join's inner side included)
draws on it, each request held to the limit of its own table; a procedure that COMMITs
(``app.sync_users_in_parts``) starts a budget with each transaction.  Answers from the
cache cost nothing.  The requests a COMMIT sends (the membership changes a transaction
made) are not charged: they are the statements' writes, bounded by what they wrote.
"""

from __future__ import annotations

import threading

from .errors import CognitoFdwError

OPTION = "max_requests_per_statement"
_NARROW = (
    "Narrow the statement to what Cognito can search (= or IN on username, email, sub, "
    "phone_number, ...; LIKE 'prefix%'; a LIMIT), read a mirror instead (sql/sync.sql), or "
    f"have the server's owner raise {OPTION} (a table may only lower it)."
)


class BudgetExceeded(CognitoFdwError):
    """The statement's request budget would be, or was, used up."""


class Budget:
    """The running statement's count of requests (one per backend, thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.statement = None
        self.used = 0
        self.active = False

    def claim(self, statement) -> None:
        """A scan of ``statement`` begins (backend's thread): a new statement starts at 0."""
        with self._lock:
            if statement != self.statement or not self.active:
                self.statement, self.used, self.active = statement, 0, True

    def suspend(self) -> None:
        """Requests from here on are not charged (a COMMIT's), until the next claim."""
        with self._lock:
            self.active = False
            self.statement = None

    def check_plan(self, estimate: int, limit: int, what: str) -> None:
        """Refuse a scan whose ``estimate`` of requests (described by ``what``) does not fit
        in what is left of ``limit``."""
        with self._lock:
            if not self.active or self.used + estimate <= limit:
                return
            used = self.used
        if estimate <= limit:
            # The scan alone fits: the statement's earlier scans (a join's, a sub-select's
            # earlier loops) spent the budget.
            raise self._reached(limit, used, what)
        raise BudgetExceeded(
            f"cognito_fdw: {what} would send about {estimate:,} Cognito requests, more than "
            f"{OPTION} ({limit:,}) allows; nothing was sent",
            hint=_NARROW,
            detail=f"Each request is a page of 60 users (or one lookup); at 25 requests a "
            f"second, {estimate:,} take about {estimate / 25:,.0f} s of the account's whole "
            "request-rate budget.",
        )

    def charge(self, limit: int, operation: str) -> None:
        """Count one request of ``operation``; raise when the statement has spent ``limit``."""
        with self._lock:
            if not self.active:
                return
            if self.used >= limit:
                used = self.used
            else:
                self.used += 1
                return
        raise self._reached(limit, used, f"its next {operation} request")

    @staticmethod
    def _reached(limit: int, used: int, what: str) -> BudgetExceeded:
        return BudgetExceeded(
            f"cognito_fdw: the statement reached {OPTION} ({limit:,} Cognito requests) and "
            f"was stopped before {what}",
            hint="A join or a sub-select that looks Cognito up once per outer row, and an IN "
            "list, send a request per value. " + _NARROW,
            detail=f"{used:,} requests sent by this statement.",
        )


# The backend's (a backend runs one statement at a time).
statement = Budget()


SCANS_OPTION = "max_scans_per_statement"


def check_scans(scans: int, limit: int, table: str | None) -> None:
    """Refuse a statement's scan of a table past ``limit`` scans of it.

    Multicorn allocates in C at every rescan of a foreign scan and frees it only when the
    statement ends (docs/multicorn.md H14: C allocates per rescan until the statement ends),
    about 9 kB each: a LATERAL sub-select over 200,000 outer rows grew a backend by 3 GB
    though the cache answered every scan but two.  Counting scans is the only bound Python
    can keep on it.
    """
    if scans <= limit:
        return
    raise BudgetExceeded(
        f"cognito_fdw: the statement scanned {table or 'this foreign table'} more than "
        f"{SCANS_OPTION} ({limit:,}) allows and was stopped",
        hint="A join's inner side, a LATERAL or correlated sub-select scans the table once "
        "per outer row. Let PostgreSQL hash the join (join on a text column, or on "
        "(SELECT DISTINCT key FROM ...) materialized in a WITH ... AS MATERIALIZED), "
        f"read a mirror (sql/sync.sql), or have the server's owner raise {SCANS_OPTION}.",
        detail="Each scan keeps about 9 kB in Multicorn until the statement ends.",
    )
