"""Where the wrapper's AWS credentials come from, and the boto3 session built from them.

Precedence (the first that applies wins; a role is then assumed on top of it):

1. ``aws_access_key_id`` + ``aws_secret_access_key`` (+ ``aws_session_token``), from the
   user mapping or the server (Multicorn merges the mapping's options over the server's:
   docs/multicorn.md M2: options merge, the user mapping wins);
2. ``aws_access_key_id`` + a secret access key read from a secrets table by ``api_key_id``
   or ``api_key_name`` (Supabase Vault's option names; see :mod:`cognito_fdw.aws.secrets`);
3. ``aws_profile``: a profile of the shared config and credentials files of the database
   server's OS user;
4. botocore's default chain: environment of the server process, container or instance role,
   web identity, the default profile.

``role_arn`` (with ``external_id``, ``role_session_name``, ``role_duration_seconds``) makes
STS AssumeRole with whichever of those applies; the temporary credentials are refreshed by
botocore before they expire (15 minutes ahead), at the next request that needs them.

:func:`for_options` is the one entry point (:func:`cognito_fdw.aws.client.client_for` calls it):
it decides with :func:`resolve` (pure), reads what the source names, and hands back
:class:`Credentials` that build the session.  Nothing here writes to ``os.environ`` or to
disk.
"""

from __future__ import annotations

import dataclasses
import functools

import boto3
import botocore.credentials
import botocore.exceptions
import botocore.session

from ..errors import CredentialError, aws_answer
from ..options import Options
from . import secrets
from .vaultref import VaultRef, fingerprint, secret_use


@dataclasses.dataclass(frozen=True)
class RoleRef:
    arn: str
    session_name: str
    duration: int
    external_id: str | None = dataclasses.field(default=None, repr=False)
    sts_endpoint_url: str | None = None


@dataclasses.dataclass(frozen=True)
class Source:
    """The credential source that applies; holds no secret but a vault reference's conninfo."""

    kind: str  # "keys", "vault", "profile" or "chain"
    key_id: str | None = None
    vault: VaultRef | None = None
    profile: str | None = None
    role: RoleRef | None = None

    def describe(self) -> str:
        """Words for EXPLAIN VERBOSE and messages: where credentials come from, no values."""
        base = {
            "keys": "access keys in the options",
            "vault": f"a secret in {self.vault.relation} (by {self.vault.column})"
            if self.vault
            else "",
            "profile": f"profile {self.profile!r} of the server's OS user",
            "chain": "the default AWS credential chain of the server's OS user",
        }[self.kind]
        return f"role {self.role.arn} assumed with {base}" if self.role else base


@dataclasses.dataclass(frozen=True)
class Keys:
    access_key: str
    secret_key: str = dataclasses.field(repr=False)
    token: str | None = dataclasses.field(default=None, repr=False)


def resolve(options: Options) -> Source:
    """Decide which source applies, by the documented precedence."""
    role = None
    if options.role_arn:
        role = RoleRef(
            arn=options.role_arn,
            session_name=options.role_session_name,
            duration=options.role_duration_seconds,
            external_id=options.external_id,
            sts_endpoint_url=options.sts_endpoint_url,
        )
    if options.aws_secret_access_key:
        return Source("keys", key_id=options.aws_access_key_id, role=role)
    if options.api_key_id or options.api_key_name:
        column, value = (
            ("id", options.api_key_id) if options.api_key_id else ("name", options.api_key_name)
        )
        vault = VaultRef(
            relation=options.secrets_relation,
            column=column,
            value=value,
            conninfo=options.secrets_conninfo,
            ttl=options.secret_cache_seconds,
            key_id=options.aws_access_key_id,
            pool_id=options.user_pool_id,
            endpoint_url=options.endpoint_url,
            use=secret_use(options),
        )
        return Source("vault", key_id=options.aws_access_key_id, vault=vault, role=role)
    if options.aws_profile:
        return Source("profile", profile=options.aws_profile, role=role)
    return Source("chain", role=role)


@dataclasses.dataclass(frozen=True)
class Credentials:
    """The credentials that apply to some options, as a client needs them: where they come
    from, the keys that source names directly (a vault secret read now), and what tells
    them apart in a cache, every secret replaced by a fingerprint."""

    source: Source
    keys: Keys | None = dataclasses.field(default=None, repr=False)

    def slot(self) -> tuple:
        """What tells two sources apart."""
        vault, role = self.source.vault, self.source.role
        return (
            self.source.kind,
            self.source.key_id,
            self.source.profile,
            (vault.relation, vault.column, vault.value, fingerprint(vault.conninfo))
            if vault
            else None,
            role and (role.arn, role.session_name, role.duration, fingerprint(role.external_id)),
            role and role.sts_endpoint_url,
        )

    def version(self) -> tuple:
        """What tells two versions of the source's keys apart (a rotated secret)."""
        keys = self.keys
        return (fingerprint(keys.secret_key), fingerprint(keys.token)) if keys else ()

    def session(self, region: str) -> boto3.session.Session:
        """A boto3 session of its own; credentials live only inside it."""
        source, keys = self.source, self.keys
        base = botocore.session.Session(profile=source.profile)
        if keys is not None:
            base.set_credentials(keys.access_key, keys.secret_key, keys.token)
        try:
            if source.profile:
                # Fail here, with a message naming the option, not at the first request.
                base.get_scoped_config()
            if source.role is None:
                return boto3.session.Session(botocore_session=base, region_name=region)
            return _assumed_role_session(base, source, region)
        except botocore.exceptions.ProfileNotFound:
            raise CredentialError(
                f"AWS profile {source.profile!r} (option aws_profile) was not found",
                hint="Add the profile to ~/.aws/credentials or ~/.aws/config of the database "
                "server's OS user (or the files AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE "
                "name in its environment), then start a new session.",
            ) from None


def for_options(options: Options, table: int | None = None) -> Credentials:
    """The credentials that apply to ``options`` (:func:`resolve`), with a vault secret
    read through :func:`cognito_fdw.aws.secrets.read_secret` for foreign table ``table`` (its
    OID, or None): on the backend's thread only (OffBackendThread elsewhere),
    CredentialError when it cannot be read."""
    source = resolve(options)
    if source.kind == "keys":
        keys = Keys(source.key_id, options.aws_secret_access_key, options.aws_session_token)
    elif source.kind == "vault":
        keys = Keys(
            source.key_id, secrets.read_secret(dataclasses.replace(source.vault, table=table))
        )
    else:
        keys = None
    return Credentials(source, keys)


def _assumed_role_session(base, source: Source, region: str) -> boto3.session.Session:
    role = source.role
    base_credentials = base.get_credentials()
    if base_credentials is None:
        raise CredentialError(
            f"no credentials to assume role {role.arn} with",
            hint="AssumeRole needs credentials of its own: set keys or api_key_id/api_key_name, "
            "aws_profile, or give the database server's OS user an AWS credential chain.",
        )
    extra = {"RoleSessionName": role.session_name, "DurationSeconds": role.duration}
    if role.external_id:
        extra["ExternalId"] = role.external_id
    fetcher = botocore.credentials.AssumeRoleCredentialFetcher(
        client_creator=functools.partial(
            base.create_client, region_name=region, endpoint_url=role.sts_endpoint_url
        ),
        source_credentials=base_credentials,
        role_arn=role.arn,
        extra_args=extra,
    )
    refreshable = botocore.credentials.DeferredRefreshableCredentials(
        refresh_using=functools.partial(_fetch_role, fetcher, role), method="assume-role"
    )
    assumed = botocore.session.Session()
    assumed.register_component(
        "credential_provider",
        botocore.credentials.CredentialResolver([_Fixed(refreshable)]),
    )
    return boto3.session.Session(botocore_session=assumed, region_name=region)


def _fetch_role(fetcher, role: RoleRef):
    try:
        return fetcher.fetch_credentials()
    except botocore.exceptions.ClientError as exc:
        answer = aws_answer(exc)
        raise CredentialError(
            f"STS AssumeRole of {role.arn} failed ({answer.code})",
            hint="Check role_arn and external_id, the role's trust policy (it must trust the "
            "credentials used to assume it), and sts:AssumeRole in their IAM policy.",
            detail=answer.detail,
        ) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise CredentialError(
            f"STS AssumeRole of {role.arn} failed: {type(exc).__name__}",
            hint="Check sts_endpoint_url (leave it unset for AWS) and the credentials used "
            "to assume the role.",
            detail=str(exc),
        ) from None


class _Fixed(botocore.credentials.CredentialProvider):
    """A provider that hands botocore the refreshable credentials built above."""

    METHOD = "assume-role"

    def __init__(self, credentials):
        super().__init__()
        self._credentials = credentials

    def load(self):
        return self._credentials
