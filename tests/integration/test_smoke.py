from support import Function, http_sample, invoke_sample, b64


def test_smoke(tenant_id):
    configure = Function("configure")
    status, body = configure.http(http_sample("configure_put_global", tenant_id))
    assert status == 200, body
    data = Function("tenant_data")
    r = data(invoke_sample("tenant_data_put", tenant_id))
    assert r == {"name": "db-admin-password", "version": 1}, r
    r = data(invoke_sample("tenant_data_get", tenant_id))
    assert r["value_b64"] == "aHVudGVyMg==", r
    u = Function("unwrap")(invoke_sample("unwrap", tenant_id))
    assert u["version"] == 1, u
