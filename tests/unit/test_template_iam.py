"""Least privilege in the deployed template, checked on what CloudFormation will get:
template.yaml transformed by the SAM translator (policy templates expanded)."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The translator comes with the SAM CLI, in its own virtualenv (its pins are not the service's).
SAM_PYTHON = os.environ.get("SAM_PYTHON", str(ROOT / ".tools-sam" / "bin" / "python"))

TRANSLATE = """
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class ManagedPolicies:
    def load(self):
        return {"AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
                "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"}

template = yaml_parse(open(sys.argv[1]).read())
for resource in template["Resources"].values():  # what `sam package` does: code goes to S3
    for uri in ("CodeUri", "ContentUri"):
        if uri in resource.get("Properties", {}):
            resource["Properties"][uri] = "s3://artifacts/" + resource["Properties"][uri].strip("/") + ".zip"
parameters = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}
print(json.dumps(transform(template, parameters, ManagedPolicies())["Resources"], default=str))
"""


@pytest.fixture(scope="module")
def resources() -> dict:
    result = subprocess.run(
        [SAM_PYTHON, "-c", TRANSLATE, str(ROOT / "template.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def statements(resources: dict, *, expand_managed: bool = False):
    """(role or policy logical id, statement). ``expand_managed``: a managed policy's
    statements are reported under each role that attaches it (by Ref), as IAM evaluates them."""
    attached: dict[str, list[str]] = {}
    if expand_managed:
        for logical_id, resource in resources.items():
            if resource["Type"] == "AWS::IAM::Role":
                for arn in resource["Properties"].get("ManagedPolicyArns", []):
                    if isinstance(arn, dict) and "Ref" in arn:
                        attached.setdefault(arn["Ref"], []).append(logical_id)
    for logical_id, resource in resources.items():
        documents = []
        if resource["Type"] == "AWS::IAM::Role":
            documents = [p["PolicyDocument"] for p in resource["Properties"].get("Policies", [])]
        elif resource["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            documents = [resource["Properties"]["PolicyDocument"]]
        for document in documents:
            for statement in document["Statement"]:
                if isinstance(statement, dict) and "Fn::If" in statement:
                    statement = statement["Fn::If"][1]  # the statement when its condition holds
                for owner in attached.get(logical_id, [logical_id]):
                    yield owner, statement


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_no_statement_allows_every_action(resources):
    found = list(statements(resources))
    assert len(found) > 20, "the translator produced the functions' policies"
    for logical_id, statement in found:
        for action in as_list(statement["Action"]):
            assert action != "*" and not str(action).endswith(":*"), (logical_id, action)


def test_dynamodb_and_kms_actions_are_scoped_to_resources(resources):
    for logical_id, statement in statements(resources):
        actions = [str(a) for a in as_list(statement["Action"])]
        if any(a.startswith(("dynamodb:", "kms:")) for a in actions):
            for resource in as_list(statement["Resource"]):
                assert resource != "*" and "*" not in str(resource).replace("/index/*", ""), (logical_id, resource)


def test_each_function_gets_only_the_tables_it_uses(resources):
    def tables_of(role: str) -> set[str]:
        found = set()
        for logical_id, statement in statements(resources):
            if logical_id == role and any(str(a).startswith("dynamodb:") for a in as_list(statement["Action"])):
                found |= {
                    t
                    for t in ("TenantConfigTable", "KeyVersionTable", "TenantDataTable")
                    if t in str(statement["Resource"])
                }
        return found

    assert tables_of("VerifyFunctionRole") == {"TenantConfigTable", "KeyVersionTable", "TenantDataTable"}
    # the re-verify deletes what an interrupted erasure left, never writes a version or a record
    deletes = {"dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
    assert writes_of(resources, "VerifyFunctionRole", "KeyVersionTable") == deletes
    assert writes_of(resources, "VerifyFunctionRole", "TenantDataTable") == deletes
    # the erased tenant's jobs; the put starts its purge job
    assert writes_of(resources, "VerifyFunctionRole", "JobTable") == deletes | {"dynamodb:PutItem"}
    # its sweeps keep positions and visits as the re-verify's do (a purge's last unit deletes visits)
    assert writes_of(resources, "RewrapFunctionRole", "SweepTable") == writes_of(
        resources, "VerifyFunctionRole", "SweepTable"
    )
    assert deletes < writes_of(resources, "RewrapFunctionRole", "SweepTable")
    assert tables_of("UnwrapFunctionRole") == {"TenantConfigTable", "KeyVersionTable"}
    assert tables_of("ConfigureFunctionRole") == {"TenantConfigTable", "KeyVersionTable"}
    assert tables_of("TenantDataFunctionRole") == {"TenantConfigTable", "KeyVersionTable", "TenantDataTable"}


def test_the_direct_invoke_functions_are_not_behind_the_http_api(resources):
    permissions = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"]
    targets = {str(p["Properties"]["FunctionName"]) for p in permissions}
    assert not any("UnwrapFunction" in t or "TenantDataFunction" in t for t in targets)


ACCOUNT = "123456789012"  # the deployment's own account in the translation above
STACK = "tenant-kms"


def resolve(value, resources: dict) -> list[str]:
    """A policy Resource as ARN strings (pseudo parameters and the stack's own names filled in)."""
    if isinstance(value, list):
        return [arn for item in value for arn in resolve(item, resources)]
    if isinstance(value, str):
        return [value]
    if "Fn::Sub" in value:
        text, names = (value["Fn::Sub"], {}) if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"]
        for name, replacement in {
            "AWS::Partition": "aws",
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": STACK,
            "AWS::Region": "us-east-1",
        }.items():
            text = text.replace("${" + name + "}", replacement)
        for name, replacement in names.items():
            text = text.replace("${" + name + "}", resolve(replacement, resources)[0])
        return [text]
    if "Fn::If" in value:  # both branches: either may be deployed
        return resolve(value["Fn::If"][1], resources) + resolve(value["Fn::If"][2], resources)
    if "Fn::Split" in value:
        separator, joined = value["Fn::Split"]
        return [part for text in resolve(joined, resources) for part in text.split(separator)]
    if "Fn::Join" in value:
        return [value["Fn::Join"][0].join(resolve(value["Fn::Join"][1], resources))]
    if "Fn::GetAtt" in value:
        logical_id = value["Fn::GetAtt"][0]
        return [f"arn:aws:resource:::{logical_id}"]
    if "Ref" in value:
        return [""]  # a parameter: an empty list of customer accounts is the case that matters
    raise AssertionError(f"unexpected policy resource {value}")


def covers(pattern: str, arn: str) -> bool:
    return fnmatch.fnmatchcase(arn, pattern)


def test_no_role_may_assume_roles_of_its_own_account_but_the_key_wrapping_role(resources):
    """The tenant's config names the customer role: it must never reach this account's roles."""
    wrapping_role = f"arn:aws:iam::{ACCOUNT}:role/{STACK}-key-wrapping"
    own_roles = [
        f"arn:aws:iam::{ACCOUNT}:role/Admin",
        f"arn:aws:iam::{ACCOUNT}:role/OrganizationAccountAccessRole",
        f"arn:aws:iam::{ACCOUNT}:role/{STACK}-ConfigureFunctionRole-ABC123",
        wrapping_role,
    ]
    allowed: dict[str, list[str]] = {}
    denied: dict[str, list[str]] = {}
    for owner, statement in statements(resources, expand_managed=True):
        if "sts:AssumeRole" not in as_list(statement["Action"]) and "sts:*" not in as_list(statement["Action"]):
            continue
        target = allowed if statement["Effect"] == "Allow" else denied
        target.setdefault(owner, []).extend(resolve(statement["Resource"], resources))
    assert "KeyWrappingRole" in allowed, "the key-wrapping role assumes customer roles"
    for owner, patterns in allowed.items():
        for arn in own_roles:
            if any(covers(p, arn) for p in patterns) and not any(covers(p, arn) for p in denied.get(owner, [])):
                # A function may become a tenant's session of the key-wrapping role, nothing else.
                assert arn == wrapping_role and owner != "KeyWrappingRole", (owner, arn)


DYNAMODB_WRITES = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
    "dynamodb:ConditionCheckItem",
    "dynamodb:*",
}


def writes_of(resources: dict, role: str, table: str) -> set[str]:
    found = set()
    for owner, statement in statements(resources, expand_managed=True):
        if owner != role or statement["Effect"] != "Allow" or table not in json.dumps(statement["Resource"]):
            continue
        found |= {str(a) for a in as_list(statement["Action"])} & DYNAMODB_WRITES
    return found


def test_the_direct_invoke_functions_write_only_what_their_work_needs(resources):
    # Unwrap: seals and unseals the tenant; reads versions, never changes them.
    assert writes_of(resources, "UnwrapFunctionRole", "TenantConfigTable") == {"dynamodb:UpdateItem"}
    assert writes_of(resources, "UnwrapFunctionRole", "KeyVersionTable") == set()
    # Tenant data: seals; keeps each version's counts in the record's transaction; provisions
    # the next version when the active one has spent its usage budget.
    assert writes_of(resources, "TenantDataFunctionRole", "TenantConfigTable") == {"dynamodb:UpdateItem"}
    assert writes_of(resources, "TenantDataFunctionRole", "KeyVersionTable") == {
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
    }


def test_only_the_provision_function_keeps_idempotency_records(resources):
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::IAM::Role" and logical_id != "ProvisionFunctionRole":
            assert writes_of(resources, logical_id, "IdempotencyTable") == set(), logical_id
    found = set()
    for owner, statement in statements(resources, expand_managed=True):
        if owner == "ProvisionFunctionRole" and "IdempotencyTable" in json.dumps(statement["Resource"]):
            assert statement["Resource"] == {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}, statement
            found |= set(as_list(statement["Action"]))
    assert found == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}


def test_only_the_key_wrapping_role_signs_federation_assertions(resources):
    key = resources["FederationSigningKey"]["Properties"]
    assert (key["KeySpec"], key["KeyUsage"]) == ("RSA_2048", "SIGN_VERIFY")
    for statement in key["KeyPolicy"]["Statement"]:
        actions = set(as_list(statement["Action"]))
        if actions & {"kms:Sign", "kms:GetPublicKey", "kms:*", "kms:Get*"}:
            assert statement["Principal"] == {"AWS": {"Fn::GetAtt": ["KeyWrappingRole", "Arn"]}}, statement
    for owner, statement in statements(resources, expand_managed=True):
        assert not {"kms:Sign", "kms:*"} & set(as_list(statement["Action"])), owner


def test_the_key_wrapping_role_is_named_and_its_arn_is_an_output():
    template = yaml_template()
    role = template["Resources"]["KeyWrappingRole"]["Properties"]
    assert role["RoleName"] == {"Fn::Sub": "${AWS::StackName}-key-wrapping"}
    assert template["Outputs"]["KeyWrappingRoleArn"]["Value"] == {"Fn::GetAtt": "KeyWrappingRole.Arn"}


def yaml_template() -> dict:
    from local_tables import load_template

    return load_template()


PSEUDO = {
    "AWS::NoValue": None,
    "AWS::Partition": "aws",
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": "us-east-1",
    "AWS::StackName": STACK,
}


def deployed(value, parameters: dict, conditions: dict):
    """A template value as CloudFormation resolves it with ``parameters`` (a CommaDelimitedList
    as a list of strings)."""
    if isinstance(value, list):
        return [deployed(item, parameters, conditions) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) != 1 or not next(iter(value)).startswith(("Fn::", "Ref")):
        return {key: deployed(item, parameters, conditions) for key, item in value.items()}
    ((function, argument),) = value.items()
    if function == "Ref":
        return {**PSEUDO, **parameters}[argument]
    if function == "Fn::Join":
        return argument[0].join(deployed(argument[1], parameters, conditions))
    if function == "Fn::Split":
        return deployed(argument[1], parameters, conditions).split(argument[0])
    if function == "Fn::Sub":
        text, names = (argument, {}) if isinstance(argument, str) else argument
        pseudo = {**PSEUDO, **{k: v for k, v in parameters.items() if k.startswith("AWS::")}}
        for name, replacement in {
            **pseudo,
            **{n: deployed(v, parameters, conditions) for n, v in names.items()},
        }.items():
            text = text.replace("${" + name + "}", replacement or "")
        return text
    if function == "Fn::If":
        return deployed(argument[1] if conditions[argument[0]] else argument[2], parameters, conditions)
    if function == "Fn::Not":
        return not deployed(argument[0], parameters, conditions)
    if function == "Fn::Equals":
        left, right = deployed(argument, parameters, conditions)
        return left == right
    raise AssertionError(f"unexpected template function {function}")


def assume_role_statements(resources: dict, account_ids: list[str], partition: str = "aws") -> list[dict]:
    """The key-wrapping role's AssumeRole statements, deployed with CustomerAccountIds in ``partition``."""
    template = yaml_template()
    parameters = {
        name: str(p.get("Default", "")).split(",") if p["Type"] == "CommaDelimitedList" else str(p.get("Default", ""))
        for name, p in template["Parameters"].items()
    }
    parameters.update({"CustomerAccountIds": account_ids, "AWS::Partition": partition})
    conditions = {name: deployed(c, parameters, {}) for name, c in template["Conditions"].items()}
    found = []
    for statement in resources["KeyWrappingRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]:
        statement = deployed(statement, parameters, conditions)
        if statement and "sts:AssumeRole" in as_list(statement["Action"]):
            found.append(statement)
    return found


def applies(statement: dict, role_arn: str) -> bool:
    """Whether ``statement`` covers AssumeRole into ``role_arn`` (its Condition evaluated)."""
    if not any(covers(pattern, role_arn) for pattern in as_list(statement["Resource"])):
        return False
    for operator, keys in (statement.get("Condition") or {}).items():
        for key, values in keys.items():
            assert (operator, key) == ("StringEquals", "aws:ResourceAccount"), (operator, key)
            if role_arn.split(":")[4] not in as_list(values):
                return False
    return True


def may_assume(statements: list[dict], role_arn: str) -> bool:
    allowed = any(s["Effect"] == "Allow" and applies(s, role_arn) for s in statements)
    return allowed and not any(s["Effect"] == "Deny" and applies(s, role_arn) for s in statements)


def test_customer_account_ids_limit_the_roles_the_key_wrapping_role_may_assume(resources):
    """Catches the template ignoring CustomerAccountIds (any account's role assumable when the
    operator named some), naming accounts in another partition than the deployment's, or
    losing the deny on the deployment's own account."""
    for partition in ("aws", "aws-cn", "aws-us-gov"):
        statements = assume_role_statements(resources, ["111122223333", "444455556666"], partition)
        assert may_assume(statements, f"arn:{partition}:iam::111122223333:role/tenant-kms"), partition
        assert may_assume(statements, f"arn:{partition}:iam::444455556666:role/path/tenant-kms"), partition
        assert not may_assume(statements, f"arn:{partition}:iam::999988887777:role/tenant-kms")
        assert not may_assume(statements, f"arn:{partition}:iam::{ACCOUNT}:role/Admin")

    # Empty: any account's role, never the deployment's own
    statements = assume_role_statements(resources, [""])
    assert may_assume(statements, "arn:aws:iam::999988887777:role/tenant-kms")
    assert not may_assume(statements, f"arn:aws:iam::{ACCOUNT}:role/Admin")

    # Naming the deployment's own account does not open it
    statements = assume_role_statements(resources, [ACCOUNT])
    assert not may_assume(statements, f"arn:aws:iam::{ACCOUNT}:role/Admin")


def test_the_key_tables_survive_the_stack(resources):
    """Catches a key table that CloudFormation would delete (or replace) with the stack: the
    wrapped keys and records are the tenants' data. Idempotency answers are not kept."""
    for table in ("TenantConfigTable", "KeyVersionTable", "TenantDataTable"):
        resource = resources[table]
        assert (resource.get("DeletionPolicy"), resource.get("UpdateReplacePolicy")) == ("Retain", "Retain"), table
        assert resource["Properties"]["DeletionProtectionEnabled"] is True, table
        assert resource["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert resources["IdempotencyTable"].get("DeletionPolicy") in (None, "Delete")


KEY_TABLES = ("TenantConfigTable", "KeyVersionTable", "TenantDataTable")
TABLE_KEY_USE = {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"}


def test_the_table_key_admits_exactly_the_functions_that_use_its_tables(resources):
    """Catches a function reading or writing a key table without the table key (every call it
    makes fails with AccessDenied once deployed), and a role the key admits that never touches
    those tables: the key policy names the roles by path, IAM by the attached policy."""
    users = {
        owner
        for owner, statement in statements(resources, expand_managed=True)
        if any(str(a).startswith("dynamodb:") for a in as_list(statement["Action"]))
        and any(table in json.dumps(statement["Resource"]) for table in KEY_TABLES)
    }
    assert len(users) == 7 and "FederationFunctionRole" not in users

    policy = resources["TableKey"]["Properties"]["KeyPolicy"]
    (use,) = [s for s in policy["Statement"] if TABLE_KEY_USE & set(as_list(s["Action"]))]
    (pattern,) = resolve(use["Condition"]["ArnLike"]["aws:PrincipalArn"], resources)
    roles = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::IAM::Role"}

    def arn(role: str) -> str:  # as IAM names a role CloudFormation creates
        path = resolve(roles[role].get("Path", "/"), resources)[0]
        return f"arn:aws:iam::{ACCOUNT}:role{path}{STACK}-{role}-1A2B3C4D5E6F"

    assert {role for role in roles if covers(pattern, arn(role))} == users
    attached = {role for role, p in roles.items() if {"Ref": "TableKeyUsePolicy"} in p.get("ManagedPolicyArns", [])}
    assert attached == users


def test_the_table_key_is_used_only_through_dynamodb(resources):
    """Catches a grant letting a function (or anyone in the account) decrypt with the table key
    directly, outside DynamoDB: it would read the tables' key with no table permission."""
    via = {"Fn::Sub": "dynamodb.${AWS::Region}.amazonaws.com"}
    for statement in resources["TableKey"]["Properties"]["KeyPolicy"]["Statement"]:
        if TABLE_KEY_USE & set(as_list(statement["Action"])) or "kms:CreateGrant" in as_list(statement["Action"]):
            assert statement["Condition"]["StringEquals"]["kms:ViaService"] == via, statement["Sid"]
            assert statement["Condition"]["StringEquals"]["kms:CallerAccount"] == {"Ref": "AWS::AccountId"}
        if "Service" in statement["Principal"]:
            assert not TABLE_KEY_USE & set(as_list(statement["Action"])), statement["Sid"]
    for owner, statement in statements(resources, expand_managed=True):
        if TABLE_KEY_USE & set(as_list(statement["Action"])) and "TableKey" in json.dumps(statement["Resource"]):
            assert statement["Condition"] == {"StringEquals": {"kms:ViaService": via}}, owner


def test_every_schedule_keeps_the_events_it_could_not_deliver(resources):
    """Catches a schedule (an EventBridge rule, as SAM makes it) without a dead-letter queue, or
    one whose undelivered events the queue's policy refuses: EventBridge would drop them."""
    rules = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::Events::Rule"}
    assert len(rules) == 3
    for name, rule in rules.items():
        for target in rule["Targets"]:
            assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["ScheduledRunDeadLetterQueue", "Arn"]}}, name
    (statement,) = resources["ScheduledRunDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
    senders = {arn["Fn::GetAtt"][0] for arn in statement["Condition"]["ArnEquals"]["aws:SourceArn"]}
    assert senders == set(rules)


def test_cors_reaches_the_deployed_api_whole_and_only_with_admin_ui_origins(resources):
    """SAM turns an intrinsic CorsConfiguration into the API's x-amazon-apigateway-cors as a
    whole: every header list survives, and no origins means no CORS at all."""
    cors = resources["AdminApi"]["Properties"]["Body"]["x-amazon-apigateway-cors"]
    condition, allowed, otherwise = cors["Fn::If"]
    assert (condition, otherwise) == ("HasAdminUiOrigins", {"Ref": "AWS::NoValue"})
    assert set(allowed) == {"allowOrigins", "allowMethods", "allowHeaders", "exposeHeaders", "maxAge"}
    assert allowed["allowOrigins"]["Fn::Split"][0] == ","
