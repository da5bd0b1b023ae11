"""The admin API's access log: template.yaml's AccessLogSettings.Format, rendered as API
Gateway renders it for a request, says who called which route and how it ended, and carries
the request id that the function's audit lines for that request carry as correlation_id, so
an access line leads to the audit entries it caused."""

from __future__ import annotations

import json
import re
import uuid

from support import Function, http_sample, parsed_template, step_up, structured_logs


def access_line(event: dict, status: int) -> dict:
    """The access log line API Gateway writes for ``event`` answered with ``status``: each
    $context variable the request has filled in, "-" for the others (as API Gateway does)."""
    context = event["requestContext"]
    claims = ((context.get("authorizer") or {}).get("jwt") or {}).get("claims") or {}
    known = {
        "requestId": context["requestId"],
        "requestTime": context["time"],
        "routeKey": context["routeKey"],
        "path": context["http"]["path"],
        "status": str(status),
        "identity.sourceIp": context["http"]["sourceIp"],
        "identity.userAgent": context["http"]["userAgent"],
        **{f"authorizer.claims.{name}": str(value) for name, value in claims.items()},
    }
    fmt = parsed_template()["Resources"]["AdminApi"]["Properties"]["AccessLogSettings"]["Format"]
    return json.loads(re.sub(r"\$context\.([A-Za-z0-9_.]+)", lambda m: known.get(m.group(1), "-"), fmt))


def test_an_access_line_names_the_caller_the_route_and_the_request_id_its_audit_lines_carry(tenant_id):
    event = step_up(http_sample("provision_post", tenant_id))
    event["requestContext"]["requestId"] = request_id = str(uuid.uuid4())

    # When an admin provisions a version through the API
    with structured_logs() as logs:
        status, _ = Function("provision").http(event)

    # Then the access line says who called which route, how it ended, and under which request id
    line = access_line(event, status)
    assert (line["routeKey"], line["status"]) == ("POST /tenants/{tenant_id}/keys", "201")
    assert (line["sub"], line["tenantClaim"], line["requestId"]) == ("alice@acme.example", tenant_id, request_id)
    # and the audit entries of that request carry the same id
    lines = [json.loads(text) for text in logs.getvalue().splitlines() if text.startswith("{")]
    audited = [entry for entry in lines if (entry.get("audit") or {}).get("tenant_id") == tenant_id]
    assert audited and {entry["correlation_id"] for entry in audited} == {request_id}


def test_the_access_log_format_is_one_json_object_whatever_the_request_lacks():
    """Catches a variable left unquoted: API Gateway writes "-" for a value the request has not
    (no claims before the authorizer, no integration), which must still parse."""
    fmt = parsed_template()["Resources"]["AdminApi"]["Properties"]["AccessLogSettings"]["Format"]
    line = json.loads(re.sub(r"\$context\.[A-Za-z0-9_.]+", "-", fmt))
    assert {"requestId", "routeKey", "status", "sub", "tenantClaim", "sourceIp", "integrationError"} <= set(line)
