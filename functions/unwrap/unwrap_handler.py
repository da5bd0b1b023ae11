"""Direct invoke: a tenant's master key for internal services, from the session cache or
the provider. ``{"tenant_id", "version"?}`` -> ``{"tenant_id", "version", "key_b64", ...}``."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from tenant_kms.invoke import UNWRAP_SCHEMA, compile_schema, respond
from tenant_kms.observability import logger, metrics
from tenant_kms.service import TenantKms
from tenant_kms.settings import Settings

service = TenantKms(Settings.from_env())
check = compile_schema(UNWRAP_SCHEMA)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    def unwrap() -> dict:
        request = check(event)
        return service.unwrap(request["tenant_id"], request.get("version"), actor="internal")

    return respond(unwrap, context, service.clock)
