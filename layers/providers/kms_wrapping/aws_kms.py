"""AWS KMS adapters: ``operator_kms_aws`` (the key-wrapping role) and ``customer_kms_aws``
(from the tenant's session of the key-wrapping role, STS AssumeRole into the customer's role
with the external id the service issued to that tenant, then the customer's key).

Every call carries the binding as EncryptionContext. The KeyId KMS answers with must belong
to the configured key; the resolved key ARN is what a version records. Retries are
botocore's own (standard mode); what persists past them is ``ProviderUnavailable``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import DeferredRefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

from kms_wrapping.base import (
    KeyAccessRefused,
    KeyWrapper,
    ProviderConfigInvalid,
    ProviderUnavailable,
    WrapContext,
    WrappedKey,
)
from kms_wrapping.deadline import bounded_by_deadline
from kms_wrapping.identity import TenantSessions, refreshable_credentials

_KEY_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):kms:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<kind>key|alias)/(?P<id>.+)$"
)

# Codes meaning "the key holder says no": on an unwrap they seal the tenant.
REFUSALS = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "DisabledException",
        "NotFoundException",
        "KMSInvalidStateException",  # unless a custom key store says why (see _invalid_state)
        "IncorrectKeyException",
        "InvalidCiphertextException",
        "InvalidKeyUsageException",
        "KMSInvalidSignatureException",
        "RegionDisabledException",
    }
)
# Codes about the credentials WE sent (our session, our clock), not about the customer's key
# or role: fixing them is on us, so they never seal a tenant.
OUR_CREDENTIALS = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "RequestExpired",
    }
)
# Words in a KMSInvalidStateException message that blame a custom key store's connection
# (CloudHSM cluster or external key store proxy), not the key's own state. Cryptographic
# operations on external key stores answer every connection and proxy fault with
# KMSInvalidStateException; the key's own state (PendingDeletion, PendingImport, Disabled)
# is the customer's decision.
_KEY_STORE_FAULT = re.compile(
    r"custom key store|key store proxy|external key store|xks|cloudhsm|\bhsm|cluster|unavailable|"
    r"not connected|disconnected|timed? ?out|did not respond|network",
    re.IGNORECASE,
)
_KEY_STATE = re.compile(r"pending ?deletion|pending ?import|disabled|pending ?replica ?deletion", re.IGNORECASE)
# Codes botocore retries and that stay transient when they persist.
TRANSIENT = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "LimitExceededException",
        "KMSInternalException",
        "DependencyTimeoutException",
        "KeyUnavailableException",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


def client_config(*, max_attempts: int, connect_timeout: float, read_timeout: float) -> Config:
    return Config(
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )


def parse_key_arn(key_arn: str) -> dict[str, str]:
    match = _KEY_ARN.match(key_arn)
    if not match:
        raise ProviderConfigInvalid("key_arn must be a KMS key ARN or alias ARN")
    return match.groupdict()


def _normalise(error: Exception, action: str) -> Exception:
    """Map an SDK error onto the adapter's three outcomes. Messages carry ids, never key material."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        code = "" if code.isdigit() else code  # botocore's stand-in when the body had no code
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        operation = getattr(error, "operation_name", action)
        if code in OUR_CREDENTIALS:
            return ProviderUnavailable(f"{operation} failed: our credentials were not accepted ({code})")
        if code == "KMSInvalidStateException" and _key_store_fault(error):
            return ProviderUnavailable(f"{operation} failed: the key's custom key store is not reachable ({code})")
        if code in REFUSALS or (status in (401, 403) and code not in TRANSIENT):
            return KeyAccessRefused(f"{operation} refused: {code or 'AccessDenied'} (HTTP {status})")
        if code in TRANSIENT or status >= 500 or status == 429:
            return ProviderUnavailable(f"{operation} failed after retries: {code or status}")
        return KeyAccessRefused(f"{operation} refused: {code or status}")
    if isinstance(error, (ConnectionError, HTTPClientError)):
        return ProviderUnavailable(f"{action}: KMS did not answer ({type(error).__name__})")
    if isinstance(error, BotoCoreError):
        return ProviderUnavailable(f"{action}: {type(error).__name__}")
    return error


def _key_store_fault(error: ClientError) -> bool:
    message = str(error.response.get("Error", {}).get("Message", ""))
    return bool(_KEY_STORE_FAULT.search(message)) and not _KEY_STATE.search(message)


class AwsKmsWrapper(KeyWrapper):
    def __init__(self, *, provider: str, key_arn: str, kms_client: Any) -> None:
        self.provider = provider
        self._key_arn = key_arn
        self._key = parse_key_arn(key_arn)
        self._kms = bounded_by_deadline(kms_client)

    def __repr__(self) -> str:
        return f"AwsKmsWrapper(provider={self.provider!r}, key_arn={self._key_arn!r})"

    def _belongs(self, answered_key_id: str) -> bool:
        if self._key["kind"] == "key":
            return answered_key_id == self._key_arn
        # An alias resolves to a key of the same account and region; KMS answers with the key's ARN.
        answered = _KEY_ARN.match(answered_key_id or "")
        return bool(
            answered
            and answered["kind"] == "key"
            and (answered["account"], answered["region"]) == (self._key["account"], self._key["region"])
        )

    def current_key_id(self, tenant_id: str) -> str:
        # A key ARN is what KMS answers; an alias may point at another key by now: ask.
        return self._key_arn if self._key["kind"] == "key" else super().current_key_id(tenant_id)

    def _wrap(self, plaintext: bytes, context: WrapContext) -> WrappedKey:
        try:
            answer = self._kms.encrypt(
                KeyId=self._key_arn, Plaintext=plaintext, EncryptionContext=context.as_encryption_context()
            )
        except Exception as exc:
            raise _normalise(exc, "Encrypt") from None
        if not self._belongs(answer.get("KeyId", "")):
            raise KeyAccessRefused(f"KMS encrypted under {answer.get('KeyId')}, not the configured {self._key_arn}")
        return WrappedKey(key_id=answer["KeyId"], ciphertext=answer["CiphertextBlob"])

    def _unwrap(self, wrapped: WrappedKey, context: WrapContext) -> bytes:
        try:
            answer = self._kms.decrypt(
                CiphertextBlob=wrapped.ciphertext,
                KeyId=wrapped.key_id,
                EncryptionContext=context.as_encryption_context(),
            )
        except Exception as exc:
            raise _normalise(exc, "Decrypt") from None
        if answer.get("KeyId") != wrapped.key_id:
            raise KeyAccessRefused(f"KMS decrypted with {answer.get('KeyId')}, not {wrapped.key_id}")
        return answer["Plaintext"]


def role_session_name(tenant_id: str) -> str:
    """STS session names show up in the customer's CloudTrail: name the tenant."""
    return re.sub(r"[^\w+=,.@-]", "-", f"tenant-kms-{tenant_id}")[:64]


def assumed_role_session(
    *,
    sts_client: Any,
    role_arn: str,
    external_id: str | Callable[[], str | None],
    session_name: str,
    duration_seconds: int = 3600,
    max_age_seconds: int | None = None,
    time_fetcher: Callable[[], Any] | None = None,
) -> boto3.Session:
    """A session whose credentials come from AssumeRole and are refreshed before they expire.

    ``external_id`` may be a callable, asked at every AssumeRole (so it is always the current one).
    ``max_age_seconds``: credentials older than this are replaced by a new AssumeRole, which
    must succeed, so a customer who removes our trust is heeded within that time.
    """
    if not external_id:
        raise ProviderConfigInvalid("external_id is required to assume a customer role")
    bounded_by_deadline(sts_client)

    def fetch() -> dict[str, str]:
        current = external_id() if callable(external_id) else external_id
        if not current:
            raise KeyAccessRefused("no external id has been issued to this tenant; see its onboarding answer")
        try:
            answer = sts_client.assume_role(
                RoleArn=role_arn,
                RoleSessionName=session_name,
                ExternalId=current,
                DurationSeconds=duration_seconds,
            )
        except Exception as exc:
            raise _normalise(exc, "AssumeRole") from None
        return refreshable_credentials(answer)

    core = botocore.session.get_session()
    # botocore refreshes these ahead of expiry (advisory 15 min, mandatory 10 min).
    credentials = DeferredRefreshableCredentials(
        refresh_using=fetch, method="sts-assume-role", **({"time_fetcher": time_fetcher} if time_fetcher else {})
    )
    if max_age_seconds is not None:
        # Both windows alike: a failed advisory refresh would keep using the old credentials.
        remaining = max(0, duration_seconds - max_age_seconds)
        credentials._advisory_refresh_timeout = credentials._mandatory_refresh_timeout = remaining
    core._credentials = credentials
    return boto3.Session(botocore_session=core)


def operator_wrapper(*, key_arn: str, config: Config, session: Any = None) -> KeyWrapper:
    """The operator's key, called as the key-wrapping role (or the function's own role)."""
    session = session or boto3.session.Session()
    client = session.client("kms", region_name=parse_key_arn(key_arn)["region"], config=config)
    return AwsKmsWrapper(provider="operator_kms_aws", key_arn=key_arn, kms_client=client)


def customer_wrapper(
    tenant_config: dict[str, Any],
    tenant_id: str,
    *,
    config: Config,
    external_id: Callable[[], str | None],
    sessions: TenantSessions,
    allowed_accounts: frozenset[str] = frozenset(),
    max_session_age_seconds: int | None = None,
) -> KeyWrapper:
    """The customer's key, through their role, as this tenant's session of the key-wrapping role.

    ``external_id`` answers the id the service issued to the tenant; the config's copy is not used.
    """
    key = parse_key_arn(tenant_config["key_arn"])
    role_account = tenant_config["role_arn"].split(":")[4]
    if allowed_accounts and role_account not in allowed_accounts:
        raise ProviderConfigInvalid(f"account {role_account} is not one this deployment may assume roles in")
    if key["region"] != tenant_config["region"]:
        raise ProviderConfigInvalid("key_arn is not in the config's region")
    # The customer's trust sees this tenant's session, never a principal shared by every tenant.
    sts = sessions.session(tenant_id).client("sts", region_name=tenant_config["region"], config=config)
    session = assumed_role_session(
        sts_client=sts,
        role_arn=tenant_config["role_arn"],
        external_id=external_id,
        session_name=role_session_name(tenant_id),
        max_age_seconds=max_session_age_seconds,
    )
    kms = session.client("kms", region_name=key["region"], config=config)
    return AwsKmsWrapper(provider="customer_kms_aws", key_arn=tenant_config["key_arn"], kms_client=kms)
