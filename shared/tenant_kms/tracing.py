"""The Powertools tracer (X-Ray subsegments for handlers and AWS calls).

Kept apart from the other observability: importing the X-Ray SDK costs ~150 ms of cold
start (it builds an X-Ray client at import), so the direct-invoke hot path (unwrap, tenant
data) relies on Lambda's active tracing alone; see bench/ and the README.
"""

from aws_lambda_powertools import Tracer

from tenant_kms.observability import SERVICE

tracer = Tracer(service=SERVICE)
