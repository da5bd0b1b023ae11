"""Given-steps shared by the AWS tests."""

from __future__ import annotations

from support import Function, b64, http_sample, invoke_sample, read_record


def configure(tenant_id: str, provider: str, config: dict, *, function: Function | None = None) -> tuple[int, dict]:
    function = function or Function("configure")
    return function.http(http_sample("configure_put_global", tenant_id, body={"provider": provider, "config": config}))


def view(tenant_id: str) -> dict:
    return Function("configure").http(http_sample("configure_get", tenant_id))[1]


def put_records(tenant_id: str, values: dict[str, bytes], data: Function | None = None) -> None:
    data = data or Function("tenant_data")
    for name, value in values.items():
        answer = data(invoke_sample("tenant_data_put", tenant_id, name=name, value_b64=b64(value)))
        assert "version" in answer, answer


def read(tenant_id: str, name: str, data: Function) -> tuple[bytes, int] | str:
    return read_record(data, tenant_id, name)
