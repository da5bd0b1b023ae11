"""Public OIDC issuer documents: the discovery document and the JWKS that Entra ID reads to
check the client assertions this deployment signs for its tenants. No authorizer: they hold
public keys only. Also answers browsers' CORS preflights, which carry no token."""

import json

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from kms_wrapping import ProviderConfigInvalid, ProviderUnavailable
from tenant_kms.errors import NotFound
from tenant_kms.errors import ProviderUnavailable as Unavailable
from tenant_kms.observability import logger, metrics
from tenant_kms.openapi import public
from tenant_kms.providers import Identities
from tenant_kms.settings import Settings
from tenant_kms.tracing import tracer

settings = Settings.from_env()
identities = Identities(settings)
app = APIGatewayHttpResolver()
# Entra ID fetches these when it validates an assertion; keys change only with the stack.
CACHE_CONTROL = "public, max-age=3600"


def _document(build) -> Response:
    try:
        body, status = build(identities.signer), 200
    except ProviderConfigInvalid:
        error = NotFound("this deployment is not an OIDC issuer (FEDERATION_ISSUER_URL is not set)")
        body, status = error.as_body(), error.status
    except ProviderUnavailable as exc:
        error = Unavailable(str(exc))
        body, status = error.as_body(), error.status
    headers = {"Cache-Control": CACHE_CONTROL} if status == 200 else {}
    return Response(status, content_types.APPLICATION_JSON, json.dumps(body), headers=headers)


@app.get(
    "/.well-known/openid-configuration",
    operation_id="openid_configuration",
    **public("OpenIdConfiguration", 404, 503, description="The OIDC discovery document of this deployment's issuer"),
)
def discovery():
    return _document(lambda signer: signer.discovery())


@app.get(
    "/.well-known/jwks.json",
    operation_id="jwks",
    **public("Jwks", 404, 503, description="The public keys its client assertions are signed with"),
)
def jwks():
    return _document(lambda signer: signer.jwks())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    if (event.get("requestContext") or {}).get("http", {}).get("method") == "OPTIONS":
        # A CORS preflight: API Gateway adds the headers AdminUiOrigins allows, if any.
        return {"statusCode": 204, "headers": {}, "body": "", "isBase64Encoded": False}
    return app.resolve(event, context)
