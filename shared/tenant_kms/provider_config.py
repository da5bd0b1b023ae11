"""Request shapes of the admin API: which providers exist and what each config holds.

Imported by the admin functions only (pydantic is not needed on the unwrap path).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tenant_kms.credentials import reject_static_credentials
from tenant_kms.errors import InvalidRequest

PROVIDERS = (
    "global",
    "operator_kms_aws",
    "operator_kms_gcp",
    "operator_kms_azure",
    "customer_kms_aws",
    "customer_kms_gcp",
    "customer_kms_azure",
)
ProviderName = Literal[
    "global",
    "operator_kms_aws",
    "operator_kms_gcp",
    "operator_kms_azure",
    "customer_kms_aws",
    "customer_kms_gcp",
    "customer_kms_azure",
]

_REGION = r"[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d"
_PARTITION = r"aws(?:-cn|-us-gov|-iso|-iso-b)?"
_KEY_ARN = re.compile(
    rf"^arn:(?P<partition>{_PARTITION}):kms:(?P<region>{_REGION}):(?P<account>\d{{12}}):"
    r"(?:key/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|key/mrk-[0-9a-f]{32}|alias/[A-Za-z0-9/_-]{1,250})$"
)
_ROLE_ARN = re.compile(rf"^arn:{_PARTITION}:iam::\d{{12}}:role/[\w+=,.@/-]{{1,512}}$")
_EXTERNAL_ID = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
_GCP_KEY = re.compile(
    r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/locations/[a-z0-9-]+/keyRings/[\w-]{1,63}/cryptoKeys/[\w-]{1,63}$"
)
_GCP_WIF = re.compile(
    r"^//iam\.googleapis\.com/projects/\d{1,20}/locations/global/workloadIdentityPools/[a-z0-9-]{4,32}"
    r"/providers/[a-z0-9-]{4,32}$"
)
_SA_EMAIL = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9-]+\.iam\.gserviceaccount\.com$")
_AZURE_KEY = re.compile(
    r"^https://[a-zA-Z0-9-]{3,24}\.(?:vault\.azure\.net|managedhsm\.azure\.net)/keys/[a-zA-Z0-9-]{1,127}(?:/[0-9a-f]{32})?$"
)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class EmptyConfig(_Shape):
    """global and operator_kms_*: the key comes from deployment parameters."""


class CustomerAwsConfig(_Shape):
    region: str = Field(pattern=rf"^{_REGION}$")
    key_arn: str
    role_arn: str
    # Issued by the service per tenant; optional here, and refused unless it is the issued one.
    external_id: str | None = None

    @field_validator("key_arn")
    @classmethod
    def _key_arn(cls, value: str) -> str:
        if not _KEY_ARN.match(value):
            raise ValueError("must be a KMS key ARN or alias ARN")
        return value

    @field_validator("role_arn")
    @classmethod
    def _role_arn(cls, value: str) -> str:
        if not _ROLE_ARN.match(value):
            raise ValueError("must be an IAM role ARN")
        return value

    @field_validator("external_id")
    @classmethod
    def _external_id(cls, value: str | None) -> str | None:
        if value is not None and not _EXTERNAL_ID.match(value):
            raise ValueError("must be 2-1224 characters of letters, digits and +=,.@:/-_")
        return value

    @model_validator(mode="after")
    def _region_matches_key(self) -> CustomerAwsConfig:
        key_region = _KEY_ARN.match(self.key_arn)["region"]
        if key_region != self.region:
            raise ValueError(f"key_arn is in {key_region}, config region is {self.region}")
        return self


class CustomerGcpConfig(_Shape):
    key_name: str = Field(pattern=_GCP_KEY.pattern)
    workload_identity_provider: str = Field(pattern=_GCP_WIF.pattern)
    service_account_email: str | None = Field(default=None, pattern=_SA_EMAIL.pattern)


class CustomerAzureConfig(_Shape):
    key_id: str = Field(pattern=_AZURE_KEY.pattern)
    tenant_id: str = Field(pattern=_UUID.pattern)
    client_id: str = Field(pattern=_UUID.pattern)


CONFIG_SHAPES: dict[str, type[_Shape]] = {
    "global": EmptyConfig,
    "operator_kms_aws": EmptyConfig,
    "operator_kms_gcp": EmptyConfig,
    "operator_kms_azure": EmptyConfig,
    "customer_kms_aws": CustomerAwsConfig,
    "customer_kms_gcp": CustomerGcpConfig,
    "customer_kms_azure": CustomerAzureConfig,
}


class ConfigureRequest(BaseModel):
    """Body of ``PUT /tenants/{tenant_id}/kms``."""

    model_config = ConfigDict(extra="forbid")

    provider: ProviderName
    config: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _no_static_credentials(cls, data: Any) -> Any:
        # Raised as a domain error (not ValueError) so it is answered with its own code.
        reject_static_credentials(data)
        return data

    def validated_config(self) -> dict[str, Any]:
        from pydantic import ValidationError

        try:
            shape = CONFIG_SHAPES[self.provider].model_validate(self.config)
        except ValidationError as exc:
            raise InvalidRequest(f"config for {self.provider}: {describe_errors(exc.errors())}") from None
        return shape.model_dump(exclude_none=True)


def describe_errors(errors: list[dict[str, Any]]) -> str:
    """A readable summary of validation errors that never echoes the input values."""
    parts = []
    for error in errors[:5]:
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        kind = error.get("type", "invalid")
        message = {
            "extra_forbidden": "is not allowed",
            "missing": "is required",
            "json_invalid": "is not valid JSON",
            "literal_error": "is not one of the allowed values",
            "model_attributes_type": "must be a JSON object",
            "dict_type": "must be a JSON object",
            "string_type": "must be a string",
            "string_pattern_mismatch": "has the wrong format",
            "int_parsing": "must be a whole number",
            "int_type": "must be a whole number",
        }.get(kind)
        if message is None and kind == "value_error":
            message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        parts.append(f"{location} {message or 'is invalid'}")
    return "; ".join(parts)
