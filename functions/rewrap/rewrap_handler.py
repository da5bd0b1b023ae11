"""Moves records from retired key versions to the active one: per tenant from the admin
API (202, resumable), and for every tenant with pending records on the schedule. The
scheduled run then re-wraps every key version held under a wrapping key that is no longer
current; the operator triggers that part alone by invoking this function directly with
{"job": "rewrap_wrapping_keys"}."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tenant_kms.api import admin_resolver, current_caller, handle_admin, json_response, routed_tenant
from tenant_kms.jobs import rewrap as rewrap_tenant
from tenant_kms.observability import logger, metrics
from tenant_kms.records import TenantRecords
from tenant_kms.rotation import WrappingKeyRotation, is_key_rewrap
from tenant_kms.schedule import deadline, is_scheduled, run_until_deadline
from tenant_kms.service import TenantKms
from tenant_kms.settings import Settings
from tenant_kms.tracing import tracer

settings = Settings.from_env()
service = TenantKms(settings)
records = TenantRecords(service)
rotation = WrappingKeyRotation(service)
app = admin_resolver()


@app.post("/tenants/<tenant_id>/rewrap")
def rewrap():
    progress = rewrap_tenant(
        records, routed_tenant(app), actor=current_caller(app).actor, should_stop=deadline(app.lambda_context)
    )
    return json_response(202, progress)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    if is_key_rewrap(event):
        return rotation.run(actor="operator", should_stop=deadline(context))
    if is_scheduled(event):
        stop = deadline(context)
        summary = run_until_deadline(
            records.tenants_pending_rewrap(),
            lambda t: rewrap_tenant(records, t, actor="schedule", should_stop=stop),
            context,
        )
        return {**summary, "wrapping_keys": rotation.run(actor="schedule", should_stop=stop)}
    return handle_admin(app, event, context, settings, service.clock)
