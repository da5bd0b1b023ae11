"""Least privilege in the deployed template, checked on what CloudFormation will get:
template.yaml transformed by the SAM translator (policy templates expanded)."""

from __future__ import annotations

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


def statements(resources: dict):
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
                yield logical_id, statement


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

    assert tables_of("VerifyFunctionRole") == {"TenantConfigTable", "KeyVersionTable"}
    assert tables_of("UnwrapFunctionRole") == {"TenantConfigTable", "KeyVersionTable"}
    assert tables_of("ConfigureFunctionRole") == {"TenantConfigTable", "KeyVersionTable"}
    assert tables_of("TenantDataFunctionRole") == {"TenantConfigTable", "KeyVersionTable", "TenantDataTable"}


def test_the_direct_invoke_functions_are_not_behind_the_http_api(resources):
    permissions = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"]
    targets = {str(p["Properties"]["FunctionName"]) for p in permissions}
    assert not any("UnwrapFunction" in t or "TenantDataFunction" in t for t in targets)
