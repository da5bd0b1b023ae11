"""template.yaml, the models, the settings and the sample events agree with each other."""

from __future__ import annotations

import json
import re
from pathlib import Path

from local_gateway import function_specs, routes_from_template
from local_tables import load_template, table_definitions

from tenant_kms.api import ADMIN_ROUTES, PREFLIGHT_ROUTE, PUBLIC_ROUTES
from tenant_kms.models import Job, KeyVersion, TenantConfig, TenantRecord

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template()


def _events(auth: str | None) -> set[tuple[str, str]]:
    found = set()
    for resource in TEMPLATE["Resources"].values():
        if not isinstance(resource, dict) or resource["Type"] != "AWS::Serverless::Function":
            continue
        for event in (resource["Properties"].get("Events") or {}).values():
            props = event.get("Properties") or {}
            authorizer = (props.get("Auth") or {}).get("Authorizer")
            if event["Type"] == "HttpApi" and "Path" in props and authorizer == auth:
                found.add((props["Method"], props["Path"]))
    return found


def test_every_admin_route_is_an_httpapi_event_and_nothing_else_is():
    routes, default = routes_from_template(TEMPLATE)
    assert {(r.method, r.path) for r in routes} == set(ADMIN_ROUTES) | set(PUBLIC_ROUTES) | {PREFLIGHT_ROUTE}
    assert _events(None) == set(ADMIN_ROUTES)  # behind the API's JWT authorizer
    assert default == "ConfigureFunction"


def test_only_the_oidc_issuer_documents_and_cors_preflights_are_public():
    assert _events("NONE") == set(PUBLIC_ROUTES) | {PREFLIGHT_ROUTE}
    assert all(path.startswith("/.well-known/") for _, path in PUBLIC_ROUTES)
    # The preflight route takes OPTIONS alone, to the function that reads no table.
    (preflight,) = [r for r in routes_from_template(TEMPLATE)[0] if r.method == "OPTIONS"]
    assert (preflight.path, preflight.function) == ("/{proxy+}", "FederationFunction")


def test_cors_allows_exactly_the_admin_ui_origins_parameter_and_nothing_when_it_is_empty():
    api = TEMPLATE["Resources"]["AdminApi"]["Properties"]
    condition, allowed, otherwise = api["CorsConfiguration"]["Fn::If"]
    assert TEMPLATE["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AdminUiOrigins"}, ""]}]}
    assert otherwise == {"Ref": "AWS::NoValue"}
    assert allowed["AllowOrigins"] == {"Fn::Split": [",", {"Ref": "AdminUiOrigins"}]}
    assert "AllowCredentials" not in allowed  # bearer tokens in a header, never cookies
    assert TEMPLATE["Parameters"]["AdminUiOrigins"]["Default"] == ""
    # Every header a route reads or answers with is allowed or exposed.
    assert {"authorization", "content-type", "idempotency-key"} <= set(allowed["AllowHeaders"])
    assert {"location", "retry-after", "www-authenticate"} <= set(allowed["ExposeHeaders"])
    assert {method for method, _ in ADMIN_ROUTES} == set(allowed["AllowMethods"])


def test_every_function_has_a_log_group_with_the_retention_parameter():
    resources = TEMPLATE["Resources"]
    groups = {
        str(r["Properties"]["LogGroupName"]): r["Properties"]["RetentionInDays"]
        for r in resources.values()
        if isinstance(r, dict) and r["Type"] == "AWS::Logs::LogGroup"
    }
    for logical_id in function_specs(TEMPLATE):
        name = next((n for n in groups if f"/aws/lambda/${{{logical_id}}}" in n), None)
        assert name is not None, logical_id
        assert groups[name] == {"Ref": "LogRetentionDays"}, logical_id


def test_the_contract_functions_exist_with_their_handlers():
    specs = function_specs(TEMPLATE)
    for logical_id in (
        "ConfigureFunction",
        "VerifyFunction",
        "ProvisionFunction",
        "UnwrapFunction",
        "RewrapFunction",
        "TenantDataFunction",
    ):
        code_uri, handler = specs[logical_id]
        assert (ROOT / code_uri / f"{handler.split('.')[0]}.py").is_file()


def test_tables_match_the_models():
    tables = table_definitions(TEMPLATE)
    for logical_id, model in (
        ("TenantConfigTable", TenantConfig),
        ("KeyVersionTable", KeyVersion),
        ("TenantDataTable", TenantRecord),
        ("JobTable", Job),
    ):
        props = tables[logical_id]
        types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
        keys = {k["KeyType"]: k["AttributeName"] for k in props["KeySchema"]}
        attributes = model.get_attributes()
        assert keys["HASH"] == model._hash_keyname
        assert keys.get("RANGE") == model._range_keyname
        for name, kind in types.items():
            assert attributes[name].attr_type == kind
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert props["DeletionProtectionEnabled"] is True


def test_idempotency_records_expire_and_are_kept_as_powertools_writes_them():
    props = table_definitions(TEMPLATE)["IdempotencyTable"]
    assert props["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert props["BillingMode"] == "PAY_PER_REQUEST" and props["SSESpecification"]["SSEEnabled"] is True
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    provision = TEMPLATE["Resources"]["ProvisionFunction"]["Properties"]
    assert provision["Environment"]["Variables"]["IDEMPOTENCY_TABLE"] == {"Ref": "IdempotencyTable"}


def test_every_setting_the_code_reads_is_declared_in_the_template():
    source = (ROOT / "shared/tenant_kms/settings.py").read_text()
    read = set(re.findall(r'(?:_required|_int)\(env, "([A-Z0-9_]+)"', source))
    read |= set(re.findall(r'env\.get\("([A-Z0-9_]+)"', source))
    declared = set(TEMPLATE["Globals"]["Function"]["Environment"]["Variables"])
    for resource in TEMPLATE["Resources"].values():  # a function's own, e.g. its idempotency table
        if isinstance(resource, dict) and resource["Type"] == "AWS::Serverless::Function":
            declared |= set(((resource["Properties"].get("Environment") or {}).get("Variables")) or {})
    lambda_provided = {"AWS_REGION", "AWS_DEFAULT_REGION"}
    assert read - lambda_provided <= declared
    assert {"CONFIG_TABLE", "MASTER_KEY_B64", "MASTER_KEY_SECRET_ID"} <= read


def test_every_function_has_sample_events():
    events = {p.stem for p in (ROOT / "events").glob("*.json")}
    for logical_id, (code_uri, _) in function_specs(TEMPLATE).items():
        prefix = Path(code_uri).name
        assert any(e.startswith(prefix) for e in events), logical_id


def test_runtime_dependencies_are_pinned():
    for requirements in ("layers/providers/requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / requirements).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r"):
                assert re.match(r"^[A-Za-z0-9_.\-\[\],]+==[0-9][\w.]*$", line), f"{requirements}: {line}"


def test_no_iam_statement_allows_every_action():
    text = (ROOT / "template.yaml").read_text()
    assert not re.search(r"Action:\s*['\"]?\*['\"]?\s*$", text, re.M)


def test_the_local_runner_resolves_the_templates_environment():
    from run_local import template_environment

    tables = {"TenantConfigTable": "c", "KeyVersionTable": "k", "TenantDataTable": "d", "IdempotencyTable": "i"}
    env = template_environment(TEMPLATE, tables)
    assert env["IDEMPOTENCY_TABLE"] == "i" and env["KEY_USAGE_BUDGET"] == str(2**30)
    assert env["CONFIG_TABLE"] == "c" and env["CUSTOMER_ACCOUNT_IDS"] == "" and env["SESSION_TTL_SECONDS"] == "3600"
    assert all(isinstance(value, str) and "Fn::" not in value and "{" not in value for value in env.values())


def test_sealed_tenants_are_repolled_every_minute_with_the_sample_input():
    events = TEMPLATE["Resources"]["VerifyFunction"]["Properties"]["Events"]
    repoll = events["RepollSealed"]["Properties"]
    assert events["RepollSealed"]["Type"] == "Schedule" and repoll["Schedule"] == "rate(1 minute)"
    sample = json.loads((ROOT / "events" / "verify_repoll_sealed.json").read_text())
    assert json.loads(repoll["Input"]) == sample


def test_rewrap_jobs_run_on_a_queue_with_a_dead_letter_queue_and_bounded_workers():
    resources = TEMPLATE["Resources"]
    rewrap = resources["RewrapFunction"]["Properties"]
    units = rewrap["Events"]["JobUnits"]
    assert units["Type"] == "SQS" and units["Properties"]["Queue"] == {"Fn::GetAtt": "RewrapJobQueue.Arn"}
    assert units["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert units["Properties"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "RewrapJobConcurrency"}}
    # Reserved concurrency would be shared with the admin routes the function serves.
    assert "ReservedConcurrentExecutions" not in rewrap
    queue = resources["RewrapJobQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": "RewrapJobDeadLetterQueue.Arn"}
    # Lambda requires the visibility timeout to cover the function's timeout.
    assert queue["VisibilityTimeout"] >= rewrap["Timeout"]
    env = rewrap["Environment"]["Variables"]
    assert env["JOB_QUEUE_URL"] == {"Ref": "RewrapJobQueue"} and env["JOB_TABLE"] == {"Ref": "JobTable"}
    assert TEMPLATE["Parameters"]["RewrapBatchRecords"]["Default"] == 100
    assert TEMPLATE["Parameters"]["RewrapBatchIntervalSeconds"]["Default"] == 5
    assert table_definitions(TEMPLATE)["JobTable"]["TimeToLiveSpecification"]["AttributeName"] == "expires_at"


def test_sweeps_fan_out_through_queues_with_dead_letters_and_bounded_concurrency():
    resources = TEMPLATE["Resources"]
    queues = {name for name, r in resources.items() if isinstance(r, dict) and r["Type"] == "AWS::SQS::Queue"}
    dead_letter = {
        r["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"].split(".")[0]
        for name, r in resources.items()
        if name in queues and "RedrivePolicy" in r["Properties"]
    }
    # Every queue has a dead-letter queue, which is itself a queue of the template; the
    # functions' own dead-letter queues take their failed asynchronous (scheduled) runs
    dead_letter |= {
        r["Properties"]["DeadLetterQueue"]["TargetArn"]["Fn::GetAtt"].split(".")[0]
        for r in resources.values()
        if isinstance(r, dict) and r["Type"] == "AWS::Serverless::Function" and "DeadLetterQueue" in r["Properties"]
    }
    assert dead_letter and dead_letter <= queues
    assert {name for name in queues - dead_letter if "RedrivePolicy" not in resources[name]["Properties"]} == set()
    consumed = set()
    for name, resource in resources.items():
        if not (isinstance(resource, dict) and resource["Type"] == "AWS::Serverless::Function"):
            continue
        events = resource["Properties"].get("Events") or {}
        for event in events.values():
            if event["Type"] == "SQS":
                props = event["Properties"]
                assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"], name
                bound = props["ScalingConfig"]["MaximumConcurrency"]  # a number, or a parameter's
                bound = TEMPLATE["Parameters"][bound["Ref"]]["Default"] if isinstance(bound, dict) else bound
                assert 2 <= bound <= 10, name
                queue = props["Queue"]["Fn::GetAtt"].split(".")[0]
                consumed.add(queue)
                timeout = resource["Properties"].get("Timeout", TEMPLATE["Globals"]["Function"]["Timeout"])
                # Lambda requires it: a unit comes back only after the longest run
                assert resources[queue]["Properties"]["VisibilityTimeout"] >= timeout, name
        # An admin route never shares a concurrency reservation with scheduled work
        if any(e["Type"] == "HttpApi" for e in events.values()):
            assert "ReservedConcurrentExecutions" not in resource["Properties"], name
    assert consumed == queues - dead_letter


def test_the_sweep_table_expires_visits_and_the_sealed_tenants_index_is_sparse():
    tables = table_definitions(TEMPLATE)
    sweeps = tables["SweepTable"]
    assert sweeps["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert [k["AttributeName"] for k in sweeps["KeySchema"]] == ["tenant_id", "sweep"]
    (index,) = tables["TenantConfigTable"]["GlobalSecondaryIndexes"]
    assert index["KeySchema"] == [{"AttributeName": "sealed_at", "KeyType": "HASH"}]
    assert index["IndexName"] == TenantConfig.sealed.Meta.index_name


def schedules_of(resource: dict) -> list[str]:
    return [name for name, e in (resource["Properties"].get("Events") or {}).items() if e["Type"] == "Schedule"]


def test_every_scheduled_function_keeps_its_failed_runs_in_a_dead_letter_queue():
    """A schedule invokes asynchronously: without a dead-letter queue, a run that still fails
    after Lambda's retries is dropped with nothing to show for it but a log line."""
    resources = TEMPLATE["Resources"]
    scheduled = {name for name, r in resources.items() if r["Type"] == "AWS::Serverless::Function" and schedules_of(r)}
    assert scheduled == {"VerifyFunction", "RewrapFunction"}
    for name in scheduled:
        target = resources[name]["Properties"]["DeadLetterQueue"]
        assert target == {"Type": "SQS", "TargetArn": {"Fn::GetAtt": "ScheduledRunDeadLetterQueue.Arn"}}, name
    # kept 14 days, and an alarm says when one lands
    assert resources["ScheduledRunDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] == 1209600
    alarmed = [
        r["Properties"]["Dimensions"][0]["Value"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("Namespace") == "AWS/SQS"
    ]
    assert {"Fn::GetAtt": "ScheduledRunDeadLetterQueue.QueueName"} in alarmed


def test_the_tables_holding_keys_and_records_are_encrypted_under_the_table_key():
    """Catches a key table left on an AWS owned key, or the parameter naming an operator's own
    key ignored."""
    tables = table_definitions(TEMPLATE)
    table_key = {"Fn::If": ["CreateTableKey", {"Fn::GetAtt": "TableKey.Arn"}, {"Ref": "TableKmsKeyArn"}]}
    for table in ("TenantConfigTable", "KeyVersionTable", "TenantDataTable"):
        assert tables[table]["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": table_key}
    assert TEMPLATE["Conditions"]["CreateTableKey"] == {"Fn::Equals": [{"Ref": "TableKmsKeyArn"}, ""]}
    key = TEMPLATE["Resources"]["TableKey"]
    assert key["Condition"] == "CreateTableKey" and key["Properties"]["EnableKeyRotation"] is True
    # the retained tables stay readable only while their key does
    assert (key["DeletionPolicy"], key["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_every_check_the_template_skips_says_why_on_the_resource_it_concerns():
    """checkov's inline skips: each names one check and a reason, inside a resource's block."""
    lines = (ROOT / "template.yaml").read_text().splitlines()
    skips = [(n, line.strip()) for n, line in enumerate(lines) if "checkov:skip" in line]
    assert skips
    for n, text in skips:
        assert re.fullmatch(r"# checkov:skip=CKV_AWS_\d+:\S.{20,}", text), text
        owner = next(line for line in reversed(lines[:n]) if re.match(r"^  \w+:$", line))
        assert owner.strip(":").strip() in TEMPLATE["Resources"], text
    assert not any("skip-check" in line or "soft-fail" in line for line in (ROOT / "Makefile").read_text().splitlines())


def test_every_log_group_is_encrypted_under_the_log_key_which_only_cloudwatch_logs_uses():
    """Catches a log group (audit events, access lines) left on CloudWatch's own key, or the
    log key usable by anyone but the logs service for this stack's groups."""
    resources = TEMPLATE["Resources"]
    groups = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::Logs::LogGroup"}
    assert len(groups) == len(function_specs(TEMPLATE)) + 1  # the functions' and the admin API's
    assert all(g["KmsKeyId"] == {"Fn::GetAtt": "LogKey.Arn"} for g in groups.values())
    key = resources["LogKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    (use,) = [s for s in key["KeyPolicy"]["Statement"] if "kms:GenerateDataKey*" in s["Action"]]
    assert use["Principal"] == {"Service": {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}}
    allowed = use["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    prefix = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
    patterns = [p["Fn::Sub"].removeprefix(prefix) for p in allowed]
    for group in groups.values():
        name = group["LogGroupName"]["Fn::Sub"]
        assert any(re.fullmatch(re.escape(p).replace(r"\*", ".*"), name) for p in patterns), name
