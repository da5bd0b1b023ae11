"""Creates the service's DynamoDB tables from template.yaml, the one source of truth for
their key schemas, so local runs and tests use exactly what a deployment gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"

# Logical id of each table -> the environment variable the functions read its name from.
TABLE_SETTINGS = {
    "TenantConfigTable": "CONFIG_TABLE",
    "KeyVersionTable": "KEY_VERSION_TABLE",
    "TenantDataTable": "TENANT_DATA_TABLE",
    "IdempotencyTable": "IDEMPOTENCY_TABLE",
    "JobTable": "JOB_TABLE",
    "SweepTable": "SWEEP_TABLE",
}


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Ref, !Sub, ...) as plain data."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {f"Fn::{suffix}" if suffix != "Ref" else "Ref": value}


_CfnLoader.add_multi_constructor("!", _tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def table_definitions(template: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    template = template or load_template()
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in template["Resources"].items()
        if isinstance(resource, dict) and resource["Type"] == "AWS::DynamoDB::Table"
    }


def create_tables(client: Any, names: dict[str, str]) -> None:
    """Create each table (logical id -> physical name) as template.yaml declares it."""
    existing = set(client.list_tables()["TableNames"])
    for logical_id, props in table_definitions().items():
        name = names[logical_id]
        if name in existing:
            continue
        request: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if props.get(index_kind):
                request[index_kind] = props[index_kind]
        client.create_table(**request)
        client.get_waiter("table_exists").wait(TableName=name)
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
