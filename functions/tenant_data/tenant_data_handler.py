"""Direct invoke: tenant data records sealed under the tenant's active key version.
``{"op": "put"|"get"|"delete", "tenant_id", "name", "value_b64"?}``."""

import base64
import binascii

from aws_lambda_powertools.utilities.typing import LambdaContext

from tenant_kms.errors import InvalidRequest
from tenant_kms.invoke import TENANT_DATA_SCHEMA, compile_schema, respond
from tenant_kms.observability import logger, metrics
from tenant_kms.records import TenantRecords
from tenant_kms.service import TenantKms
from tenant_kms.settings import Settings

settings = Settings.from_env()
service = TenantKms(settings)
records = TenantRecords(service)
check = compile_schema(TENANT_DATA_SCHEMA)


def _value(encoded: str) -> bytes:
    try:
        value = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(
            "value_b64 is not valid base64: send standard base64 (A-Z a-z 0-9 + /, padded with =)"
        ) from None
    if len(value) > settings.max_record_bytes:
        raise InvalidRequest(f"value_b64 decodes to more than {settings.max_record_bytes} bytes, a record's limit")
    return value


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    def operate() -> dict:
        request = check(event)
        tenant_id, name = request["tenant_id"], request["name"]
        if request["op"] == "put":
            return records.put_record(tenant_id, name, _value(request["value_b64"]), actor="internal")
        if request["op"] == "get":
            return records.get_record(tenant_id, name, actor="internal")
        return records.delete_record(tenant_id, name, actor="internal")

    return respond(operate, context, service.clock)
