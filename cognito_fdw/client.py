"""The only module that talks to Cognito: clients, paging, and request accounting.

Clients live at module level, one per backend and configuration: a wrapper instance is
re-created whenever options change, and creating a boto3 client costs ~70 ms, so the
instances share them (facts sheet section 8).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Iterator, Mapping

import boto3
import botocore.config
import botocore.exceptions

from . import __version__
from .errors import CognitoApiError, from_botocore_error, from_client_error
from .options import Options
from .ratelimit import limiter_for

PAGE_SIZE = 60  # ListUsers' maximum (and default); real Cognito rejects 61
DEFAULT_ESTIMATE = 1000

_clients: dict[tuple, object] = {}
_descriptions: dict[tuple, tuple[float, Mapping]] = {}
_lock = threading.Lock()


@dataclasses.dataclass
class Stats:
    """What one scan cost: requests sent (retries not counted), rows seen, time taken."""

    requests: int = 0
    rows: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)

    def summary(self) -> str:
        ms = (time.monotonic() - self.started) * 1000
        return f"{self.requests} requests, {self.rows} rows, {ms:.0f} ms"


def _fingerprint(value: str | None) -> str | None:
    # Cache keys hold a digest, not the secret, so no repr of the cache can leak it.
    return hashlib.sha256(value.encode()).hexdigest() if value else None


def client_for(options: Options):
    key = (
        options.region,
        options.endpoint_url,
        options.aws_access_key_id,
        _fingerprint(options.aws_secret_access_key),
        _fingerprint(options.aws_session_token),
        options.connect_timeout,
        options.read_timeout,
        options.max_attempts,
        options.retry_mode,
    )
    with _lock:
        client = _clients.get(key)
        if client is None:
            # A session of its own: credentials stay in this object, never in os.environ.
            session = boto3.session.Session(
                aws_access_key_id=options.aws_access_key_id,
                aws_secret_access_key=options.aws_secret_access_key,
                aws_session_token=options.aws_session_token,
                region_name=options.region,
            )
            config = botocore.config.Config(
                connect_timeout=options.connect_timeout,
                read_timeout=options.read_timeout,
                retries={"mode": options.retry_mode, "max_attempts": options.max_attempts},
                user_agent_extra=f"cognito-fdw/{__version__}",
                # One connection per scan worker (at most 16) and the main thread.
                max_pool_connections=20,
            )
            client = session.client("cognito-idp", endpoint_url=options.endpoint_url, config=config)
            _clients[key] = client
        return client


class Pool:
    """One user pool, reached with one configuration."""

    def __init__(self, options: Options):
        self.options = options
        self.client = client_for(options)
        # Keyed by endpoint and account: the quota Cognito enforces is per account and region.
        self.limiter = limiter_for(
            (options.region, options.endpoint_url, options.aws_access_key_id),
            options.max_requests_per_second,
        )

    def call(self, operation: str, stats: Stats | None = None, **params) -> Mapping:
        """Call a Cognito API by its Python name; translate every failure."""
        if stats is not None:
            stats.requests += 1
        self.limiter.acquire()
        try:
            return getattr(self.client, operation)(UserPoolId=self.options.user_pool_id, **params)
        except botocore.exceptions.ClientError as exc:
            raise from_client_error(exc, _api_name(operation), self.options.user_pool_id) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise from_botocore_error(
                exc, _api_name(operation), self.options.endpoint_url or "AWS"
            ) from None

    def list_users(
        self, stats: Stats, filter: str | None = None, limit: int | None = None
    ) -> Iterator[Mapping]:
        """Page through ListUsers, yielding users as each page arrives.

        ``limit`` bounds the users asked for (an emulator may still send more, so callers
        apply their own limit too).
        """
        for page in self.list_user_pages(stats, filter, limit):
            yield from page

    def list_user_pages(
        self, stats: Stats, filter: str | None = None, limit: int | None = None
    ) -> Iterator[list]:
        """Page through ListUsers, yielding each page's users as a list.

        Short or empty pages with a token are followed; a token seen before is an error,
        not a loop.
        """
        token, seen, remaining = None, set(), limit
        while remaining is None or remaining > 0:
            params = {"Limit": PAGE_SIZE if remaining is None else min(PAGE_SIZE, remaining)}
            if filter:
                params["Filter"] = filter
            if token:
                params["PaginationToken"] = token
            page = self.call("list_users", stats, **params)
            users = page.get("Users") or []
            stats.rows += len(users)
            yield users
            if remaining is not None:
                remaining -= len(users)
            token = page.get("PaginationToken")
            if not token:
                return
            if token in seen:
                raise CognitoApiError(
                    "Cognito ListUsers returned a pagination token it had already returned; "
                    "stopped instead of reading the same users again",
                    hint="This is a fault of the endpoint. Retry the query; if it persists, "
                    "report it to the endpoint's operator (or AWS support).",
                    detail=f"after {stats.requests} requests and {stats.rows} users",
                    code="RepeatedPaginationToken",
                )
            seen.add(token)

    def describe(self) -> Mapping:
        """DescribeUserPool's UserPool, cached per backend for a while (its quota is 15/s)."""
        key = (self.options.region, self.options.endpoint_url, self.options.user_pool_id)
        cached = _descriptions.get(key)
        if cached and time.monotonic() - cached[0] < self.options.describe_ttl:
            return cached[1]
        pool = self.call("describe_user_pool")["UserPool"]
        _descriptions[key] = (time.monotonic(), pool)
        return pool

    def get_user(self, stats: Stats, username: str) -> Mapping | None:
        """AdminGetUser: the user, or None when there is no such user."""
        try:
            user = self.call("admin_get_user", stats, Username=username)
        except CognitoApiError as exc:
            if exc.code == "UserNotFoundException":
                return None
            raise
        stats.rows += 1
        return user

    def custom_attributes(self) -> dict[str, str]:
        """The pool's custom attributes: ``custom:x`` (or ``dev:custom:x``) -> data type."""
        return {
            attr["Name"]: attr.get("AttributeDataType", "String")
            for attr in self.describe().get("SchemaAttributes", [])
            if attr["Name"].startswith(("custom:", "dev:custom:"))
        }

    def estimated_users(self) -> int:
        """The planner's row estimate; an emulator that reports 0 or nothing gets a default."""
        return int(self.describe().get("EstimatedNumberOfUsers") or 0) or DEFAULT_ESTIMATE


def _api_name(operation: str) -> str:
    return "".join(part.capitalize() for part in operation.split("_"))
