"""A vault secret's reference and the options it goes with, and the keyed fingerprints of
secrets in cache keys.

:mod:`cognito_fdw.aws.credentials` makes a :class:`VaultRef` from the options and has
:mod:`cognito_fdw.aws.secrets` read it; secrets checks a server's options against it with
:func:`secret_use`.  Both import this module, so neither imports the other back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os

from ..options import OPTIONS, SECRET_OPTIONS, Options

# Fingerprints of secrets in cache keys are keyed per process, so neither a repr of a cache
# nor a dump of this process's memory offers a digest to brute-force offline.
_FINGERPRINT_KEY = os.urandom(32)


def fingerprint(value: str | None) -> str | None:
    if not value:
        return None
    return hmac.new(_FINGERPRINT_KEY, value.encode(), hashlib.sha256).hexdigest()


@dataclasses.dataclass(frozen=True)
class VaultRef:
    """Which secret to read, from which relation, over which connection, kept how long."""

    relation: str
    column: str  # "id" or "name"
    value: str
    conninfo: str | None = dataclasses.field(default=None, repr=False)
    ttl: float = OPTIONS["secret_cache_seconds"].default
    # The server configuration the secret goes with: a secret a server names is read as
    # that server's owner (cognito_fdw.aws.secrets).
    key_id: str | None = None
    pool_id: str | None = None
    endpoint_url: str | None = None
    # Every option that decides how the secret is used (:func:`secret_use`): the server's
    # owner reads it only for a server whose options give exactly these.
    use: tuple = ()
    # The OID of the foreign table the secret is read for: only its own server's owner
    # reads it for it (None: read as the current role).
    table: int | None = None


# What decides where a request signed with a vault secret goes and as whom: the secret, its
# key id, the pool, the endpoints and any role assumed with it.  Every option a user mapping
# may set is here (a unit test keeps it so): a mapping that changes one of them no longer
# uses the secret as its server does.
SECRET_USE_OPTIONS = (
    "user_pool_id", "region", "endpoint_url", "aws_access_key_id", "aws_secret_access_key",
    "aws_session_token", "api_key_id", "api_key_name", "secrets_relation", "secrets_conninfo",
    "aws_profile", "role_arn", "external_id", "role_session_name", "role_duration_seconds",
    "sts_endpoint_url",
)  # fmt: skip


def secret_use(options: Options) -> tuple:
    """``((name, value), ...)`` over SECRET_USE_OPTIONS, defaults applied, each secret
    value replaced by its fingerprint (this tuple is part of a cache key)."""
    return tuple(
        (name, fingerprint(value) if name in SECRET_OPTIONS else value)
        for name in SECRET_USE_OPTIONS
        for value in [getattr(options, name)]
    )
