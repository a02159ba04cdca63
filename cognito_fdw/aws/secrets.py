"""Reading a secret from a Vault-style relation, from inside the server, with the right role.

Multicorn gives Python no SPI (``plpy.execute`` fails outside a PL/Python function:
docs/multicorn.md M9: Python has no SPI), so the wrapper opens a short loopback connection with
psycopg:

* **Where to:** by default the server's own first Unix socket directory, port and database
  (:func:`backend.server_address`), as the server's OS user (libpq's default user:
  ``postgres`` peer-authenticated on a stock install).  ``secrets_conninfo`` says otherwise;
  what it leaves out (host, port, dbname) is still filled in from the backend.
* **With whose privileges:** a secret the *server* names (``api_key_id``/``api_key_name``
  and ``aws_access_key_id`` in the server's own options, on a server the querying role may
  use) is the server's: it is read as the server's owner, so a role with USAGE signs with
  it without being able to read it (``GRANT SELECT`` on the secrets to the owner only),
  as long as its mapping changes nothing of how the secret is used (no ``role_arn`` of
  its own, say: :data:`vaultref.SECRET_USE_OPTIONS`).  The server is the one the
  queried foreign table is on, by its OID in the catalog (:func:`catalog.foreign_table_oid`),
  never one found by its options: a lookalike server repeating another's options (with
  limits of its own) is its own owner's, who reads the secret only if granted it.  Where
  no table is known (IMPORT FOREIGN SCHEMA) the secret is read as the current role.
  Any other (one a user mapping names) is read as the backend's current role
  (:func:`backend.current_role`), so a role that may not select it cannot use it through
  the wrapper either.  The loopback session ``SET ROLE``\\ s before it reads; its user must
  be allowed to: a superuser, or a role granted every role that uses the wrapper.
* **On which thread:** only the backend's own.  Both lookups above call into PostgreSQL,
  which no other thread may do (docs/multicorn.md H8: no PostgreSQL call off the backend thread):
  :func:`read_secret` refuses to run elsewhere, and the wrapper resolves its client (and so the
  secret) before it starts any thread (:meth:`client.Pool.pinned`).  The cache below is touched by
  that thread alone.
* **What it runs:** the relation must be owned by a superuser (it runs with a session user
  that could ``RESET ROLE``, so it must not be code an ordinary role wrote); the session has
  ``search_path`` ``pg_catalog``, ``statement_timeout`` 5 s and ``lock_timeout`` 2 s (the
  querying transaction may hold a lock the read would wait for), and the secret travels
  only as a result row: the statement text carries the secret's id or name as a parameter.
* **How long it is kept:** per backend and per role, ``secret_cache_seconds`` (default 60),
  so a rotated secret is picked up; with 0 it is read again whenever a client is resolved:
  for each request made on the backend's thread, and once per scan that uses workers.
  It is never written to ``os.environ`` or any message.

psycopg (3) is imported only when a secret is read; the runtime dependencies stay boto3.
"""

from __future__ import annotations

import time

from ..errors import CredentialError, OptionError
from ..options import parse_options
from ..pg import backend
from ..scrubbing import remember_secret
from .vaultref import VaultRef, fingerprint, secret_use

APPLICATION_NAME = "cognito_fdw secret read"
_SESSION_OPTIONS = "-c search_path=pg_catalog -c statement_timeout=5000 -c lock_timeout=2000"

_cache: dict[tuple, tuple[float, str]] = {}


def loopback_conninfo(conninfo: str | None, defaults: dict[str, str]) -> str:
    """The user's conninfo, completed with the backend's host, port and dbname (pure)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    given = conninfo_to_dict(conninfo or "")
    missing = {k: v for k, v in defaults.items() if k not in given}
    if "host" not in given and "host" not in missing:
        raise CredentialError(
            "cannot find how to connect to this server to read the secret",
            hint="The server listens on no Unix socket: set secrets_conninfo on the server, "
            "e.g. 'host=127.0.0.1 user=cognito_reader' with a matching pg_hba.conf line.",
        )
    return make_conninfo(
        conninfo or "",
        **missing,
        application_name=APPLICATION_NAME,
        options=_SESSION_OPTIONS,
        connect_timeout="5",
    )


def read_secret(ref: VaultRef) -> str:
    """The secret ``ref`` names, read as the current role; cached per role for ``ref.ttl``.

    Backend's thread only (OffBackendThread elsewhere); CredentialError when it cannot be read.
    """
    backend.require_backend_thread("secrets.read_secret")
    role_oid, role_name = backend.current_role()
    # ``ref.use`` too: whether the server's owner reads it depends on how it is used.
    key = (ref.relation, ref.column, ref.value, fingerprint(ref.conninfo), ref.use, ref.table,
           role_oid)  # fmt: skip
    now = time.monotonic()
    cached = _cache.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    secret = _fetch(ref, role_name)
    remember_secret(secret)
    for stale in [k for k, (expires, _) in _cache.items() if expires <= now]:
        del _cache[stale]
    if ref.ttl > 0:
        _cache[key] = (now + ref.ttl, secret)
    return secret


def _fetch(ref: VaultRef, role: str) -> str:
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        raise CredentialError(
            "api_key_id/api_key_name need psycopg in the database server's Python",
            hint="Install psycopg 3 where the server's Python finds it (pip install "
            "'psycopg[binary]', or the distribution's python3-psycopg), or put the keys in a "
            "user mapping instead.",
        ) from None
    conninfo = loopback_conninfo(ref.conninfo, backend.server_address())
    password = psycopg.conninfo.conninfo_to_dict(conninfo).get("password")
    if password:
        remember_secret(password)
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            qualified = _trusted_relation(conn, ref.relation)
            role = _server_owner(conn, ref, role) or role
            conn.execute("SELECT pg_catalog.set_config('role', %s, false)", (role,))
            query = sql.SQL(
                "SELECT decrypted_secret FROM {} WHERE {} OPERATOR(pg_catalog.=) %s LIMIT 2"
            ).format(sql.Identifier(*qualified), sql.Identifier(ref.column))
            rows = conn.execute(query, (ref.value,)).fetchall()
    except psycopg.Error as exc:
        raise _translated(exc, ref, role) from None
    what = f"api_key_{ref.column} {ref.value!r}"
    if not rows:
        raise CredentialError(
            f"no secret with {what} in {ref.relation} for role {role}",
            hint=f"Check api_key_{ref.column}; vault.create_secret() returns the id of a new "
            "secret, and the secret must be visible to this role.",
        )
    if len(rows) > 1:
        raise CredentialError(
            f"more than one secret with {what} in {ref.relation}",
            hint="Use api_key_id, or give the secrets distinct names.",
        )
    secret = rows[0][0]
    if not secret:
        raise CredentialError(
            f"the secret with {what} in {ref.relation} is empty or could not be decrypted",
            hint="Store the secret access key again with vault.update_secret().",
        )
    return secret


def _server_owner(conn, ref: VaultRef, role: str) -> str | None:
    """The owner of the server of the foreign table ``ref`` is read for, if ``role`` may
    use that server and its own options name this secret and use it exactly as ``ref``
    does (:func:`vaultref.secret_use`), or None: no table is known, the secret came
    from a user mapping, or a mapping changed how it is used.

    Multicorn hands the wrapper the server's and the mapping's options merged, so which one
    named the secret is read back from the catalog.  A mapping that repeats the server's
    options gets what the server would give it anyway: requests to that pool and endpoint,
    signed with that key.  One that adds anything the server does not set the same way (a
    ``role_arn`` to assume with the server's key, say) does not get the owner's rights; nor
    does a server that matches on some options but sets others (an endpoint, a role) that
    the querying server leaves out.  The candidates' options are compared here, not in SQL:
    the loopback's statements may be logged with their parameters, and the merged options
    may hold a mapping's secrets.
    """
    if ref.table is None:
        return None
    wanted = [f"api_key_{ref.column}={ref.value}", f"user_pool_id={ref.pool_id}"]
    if ref.key_id:
        wanted.append(f"aws_access_key_id={ref.key_id}")
    rows = conn.execute(
        "SELECT r.rolname, s.srvoptions FROM pg_catalog.pg_foreign_table t"
        " JOIN pg_catalog.pg_foreign_server s ON s.oid OPERATOR(pg_catalog.=) t.ftserver"
        " JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) s.srvowner"
        " WHERE t.ftrelid OPERATOR(pg_catalog.=) %s::pg_catalog.oid"
        "   AND s.srvoptions OPERATOR(pg_catalog.@>) %s::pg_catalog.text[]"
        "   AND pg_catalog.has_server_privilege(%s, s.oid, 'USAGE')",
        (ref.table, wanted, role),
    ).fetchall()
    for owner, srvoptions in rows:
        given = dict(option.partition("=")[::2] for option in srvoptions)
        given.pop("wrapper", None)
        try:
            server = parse_options({**given, "object": "users"})
        except OptionError:
            continue  # not a server the wrapper could use: never the secret's owner
        if secret_use(server) == ref.use:
            return owner
    return None


def _trusted_relation(conn, relation: str) -> tuple[str, str]:
    row = conn.execute(
        "SELECT n.nspname, c.relname, r.rolsuper FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_catalog.pg_roles r ON r.oid = c.relowner"
        " WHERE c.oid = pg_catalog.to_regclass(%s)",
        (relation,),
    ).fetchone()
    if row is None:
        raise CredentialError(
            f"secrets relation {relation} does not exist",
            hint="Install sql/vault.sql (or Supabase Vault), or set secrets_relation on the "
            "server to a relation with columns id, name and decrypted_secret.",
        )
    if not row[2]:
        raise CredentialError(
            f"secrets relation {relation} is not owned by a superuser",
            hint="The wrapper reads it over a session that could take back superuser rights, "
            "so only a superuser's relation is trusted: ALTER ... OWNER TO a superuser.",
        )
    return row[0], row[1]


def _translated(exc, ref: VaultRef, role: str) -> CredentialError:
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    message = (diag.message_primary if diag is not None else None) or str(exc).strip()
    detail = f"SQLSTATE {sqlstate}: {message}" if sqlstate else message
    if sqlstate == "42501":
        return CredentialError(
            f"role {role} may not read the secret in {ref.relation}",
            hint=f"A role that may use the secret needs GRANT USAGE on its schema and "
            f"GRANT SELECT ON {ref.relation} TO {role}; the loopback user needs membership "
            "in the role (or be a superuser) to SET ROLE to it.",
            detail=detail,
        )
    if sqlstate is None:
        return CredentialError(
            "could not connect to this server to read the secret",
            hint="Check secrets_conninfo (by default the server's own socket as its OS user) "
            "and pg_hba.conf for that connection.",
            detail=detail,
        )
    return CredentialError(
        f"reading the secret from {ref.relation} failed",
        hint="See DETAIL; check api_key_id/api_key_name and secrets_relation.",
        detail=detail,
    )
