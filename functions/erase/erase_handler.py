"""Admin API: erase a tenant. Its wrapped keys are deleted first, so its data is unreadable
by anyone from that moment, the operator included; the route answers then, and a purge job
(its units run by RewrapFunction) deletes the records, then the rest of the tenant's rows."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tenant_kms.api import admin_resolver, current_caller, handle_admin, no_content, routed_tenant
from tenant_kms.jobs import RewrapJobs
from tenant_kms.observability import logger, metrics
from tenant_kms.openapi import answers
from tenant_kms.records import TenantRecords
from tenant_kms.service import TenantKms
from tenant_kms.settings import Settings
from tenant_kms.tracing import tracer

settings = Settings.from_env()
service = TenantKms(settings)
jobs = RewrapJobs(TenantRecords(service))
app = admin_resolver()


@app.delete(
    "/tenants/<tenant_id>",
    operation_id="erase",
    **answers(204, None, 404, 409, 503, description="The tenant's keys are erased; its records are purged by a job"),
)
def erase():
    jobs.erase(routed_tenant(app), actor=current_caller(app).actor)
    return no_content()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return handle_admin(app, event, context, settings, service.clock)
