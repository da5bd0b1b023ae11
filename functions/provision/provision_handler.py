"""Admin API: provision a new key version, list versions, destroy a retired version."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tenant_kms.api import (
    admin_resolver,
    current_caller,
    handle_admin,
    json_response,
    key_version,
    no_content,
    routed_tenant,
)
from tenant_kms.observability import logger, metrics
from tenant_kms.service import TenantKms
from tenant_kms.settings import Settings
from tenant_kms.tracing import tracer

settings = Settings.from_env()
service = TenantKms(settings)
app = admin_resolver()


@app.post("/tenants/<tenant_id>/keys")
def provision():
    return json_response(201, service.provision(routed_tenant(app), actor=current_caller(app).actor))


@app.get("/tenants/<tenant_id>/keys")
def list_versions():
    return json_response(200, {"versions": service.list_versions(routed_tenant(app))})


@app.delete("/tenants/<tenant_id>/keys/<version>")
def destroy(version: str):
    service.destroy_version(routed_tenant(app), key_version(version), actor=current_caller(app).actor)
    return no_content()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return handle_admin(app, event, context, settings, service.clock)
