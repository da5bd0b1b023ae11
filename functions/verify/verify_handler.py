"""Admin API: probe a tenant's current config, and unseal a sealed tenant. On schedule:
re-verify every tenant, so a broken BYOK grant is reported before the tenant seals (after
finishing any erasure an interruption left behind); and,
every minute, re-poll the sealed tenants, so a restored grant unseals within a minute."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tenant_kms.api import admin_resolver, current_caller, handle_admin, json_response, routed_tenant
from tenant_kms.observability import logger, metrics
from tenant_kms.schedule import REPOLL_BUDGET_MS, is_repoll, is_scheduled, run_until_deadline
from tenant_kms.service import TenantKms
from tenant_kms.settings import Settings
from tenant_kms.tracing import tracer
from tenant_kms.unsealing import Unsealing

settings = Settings.from_env()
service = TenantKms(settings)
unsealing = Unsealing(service)
app = admin_resolver()


@app.post("/tenants/<tenant_id>/kms/verify")
def verify():
    return json_response(200, service.verify(routed_tenant(app), actor=current_caller(app).actor))


@app.post("/tenants/<tenant_id>/kms/unseal")
def unseal():
    return json_response(200, unsealing.unseal(routed_tenant(app), actor=current_caller(app).actor))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    if is_repoll(event):
        return run_until_deadline(unsealing.sealed_tenants(), unsealing.repoll, context, budget_ms=REPOLL_BUDGET_MS)
    if is_scheduled(event):
        # Erasures an interruption left behind are finished first: they hold no usable key.
        erasures = run_until_deadline(
            service.erasing_tenants(), lambda t: service.erase(t, actor="schedule") or {}, context
        )
        summary = run_until_deadline(service.tenants(), lambda t: service.verify(t, actor="schedule"), context)
        return {**summary, "erasures": {"finished": erasures["tenants_done"], "failed": erasures["failed"]}}
    return handle_admin(app, event, context, settings, service.clock)
