"""Request shapes of the admin API: which providers exist and what each config holds.

Imported by the admin functions only (pydantic is not needed on the unwrap path).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, field_validator, model_validator
from pydantic_core import CoreSchema

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


def _documented(pattern: re.Pattern[str] | str, description: str, default: Any = ...) -> Any:
    """A field as the API document shows it. The pattern is for the document only (the
    validators below check it, in their own words); named groups are Python's spelling, so
    they become plain groups, which JSON Schema's regular expressions read too."""
    source = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
    shown = re.sub(r"\(\?P<\w+>", "(?:", source)
    return Field(default, description=description, json_schema_extra={"pattern": shown})


def _matching(pattern: re.Pattern[str], accepted: str) -> Callable[[Any, str | None], str | None]:
    """A field check whose refusal says what is accepted."""

    def check(cls: Any, value: str | None) -> str | None:
        if value is not None and not pattern.match(value):
            raise ValueError(f"must be {accepted}")
        return value

    return classmethod(check)  # type: ignore[return-value]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class EmptyConfig(_Shape):
    """global and operator_kms_*: the key comes from deployment parameters."""


class CustomerAwsConfig(_Shape):
    region: str = _documented(rf"^{_REGION}$", "AWS region of the key, such as eu-west-1")
    key_arn: str = _documented(_KEY_ARN, "KMS key ARN or alias ARN, in region")
    role_arn: str = _documented(_ROLE_ARN, "the customer's IAM role that this tenant's session assumes")
    # Issued by the service per tenant; optional here, and refused unless it is the issued one.
    external_id: str | None = _documented(
        _EXTERNAL_ID, "the external id GET /tenants/{tenant_id}/kms/onboarding issued (left out: added)", None
    )

    check_region = field_validator("region")(_matching(re.compile(rf"^{_REGION}$"), "an AWS region such as us-east-1"))

    @field_validator("key_arn")
    @classmethod
    def _key_arn(cls, value: str) -> str:
        if not _KEY_ARN.match(value):
            raise ValueError(
                "must be a KMS key ARN or alias ARN such as arn:aws:kms:<region>:<account>:key/<key id> "
                "or arn:aws:kms:<region>:<account>:alias/<name>"
            )
        return value

    @field_validator("role_arn")
    @classmethod
    def _role_arn(cls, value: str) -> str:
        if not _ROLE_ARN.match(value):
            raise ValueError("must be an IAM role ARN such as arn:aws:iam::<account>:role/<name>")
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
    key_name: str = _documented(_GCP_KEY, "Cloud KMS key resource name")
    workload_identity_provider: str = _documented(_GCP_WIF, "the customer's workload identity pool provider")
    service_account_email: str | None = _documented(_SA_EMAIL, "a service account to impersonate, if any", None)

    check_key_name = field_validator("key_name")(
        _matching(_GCP_KEY, "projects/<project>/locations/<location>/keyRings/<ring>/cryptoKeys/<key>")
    )
    check_provider = field_validator("workload_identity_provider")(
        _matching(
            _GCP_WIF,
            "//iam.googleapis.com/projects/<project number>/locations/global/workloadIdentityPools/<pool>"
            "/providers/<provider>",
        )
    )
    check_email = field_validator("service_account_email")(
        _matching(_SA_EMAIL, "<name>@<project>.iam.gserviceaccount.com")
    )


class CustomerAzureConfig(_Shape):
    key_id: str = _documented(_AZURE_KEY, "Key Vault or Managed HSM key identifier, version optional")
    tenant_id: str = _documented(_UUID, "the customer's Entra ID tenant")
    client_id: str = _documented(_UUID, "the customer's Entra app with a federated credential for this tenant")

    check_key_id = field_validator("key_id")(
        _matching(_AZURE_KEY, "https://<vault>.vault.azure.net/keys/<name>[/<32 hex digits>] (or managedhsm.azure.net)")
    )
    check_ids = field_validator("tenant_id", "client_id")(
        _matching(_UUID, "a UUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47")
    )


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

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        """Documented as what is accepted: the config's shape follows the provider (a union
        discriminated by ``provider``). Validation stays in two steps, so each refusal names
        the provider's fields."""
        from pydantic import TypeAdapter, create_model

        variants = []
        for provider, shape in CONFIG_SHAPES.items():
            name = "Configure" + "".join(word.capitalize() for word in provider.split("_"))
            config = (shape, ...) if shape.model_fields else (shape, Field(default_factory=dict))
            model = create_model(
                name, __config__=ConfigDict(extra="forbid"), provider=(Literal[provider], ...), config=config
            )
            variants.append(model)
        union = Annotated[Union[tuple(variants)], Field(discriminator="provider")]  # noqa: UP007
        return handler(TypeAdapter(union).core_schema)

    def validated_config(self) -> dict[str, Any]:
        from pydantic import ValidationError

        try:
            found = CONFIG_SHAPES[self.provider].model_validate(self.config)
        except ValidationError as exc:
            shape = CONFIG_SHAPES[self.provider]
            accepted = list(shape.model_fields)
            raise InvalidRequest(f"config for {self.provider}: {describe_errors(exc.errors(), accepted)}") from None
        return found.model_dump(exclude_none=True)


_MESSAGES = {
    "extra_forbidden": "is not accepted",
    "missing": "is required",
    "model_attributes_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "string_type": "must be a string",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
}


def _place(loc: tuple[Any, ...]) -> str:
    """Where in the body, with a caller's own field names quoted and bounded."""
    parts = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            name = str(part)
            shown = name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name) else json.dumps(name[:40])
            parts.append(f".{shown}" if parts else shown)
    return "".join(parts) or "body"


def describe_errors(errors: list[dict[str, Any]], accepted: Sequence[str] | None = None) -> str:
    """A readable summary of validation errors that never echoes the input values: what was
    wrong where, and what is accepted there. ``accepted``: the fields the object takes."""
    parts = []
    for error in errors[:5]:
        loc = tuple(error.get("loc", ()))
        kind = error.get("type", "invalid")
        if kind == "json_invalid":
            at = next((f" at character {p}" for p in loc if isinstance(p, int)), "")
            parts.append(f"body is not valid JSON{at}; send a JSON object")
            continue
        message = _MESSAGES.get(kind)
        if kind == "literal_error":
            message = f"must be one of {(error.get('ctx') or {}).get('expected', 'the documented values')}"
        elif kind == "value_error":
            message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        elif kind == "extra_forbidden" and accepted is not None:
            message += f"; accepted fields: {', '.join(accepted)}" if accepted else "; send {} (no fields)"
        parts.append(f"{_place(tuple(p for p in loc if p != 'body'))} {message or 'is invalid'}")
    return "; ".join(parts)
