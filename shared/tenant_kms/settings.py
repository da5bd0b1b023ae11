"""Deployment settings, read from the environment in this one place."""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# jwt: API Gateway's JWT authorizer (the deployed API). lambda: a Lambda authorizer's context
# (sam local start-api, which runs no JWT authorizer; see local/sam_local.py).
ADMIN_AUTHORIZERS = ("jwt", "lambda")


class ConfigurationError(RuntimeError):
    """A deployment setting is missing or malformed; the function cannot start."""


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"setting {name} is required")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"setting {name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"setting {name} must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    config_table: str
    key_version_table: str
    tenant_data_table: str
    region: str
    session_ttl_seconds: int = 3600
    byok_session_ttl_seconds: int = 300
    # Memory the session cache may take per function instance; its least recently used keys
    # go beyond it.
    session_cache_mb: int = 64
    max_body_bytes: int = 16 * 1024
    max_record_bytes: int = 256 * 1024
    master_key_secret_id: str = ""
    master_key_b64: str = field(default="", repr=False)
    operator_kms_aws_key_arn: str = ""
    customer_account_ids: frozenset[str] = frozenset()
    kms_max_attempts: int = 4
    kms_connect_timeout_seconds: int = 2
    kms_read_timeout_seconds: int = 5
    operator_gcp_key_name: str = ""
    operator_gcp_workload_identity_provider: str = ""
    operator_gcp_service_account: str = ""
    operator_azure_key_id: str = ""
    operator_azure_tenant_id: str = ""
    operator_azure_client_id: str = ""
    # How recent a login the routes that change a tenant's key protection ask for (auth_time).
    step_up_max_age_seconds: int = 300
    unseal_step_up_max_age_seconds: int = 120
    # Which API Gateway authorizer's output carries the admin caller's claims.
    admin_authorizer: str = "jwt"
    # The one role every provider call runs as, in a session per tenant (empty: local runs
    # use the function's own credentials).
    key_wrapping_role_arn: str = ""
    # This deployment as an OIDC issuer towards Entra ID, and the KMS key that signs for it.
    federation_issuer_url: str = ""
    federation_signing_key_id: str = ""
    # Idempotency records of POST /tenants/{tenant_id}/keys (only the provision function has it).
    idempotency_table: str = ""
    # Records sealed under one key version before the next is provisioned. AES-GCM with random
    # 96-bit nonces: NIST SP 800-38D (8.3) allows at most 2^32 encryptions per key, which keeps
    # the chance of a repeated nonce under 2^-32; 2^30 stays well inside that (about 2^-37) and
    # leaves room for what callers encrypt with keys the unwrap function hands out, which no
    # count here sees.
    key_usage_budget: int = 2**30
    # Seconds an admin route may take, counted from the request's start: API Gateway's HTTP API
    # cuts a request at 30 s, so every provider and table call gets what is left of this.
    admin_route_deadline_seconds: int = 25
    # Jobs (rewrap, the purge of an erased tenant's records): their table, the queue their
    # units of work go through (empty: nothing sends them, a direct invoke drives the job),
    # and the rate per tenant: so many records a batch, one batch every so many seconds.
    job_table: str = ""
    job_queue_url: str = ""
    rewrap_batch_records: int = 100
    rewrap_batch_interval_seconds: int = 5
    # Sweeps: visits and positions, and the queues each sweep's units go to (only the
    # functions that run that sweep have its queue).
    sweep_table: str = ""
    reverify_queue_url: str = ""
    repoll_queue_url: str = ""
    rewrap_sweep_queue_url: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        settings = cls(
            config_table=_required(env, "CONFIG_TABLE"),
            key_version_table=_required(env, "KEY_VERSION_TABLE"),
            tenant_data_table=_required(env, "TENANT_DATA_TABLE"),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            session_ttl_seconds=_int(env, "SESSION_TTL_SECONDS", 3600, low=1, high=86400),
            # The BYOK TTL bounds how long a revoked grant keeps working: never above 300 s.
            byok_session_ttl_seconds=_int(env, "BYOK_SESSION_TTL_SECONDS", 300, low=1, high=300),
            session_cache_mb=_int(env, "SESSION_CACHE_MB", 64, low=1, high=8192),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 16 * 1024, low=1024, high=1024 * 1024),
            max_record_bytes=_int(env, "MAX_RECORD_BYTES", 256 * 1024, low=1, high=300 * 1024),
            master_key_secret_id=env.get("MASTER_KEY_SECRET_ID", "").strip(),
            master_key_b64=env.get("MASTER_KEY_B64", "").strip(),
            operator_kms_aws_key_arn=env.get("OPERATOR_KMS_KEY_ARN", "").strip(),
            customer_account_ids=frozenset(
                a.strip() for a in env.get("CUSTOMER_ACCOUNT_IDS", "").split(",") if a.strip()
            ),
            kms_max_attempts=_int(env, "KMS_MAX_ATTEMPTS", 4, low=1, high=10),
            kms_connect_timeout_seconds=_int(env, "KMS_CONNECT_TIMEOUT_SECONDS", 2, low=1, high=30),
            kms_read_timeout_seconds=_int(env, "KMS_READ_TIMEOUT_SECONDS", 5, low=1, high=60),
            operator_gcp_key_name=env.get("OPERATOR_GCP_KEY_NAME", "").strip(),
            operator_gcp_workload_identity_provider=env.get("OPERATOR_GCP_WORKLOAD_IDENTITY_PROVIDER", "").strip(),
            operator_gcp_service_account=env.get("OPERATOR_GCP_SERVICE_ACCOUNT", "").strip(),
            operator_azure_key_id=env.get("OPERATOR_AZURE_KEY_ID", "").strip(),
            operator_azure_tenant_id=env.get("OPERATOR_AZURE_TENANT_ID", "").strip(),
            operator_azure_client_id=env.get("OPERATOR_AZURE_CLIENT_ID", "").strip(),
            step_up_max_age_seconds=_int(env, "STEP_UP_MAX_AGE_SECONDS", 300, low=1, high=86400),
            unseal_step_up_max_age_seconds=_int(env, "UNSEAL_STEP_UP_MAX_AGE_SECONDS", 120, low=1, high=86400),
            admin_authorizer=env.get("ADMIN_AUTHORIZER", "").strip() or "jwt",
            key_wrapping_role_arn=env.get("KEY_WRAPPING_ROLE_ARN", "").strip(),
            federation_issuer_url=env.get("FEDERATION_ISSUER_URL", "").strip().rstrip("/"),
            federation_signing_key_id=env.get("FEDERATION_SIGNING_KEY_ID", "").strip(),
            idempotency_table=env.get("IDEMPOTENCY_TABLE", "").strip(),
            key_usage_budget=_int(env, "KEY_USAGE_BUDGET", 2**30, low=1, high=2**32),
            admin_route_deadline_seconds=_int(env, "ADMIN_ROUTE_DEADLINE_SECONDS", 25, low=1, high=29),
            job_table=env.get("JOB_TABLE", "").strip(),
            job_queue_url=env.get("JOB_QUEUE_URL", "").strip(),
            rewrap_batch_records=_int(env, "REWRAP_BATCH_RECORDS", 100, low=1, high=1000),
            # SQS delays a message by 900 s at most.
            rewrap_batch_interval_seconds=_int(env, "REWRAP_BATCH_INTERVAL_SECONDS", 5, low=0, high=900),
            sweep_table=env.get("SWEEP_TABLE", "").strip(),
            reverify_queue_url=env.get("REVERIFY_QUEUE_URL", "").strip(),
            repoll_queue_url=env.get("REPOLL_QUEUE_URL", "").strip(),
            rewrap_sweep_queue_url=env.get("REWRAP_SWEEP_QUEUE_URL", "").strip(),
        )
        if settings.admin_authorizer not in ADMIN_AUTHORIZERS:
            raise ConfigurationError(
                f"setting ADMIN_AUTHORIZER must be one of {', '.join(ADMIN_AUTHORIZERS)}, "
                f"got {settings.admin_authorizer!r}"
            )
        if not settings.master_key_b64 and not settings.master_key_secret_id:
            raise ConfigurationError("set MASTER_KEY_SECRET_ID (deployments) or MASTER_KEY_B64 (local runs)")
        if settings.master_key_b64:
            decode_master_keys(settings.master_key_b64, "MASTER_KEY_B64")
        if any(not re.fullmatch(r"\d{12}", a) for a in settings.customer_account_ids):
            raise ConfigurationError("setting CUSTOMER_ACCOUNT_IDS must be comma-separated 12-digit account ids")
        if settings.operator_kms_aws_key_arn and not re.fullmatch(
            r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/.+", settings.operator_kms_aws_key_arn
        ):
            raise ConfigurationError("setting OPERATOR_KMS_KEY_ARN must be a KMS key or alias ARN")
        if settings.key_wrapping_role_arn and not re.fullmatch(
            r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", settings.key_wrapping_role_arn
        ):
            raise ConfigurationError("setting KEY_WRAPPING_ROLE_ARN must be an IAM role ARN")
        if settings.federation_issuer_url and not re.fullmatch(r"https://[^\s?#]+", settings.federation_issuer_url):
            raise ConfigurationError("setting FEDERATION_ISSUER_URL must be an https URL without query or fragment")
        if settings.operator_gcp_key_name and not settings.operator_gcp_workload_identity_provider:
            raise ConfigurationError(
                "setting OPERATOR_GCP_WORKLOAD_IDENTITY_PROVIDER is required with OPERATOR_GCP_KEY_NAME"
            )
        if settings.operator_azure_key_id and not (
            settings.operator_azure_tenant_id and settings.operator_azure_client_id
        ):
            raise ConfigurationError(
                "settings OPERATOR_AZURE_TENANT_ID and OPERATOR_AZURE_CLIENT_ID are required with OPERATOR_AZURE_KEY_ID"
            )
        return settings


def decode_master_key(encoded: str, source: str) -> bytes:
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{source} is not valid base64") from None
    if len(key) != 32:
        raise ConfigurationError(f"{source} must decode to 32 bytes, got {len(key)}")
    return key


def decode_master_keys(encoded: str, source: str) -> list[bytes]:
    """One base64 master key, or several separated by commas, the current one first."""
    parts = [part.strip() for part in encoded.split(",")]
    if len(parts) == 1:
        return [decode_master_key(parts[0], source)]
    if not all(parts):
        raise ConfigurationError(f"{source} has an empty entry in its comma-separated keys")
    return [decode_master_key(part, f"{source} (key {number})") for number, part in enumerate(parts, 1)]
