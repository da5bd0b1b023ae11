"""Concurrent provisions leave exactly one active version, numbered contiguously (docs/LIFECYCLE.md rule 3)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from support import Function, http_sample


def test_twenty_concurrent_provisions_leave_one_active_version(tenant_id):
    configure = Function("configure")
    assert configure.http(http_sample("configure_put_global", tenant_id))[0] == 200
    instances = [Function("provision") for _ in range(20)]
    start = threading.Barrier(len(instances))

    def provision(function: Function) -> tuple[int, dict]:
        start.wait()
        return function.http(http_sample("provision_post", tenant_id))

    with ThreadPoolExecutor(len(instances)) as pool:
        answers = list(pool.map(provision, instances))

    statuses = [status for status, _ in answers]
    assert set(statuses) <= {201, 409}, answers
    assert all(body["error"]["code"] == "conflict" for status, body in answers if status == 409)
    created = sorted(body["version"] for status, body in answers if status == 201)
    assert created, "at least one provision must win"
    assert len(set(created)) == len(created)

    versions = instances[0].http(http_sample("provision_list", tenant_id))[1]["versions"]
    numbers = [v["version"] for v in versions]
    assert numbers == list(range(1, len(created) + 2))
    assert [v["version"] for v in versions if v["status"] == "active"] == [numbers[-1]]
    assert all(v["status"] == "retired" for v in versions[:-1])
    assert configure.http(http_sample("configure_get", tenant_id))[1]["active_version"] == numbers[-1]
