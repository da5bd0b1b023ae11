"""Local only: the Lambda authorizer `sam local start-api` runs in place of AdminApi's JWT authorizer.

sam local runs no JWT authorizer. This one takes the claims a JWT authorizer would have
verified from the dev-only ``X-Local-Claims`` header (a JSON object) and hands them to the
functions as its context. It verifies nothing, so it exists only in the template
local/sam_local.py writes for sam local; template.yaml and deployments never contain it.
"""

from __future__ import annotations

import json
from typing import Any

CLAIMS_HEADER = "x-local-claims"


def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    try:
        claims = json.loads(headers.get(CLAIMS_HEADER) or "")
    except ValueError:
        claims = None
    if not isinstance(claims, dict):
        # Deployed, a token the JWT authorizer cannot use is a 401. A Lambda authorizer under sam
        # local can refuse only with a 403 in sam's own words, so the request goes on with no
        # claims and the function answers the 401, as under the local gateway.
        claims = {}
    return {"isAuthorized": True, "context": claims}
