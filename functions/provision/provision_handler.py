"""Admin API: provision a new key version, list versions, destroy a retired version."""

from aws_lambda_powertools.event_handler import Response, content_types
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
from tenant_kms.idempotency import RepeatSafe, idempotency_key
from tenant_kms.observability import logger, metrics
from tenant_kms.openapi import IDEMPOTENCY_KEY, answers
from tenant_kms.service import TenantKms
from tenant_kms.settings import ConfigurationError, Settings
from tenant_kms.tracing import tracer

settings = Settings.from_env()
service = TenantKms(settings)
if not settings.idempotency_table:
    raise ConfigurationError("setting IDEMPOTENCY_TABLE is required")
repeat_safe = RepeatSafe(settings.idempotency_table, name="provision")
app = admin_resolver()


@app.post(
    "/tenants/<tenant_id>/keys",
    operation_id="provision",
    **answers(
        201,
        "Provisioned",
        409,
        422,
        423,
        503,
        description="A new active version, the previous one retired (same Idempotency-Key again: the first answer)",
        parameters=[IDEMPOTENCY_KEY],
    ),
)
def provision():
    tenant_id, actor = routed_tenant(app), current_caller(app).actor
    key = idempotency_key(app.current_event.headers)
    if key is None:
        return json_response(201, service.provision(tenant_id, actor=actor))
    status, body = repeat_safe.answer(
        tenant_id,
        key,
        {"body": app.current_event.body or ""},
        lambda: (201, service.provision(tenant_id, actor=actor)),
    )
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


@app.get(
    "/tenants/<tenant_id>/keys",
    operation_id="versions",
    **answers(200, "VersionList", 503, description="Every version"),
)
def list_versions():
    return json_response(200, {"versions": service.list_versions(routed_tenant(app))})


@app.delete(
    "/tenants/<tenant_id>/keys/<version>",
    operation_id="destroy_version",
    **answers(204, None, 404, 409, 503, description="The version's wrapped key is deleted (cryptographic erasure)"),
)
def destroy(version: str):
    service.destroy_version(routed_tenant(app), key_version(version), actor=current_caller(app).actor)
    return no_content()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    repeat_safe.register_lambda_context(context)
    return handle_admin(app, event, context, settings, service.clock)
