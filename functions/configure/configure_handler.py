"""Admin API: configure a tenant's wrapping key (probe first), show its config and status, and
answer what a customer must trust for this tenant (onboarding).

Also serves API Gateway's ``$default`` route, so unknown routes get the API's error model.
"""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tenant_kms.api import admin_resolver, current_caller, handle_admin, json_response, routed_tenant
from tenant_kms.identity import onboarding
from tenant_kms.observability import logger, metrics
from tenant_kms.openapi import answers
from tenant_kms.provider_config import ConfigureRequest
from tenant_kms.service import TenantKms, iso
from tenant_kms.settings import Settings
from tenant_kms.tracing import tracer

settings = Settings.from_env()
service = TenantKms(settings)
app = admin_resolver()


@app.put(
    "/tenants/<tenant_id>/kms",
    operation_id="configure",
    **answers(
        200,
        "ConfigView",
        409,
        415,
        422,
        503,
        description="Probed, stored, and a new version provisioned under it (the same config again: probed only)",
    ),
)
def configure(request: ConfigureRequest):
    config = request.validated_config()
    return json_response(
        200, service.configure(routed_tenant(app), request.provider, config, actor=current_caller(app).actor)
    )


@app.get(
    "/tenants/<tenant_id>/kms",
    operation_id="config",
    **answers(200, "ConfigView", 503, description="The config and status"),
)
def show():
    return json_response(200, service.config_view(routed_tenant(app)))


@app.get(
    "/tenants/<tenant_id>/kms/onboarding",
    operation_id="onboarding",
    **answers(200, "Onboarding", 503, description="What the customer's cloud must trust for this tenant"),
)
def onboarding_answer():
    """What the customer trusts so that this tenant, and no other, may use their key."""
    return json_response(200, onboarding(settings, routed_tenant(app), iso(service.clock())))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return handle_admin(app, event, context, settings, service.clock)
