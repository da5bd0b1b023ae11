"""Rewrap jobs: moving a tenant's records from retired key versions to the active one.

- ``POST /tenants/{tenant_id}/rewrap`` starts the tenant's job (or answers the running one):
  202, the job view, ``Location`` of ``GET /tenants/{tenant_id}/rewrap/{job_id}``.
- A unit of work ``{"tenant_id", "job_id"}``, invoked directly or as the body of a message on
  the job queue (an SQS event source mapping, partial batch failures reported), advances the
  job by one batch.
- On schedule, two sweeps fan out over every tenant through the rewrap sweep queue
  (tenant_kms.sweeps): ``rewrap`` starts the job of each tenant with records under a retired
  version, ``rewrap_wrapping_keys`` re-wraps each tenant's key versions held under a wrapping
  key that is no longer current. The operator starts the latter alone by invoking this
  function directly with {"job": "rewrap_wrapping_keys"}. The same function visits the units.

A batch from Lambda's SQS event source holds either queue's messages: a sweep's units name
their sweep, a job's are ``{"tenant_id", "job_id"}``."""

import json
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from tenant_kms import sweeps as sweep
from tenant_kms.api import admin_resolver, current_caller, handle_admin, json_response, routed_tenant
from tenant_kms.errors import InvalidRequest, NotFound
from tenant_kms.invoke import JOB_UNIT_SCHEMA, compile_schema, respond
from tenant_kms.jobs import RewrapJobs
from tenant_kms.observability import logger, metrics
from tenant_kms.openapi import JOB_LOCATION, answers
from tenant_kms.records import TenantRecords
from tenant_kms.rotation import WrappingKeyRotation, is_key_rewrap
from tenant_kms.schedule import is_scheduled, is_sqs_batch
from tenant_kms.service import TenantKms
from tenant_kms.settings import Settings
from tenant_kms.tracing import tracer

settings = Settings.from_env()
service = TenantKms(settings)
records = TenantRecords(service)
jobs = RewrapJobs(records)
rotation = WrappingKeyRotation(service)
sweeps = sweep.Sweeps(
    [
        sweep.rewrap(jobs, settings.rewrap_sweep_queue_url),
        sweep.rewrap_wrapping_keys(rotation, settings.rewrap_sweep_queue_url),
    ],
    clock=service.clock,
    region=settings.region,
)
app = admin_resolver()
check_unit = compile_schema(JOB_UNIT_SCHEMA)


@app.post(
    "/tenants/<tenant_id>/rewrap",
    operation_id="start_rewrap",
    **answers(
        202,
        "RewrapJob",
        404,
        409,
        423,
        503,
        description="The tenant's rewrap job, started or already running; it moves the records batch by batch",
        headers={"Location": JOB_LOCATION},
    ),
)
def start():
    tenant_id = routed_tenant(app)
    job = jobs.start(tenant_id, actor=current_caller(app).actor)
    response = json_response(202, job)
    response.headers["Location"] = _job_location(app.current_event.raw_path, tenant_id, job["job_id"])
    return response


@app.get(
    "/tenants/<tenant_id>/rewrap/<job_id>",
    operation_id="rewrap_job",
    **answers(200, "RewrapJob", 404, 503, description="The job's progress"),
)
def show(job_id: str):
    routed = (app.current_event.path_parameters or {}).get("job_id") or ""
    return json_response(200, jobs.view(routed_tenant(app), routed))


def _job_location(raw_path: str, tenant_id: str, job_id: str) -> str:
    """The job's path as the caller reaches it: under the same stage or base path, if any
    (a named stage prefixes rawPath; the routed path is the rest)."""
    route = f"/tenants/{tenant_id}/rewrap"
    path = raw_path.rstrip("/")
    prefix = path[: -len(route)] if path.endswith(route) else ""
    return f"{prefix}{route}/{job_id}"


def _advance(unit: Any) -> dict[str, Any]:
    unit = check_unit(unit)
    return jobs.advance(unit["tenant_id"], unit["job_id"])


def _advance_message(record: SQSRecord) -> None:
    """A failure here leaves the message to come again (and at last to the dead-letter queue)."""
    try:
        unit = json.loads(record.body)
    except ValueError:
        raise InvalidRequest("a job unit is JSON") from None
    try:
        _advance(unit)
    except NotFound:
        logger.info("job unit for a job that is gone", job_id=str(unit.get("job_id"))[:40])


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    if is_sqs_batch(event):
        return sweeps.visit(event, context, other=_advance_message)
    if "job_id" in event:
        return respond(lambda: _advance(event))
    if is_key_rewrap(event):
        # Started, or answered while its units are still being visited: invoke again to follow it.
        return sweeps.run(sweep.REWRAP_KEYS, context, unfinished=True)
    if is_scheduled(event):
        # The second pages only what time the first left; a continuation unit does the rest.
        return {name: sweeps.run(name, context) for name in (sweep.REWRAP, sweep.REWRAP_KEYS)}
    return handle_admin(app, event, context, settings, service.clock)
