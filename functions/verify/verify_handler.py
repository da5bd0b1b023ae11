"""Admin API: probe a tenant's current config, and unseal a sealed tenant. On schedule, two
sweeps fan out over the tenants through their queues (tenant_kms.sweeps): the re-verify of
every tenant, so a broken BYOK grant is reported before the tenant seals (an erasure an
interruption left behind gets its purge job), and, every minute, the re-poll of sealed tenants, so a
restored grant unseals within a minute. The same function visits the sweeps' units."""

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tenant_kms import sweeps as sweep
from tenant_kms.api import admin_resolver, current_caller, handle_admin, json_response, routed_tenant
from tenant_kms.jobs import RewrapJobs
from tenant_kms.observability import logger, metrics
from tenant_kms.openapi import answers
from tenant_kms.records import TenantRecords
from tenant_kms.schedule import REPOLL_BUDGET_MS, is_repoll, is_scheduled, is_sqs_batch
from tenant_kms.service import TenantKms
from tenant_kms.settings import Settings
from tenant_kms.tracing import tracer
from tenant_kms.unsealing import Unsealing

settings = Settings.from_env()
service = TenantKms(settings)
unsealing = Unsealing(service)
# The re-verify starts the purge of an erasure an interruption left behind.
jobs = RewrapJobs(TenantRecords(service))
sweeps = sweep.Sweeps(
    [sweep.reverify(jobs, settings.reverify_queue_url), sweep.repoll(unsealing, settings.repoll_queue_url)],
    clock=service.clock,
    region=settings.region,
)
app = admin_resolver()


@app.post(
    "/tenants/<tenant_id>/kms/verify",
    operation_id="verify",
    **answers(200, "VerifyResult", 404, 409, 503, description="The probe's outcome, recorded on the config"),
)
def verify():
    return json_response(200, service.verify(routed_tenant(app), actor=current_caller(app).actor))


@app.post(
    "/tenants/<tenant_id>/kms/unseal",
    operation_id="unseal",
    **answers(200, "ConfigView", 404, 409, 422, 503, description="The active version unwrapped: the seal is lifted"),
)
def unseal():
    return json_response(200, unsealing.unseal(routed_tenant(app), actor=current_caller(app).actor))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    if is_sqs_batch(event):
        return sweeps.visit(event, context)
    if is_repoll(event):
        return sweeps.run(sweep.REPOLL, context, budget_ms=REPOLL_BUDGET_MS)
    if is_scheduled(event):
        return sweeps.run(sweep.REVERIFY, context)
    return handle_admin(app, event, context, settings, service.clock)
