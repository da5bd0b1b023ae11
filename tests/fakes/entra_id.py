"""A wire-level fake of Entra ID's token endpoint for workload identity federation.

``POST /{tenant}/oauth2/v2.0/token`` with ``grant_type=client_credentials`` and a JWT
``client_assertion``: the assertion's iss/sub/aud must match a federated credential of the
application, its RS256 signature must verify against the issuer's keys and it must be
within its lifetime. Answers as Entra does: 200 with an access token, 400/401 with an
AADSTS error body, and on demand 429 or 5xx. Every assertion received is recorded, so a
test can tell which subject each tenant presented."""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fakes.azure_hosts import JsonHandler, serve_https

AUDIENCE = "api://AzureADTokenExchange"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class FederatedCredential:
    issuer: str
    subject: str
    audience: str = AUDIENCE


@dataclass
class Application:
    client_id: str
    credentials: list[FederatedCredential] = field(default_factory=list)
    enabled: bool = True


@dataclass(frozen=True)
class IssuedToken:
    tenant: str
    client_id: str
    resource: str
    expires_at: float


class AssertionSigner:
    """A test OIDC issuer: RS256 assertions {iss, sub, aud, iat, nbf, exp, jti} for one subject."""

    def __init__(self, issuer: str, *, subject: str) -> None:
        self.issuer = issuer
        self.subject = subject
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex
        self.failing: Exception | None = None

    def sign(self, claims: dict) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def source(self, _tenant_id: str | None = None):
        def assertion() -> str:
            if self.failing is not None:
                raise self.failing
            now = int(time.time())
            claims = {"iss": self.issuer, "sub": self.subject, "aud": AUDIENCE}
            return self.sign({**claims, "iat": now, "nbf": now, "exp": now + 300, "jti": uuid.uuid4().hex})

        return assertion


class FakeEntraId:
    def __init__(self, cert_file, key_file) -> None:
        self.tenants: dict[str, dict[str, Application]] = {}
        self.issuer_keys: dict[str, dict[str, rsa.RSAPublicKey]] = {}
        self.assertions: list[dict] = []
        self.requests = 0
        self._tokens: dict[str, IssuedToken] = {}
        self._faults: list[tuple[int | str, bytes, str]] = []
        self._persistent: tuple[int | str, bytes, str] | None = None
        self._lock = threading.Lock()
        entra = self

        class Handler(JsonHandler):
            def _error(self, status: int, error: str, code: int, text: str) -> None:
                description = f"AADSTS{code}: {text} Trace ID: {uuid.uuid4()} Correlation ID: {uuid.uuid4()}"
                self.answer(
                    status,
                    {
                        "error": error,
                        "error_description": description,
                        "error_codes": [code],
                        "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
                        "trace_id": str(uuid.uuid4()),
                        "correlation_id": str(uuid.uuid4()),
                    },
                )

            def do_GET(self) -> None:
                self.answer(404, {"error": "not_found"})

            def do_POST(self) -> None:
                form = {k: v[0] for k, v in parse_qs(self.body().decode()).items()}
                with entra._lock:
                    entra.requests += 1
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) != 4 or parts[1:] != ["oauth2", "v2.0", "token"]:
                    return self.answer(404, {"error": "not_found"})
                fault = entra._fault()
                if fault and fault[0] == "drop":  # the connection closes with no answer
                    self.close_connection = True
                    return None
                if fault:
                    status, raw, content_type = fault
                    headers = {"Content-Type": content_type}
                    if status == 429 or status >= 500:
                        headers["Retry-After"] = "0"
                    return self.answer(status, raw=raw, headers=headers)
                tenant = parts[0]
                entra._token_request(self, tenant, form)

        self._server = serve_https(Handler, cert_file, key_file)
        self.port = self._server.server_address[1]

    # --- what the customer's tenant holds -------------------------------------------------
    def application(self, tenant: str, client_id: str) -> Application:
        return self.tenants.setdefault(tenant, {}).setdefault(client_id, Application(client_id))

    def federate(self, tenant: str, client_id: str, issuer: str, subject: str, audience: str = AUDIENCE) -> None:
        self.application(tenant, client_id).credentials.append(FederatedCredential(issuer, subject, audience))

    def remove_federation(self, tenant: str, client_id: str, subject: str) -> None:
        app = self.application(tenant, client_id)
        app.credentials = [c for c in app.credentials if c.subject != subject]

    def trust_issuer(self, signer: AssertionSigner) -> None:
        """Entra fetches the issuer's JWKS through its discovery document; here it is handed over."""
        self.issuer_keys.setdefault(signer.issuer, {})[signer.kid] = signer.key.public_key()

    def trust_jwks(self, issuer: str, jwks: dict) -> None:
        """The RSA keys of an issuer's JWKS document, as Entra reads them."""
        for jwk in jwks["keys"]:
            e, n = (int.from_bytes(unb64url(jwk[part]), "big") for part in ("e", "n"))
            self.issuer_keys.setdefault(issuer, {})[jwk["kid"]] = rsa.RSAPublicNumbers(e, n).public_key()

    def token(self, token: str) -> IssuedToken | None:
        issued = self._tokens.get(token)
        return issued if issued and issued.expires_at > time.time() else None

    def expire_tokens(self) -> None:
        """Every access token issued so far stops being accepted (expired or revoked)."""
        with self._lock:
            for token, issued in list(self._tokens.items()):
                self._tokens[token] = dataclasses.replace(issued, expires_at=0.0)

    def subjects(self, client_id: str | None = None) -> list[str]:
        return [a["sub"] for a in self.assertions if client_id in (None, a["client_id"])]

    # --- faults ---------------------------------------------------------------------------
    def fail_next(self, count: int, status: int | str, raw: bytes = b"", content_type: str = "text/html") -> None:
        """``status``: an HTTP status answered with ``raw``, or "drop" (close with no answer)."""
        with self._lock:
            self._faults.extend([(status, raw, content_type)] * count)

    def fail_always(self, status: int | str | None, raw: bytes = b"", content_type: str = "text/html") -> None:
        with self._lock:
            self._persistent = (status, raw, content_type) if status else None
            if status is None:
                self._faults.clear()

    def _fault(self) -> tuple[int | str, bytes, str] | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else self._persistent

    # --- the token endpoint ---------------------------------------------------------------
    def _token_request(self, handler: Handler, tenant: str, form: dict) -> None:  # noqa: F821
        required = ("client_id", "client_assertion", "client_assertion_type", "grant_type", "scope")
        missing = [name for name in required if not form.get(name)]
        if missing:
            return handler._error(400, "invalid_request", 90014, f"The required field '{missing[0]}' is missing.")
        if form["grant_type"] != "client_credentials" or form["client_assertion_type"] != JWT_BEARER:
            return handler._error(400, "invalid_request", 70003, "The app requested an unsupported grant type.")
        scopes = form["scope"].split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            return handler._error(400, "invalid_scope", 1002012, "The provided value for scope is not valid.")
        record = {"tenant": tenant, "client_id": form["client_id"], "iss": None, "sub": None, "aud": None}
        self.assertions.append(record)
        try:
            signing_input, _, signature = form["client_assertion"].rpartition(".")
            header_b64, _, claims_b64 = signing_input.partition(".")
            header, claims = json.loads(unb64url(header_b64)), json.loads(unb64url(claims_b64))
        except ValueError:
            return handler._error(400, "invalid_client", 50027, "JWT token is invalid or malformed.")
        record.update(iss=claims.get("iss"), sub=claims.get("sub"), aud=claims.get("aud"))
        apps = self.tenants.get(tenant)
        if apps is None:
            return handler._error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        app = apps.get(form["client_id"])
        if app is None:
            return handler._error(
                400, "unauthorized_client", 700016, f"Application with identifier '{form['client_id']}' was not found."
            )
        if not app.enabled:
            return handler._error(400, "unauthorized_client", 7000112, "Application is disabled.")
        by_issuer = [c for c in app.credentials if c.issuer == claims.get("iss")]
        by_subject = [c for c in by_issuer if c.subject == claims.get("sub")]
        matching = [c for c in by_subject if c.audience == claims.get("aud")]
        if not by_issuer:
            code, what = 700211, "issuer"
        elif not by_subject:
            code, what = 700213, "subject"
        elif not matching:
            code, what = 700212, "audience"
        else:
            code = 0
        if code:
            text = f"No matching federated identity record found for presented assertion {what}."
            return handler._error(400, "invalid_client", code, text)
        public = self.issuer_keys.get(claims["iss"], {}).get(header.get("kid"))
        try:
            if header.get("alg") != "RS256" or public is None:
                raise InvalidSignature
            public.verify(unb64url(signature), signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            return handler._error(401, "invalid_client", 700027, "Client assertion failed signature validation.")
        now = time.time()
        if not (claims.get("nbf", claims.get("iat", 0)) - 300 <= now < claims.get("exp", 0)):
            return handler._error(400, "invalid_client", 700024, "Client assertion is not within its valid time range.")
        record["outcome"] = "issued"
        token = secrets.token_urlsafe(32)
        self._tokens[token] = IssuedToken(tenant, app.client_id, scopes[0].removesuffix("/.default"), now + 3599)
        handler.answer(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
