"""What a deployment must choose has no default, samconfig.toml names it with a value the
template refuses until someone fills it in, and every parameter is documented."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from local_tables import load_template
from sam_local import LOCAL_PARAMETERS

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = os.environ.get("SAM_PYTHON", str(ROOT / ".tools-sam" / "bin" / "python"))
PARAMETERS = load_template()["Parameters"]
REQUIRED = {name for name, parameter in PARAMETERS.items() if "Default" not in parameter}

# samconfig.toml's deploy overrides as `sam deploy` reads them: the SAM CLI's own parser.
READ_OVERRIDES = """
import json, sys
from pathlib import Path
from samcli.cli.types import CfnParameterOverridesType
from samcli.lib.config.samconfig import SamConfig
config = SamConfig(Path(sys.argv[1]), "samconfig.toml").get_all(["deploy"], "parameters", env="default")
print(json.dumps({"config": dict(config), "overrides": CfnParameterOverridesType().convert(
    config["parameter_overrides"], None, None)}))
"""


@pytest.fixture(scope="module")
def deploy_config() -> dict:
    result = subprocess.run(
        [SAM_PYTHON, "-c", READ_OVERRIDES, str(ROOT)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def allowed(name: str, value: str) -> bool:
    """Whether CloudFormation takes ``value`` for the parameter (its AllowedPattern/Values)."""
    parameter = PARAMETERS[name]
    if "AllowedValues" in parameter:
        return value in [str(v) for v in parameter["AllowedValues"]]
    return re.fullmatch(parameter.get("AllowedPattern", ".*"), value) is not None


def test_what_a_deployment_must_choose_has_no_placeholder_default():
    assert {"MasterKeySecretArn", "JwtIssuer", "JwtAudience"} <= REQUIRED
    for name, parameter in PARAMETERS.items():
        assert not re.search(r"example\.com|000000000000", str(parameter.get("Default", ""))), name


def test_samconfig_names_each_required_parameter_with_a_value_the_template_refuses(deploy_config):
    overrides = deploy_config["overrides"]
    assert set(overrides) >= REQUIRED
    for name in REQUIRED:
        assert not allowed(name, overrides[name]), f"{name}={overrides[name]} would deploy unedited"


def test_real_values_of_the_required_parameters_are_accepted():
    chosen = {
        "MasterKeySecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:tenant-kms/master-key-a1B2c3",
        "JwtIssuer": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123dEf",
        "JwtAudience": "1example23456789abcdefghij",  # a Cognito app client id
    }
    assert set(chosen) == REQUIRED
    assert all(allowed(name, value) for name, value in chosen.items())


def test_samconfig_shows_the_optional_parameters_at_their_defaults(deploy_config):
    overrides = deploy_config["overrides"]
    assert set(overrides) <= set(PARAMETERS)
    for name in set(overrides) - REQUIRED:
        assert overrides[name] == str(PARAMETERS[name]["Default"]), name
    assert {"InternalInvokerRoleNames", "AlarmTopicArn", "LogLevel"} <= set(overrides)


def test_the_stack_may_create_the_named_key_wrapping_role(deploy_config):
    assert "RoleName" in load_template()["Resources"]["KeyWrappingRole"]["Properties"]
    assert "CAPABILITY_NAMED_IAM" in deploy_config["config"]["capabilities"].split()


def test_local_runs_pass_values_the_template_accepts():
    assert set(LOCAL_PARAMETERS) == REQUIRED
    assert all(allowed(name, value) for name, value in LOCAL_PARAMETERS.items())


def test_every_parameter_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    configuration = readme[readme.index("## Configuration") : readme.index("## Deploy")]
    assert [name for name in PARAMETERS if f"`{name}`" not in configuration] == []


def test_outputs_name_the_api_the_trusted_role_and_every_function():
    template = load_template()
    outputs = template["Outputs"]
    assert "AdminApiUrl" in outputs and outputs["KeyWrappingRoleArn"]["Value"] == {"Fn::GetAtt": "KeyWrappingRole.Arn"}
    functions = [
        logical_id
        for logical_id, resource in template["Resources"].items()
        if isinstance(resource, dict) and resource["Type"] == "AWS::Serverless::Function"
    ]
    for logical_id in functions:
        assert outputs[f"{logical_id}Arn"]["Value"] == {"Fn::GetAtt": f"{logical_id}.Arn"}, logical_id
