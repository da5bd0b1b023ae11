"""A wire-level fake of Google's token services for Workload Identity Federation:
``sts.googleapis.com/v1/token`` (the token exchange) and ``iamcredentials.googleapis.com``
``generateAccessToken`` (service-account impersonation), one HTTPS server answering both
host names, reached by name over verified TLS (see ``azure_hosts.resolve_to_loopback``).

As Google does for an AWS provider, the exchange checks the signed GetCallerIdentity in the
subject token (its SigV4 signature, which moto's server does not check, against the secret
moto issued), replays it against AWS STS (moto here) and takes the caller's ARN as
``assertion.arn`` and as the subject; the provider's account and attribute condition
decide. Tokens it issues name the principal they stand for, which the Cloud KMS fake checks
against the key's bindings."""

from __future__ import annotations

import datetime
import json
import re
import secrets
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import requests
from fakes.azure_hosts import JsonHandler, serve_https

STS_HOST = "sts.googleapis.com"
IAM_CREDENTIALS_HOST = "iamcredentials.googleapis.com"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
AWS_SUBJECT_TYPE = "urn:ietf:params:aws:token-type:aws4_request"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
TOKEN_LIFETIME_SECONDS = 3600
IAM_SCOPE = "https://www.googleapis.com/auth/iam"  # what google-auth asks for before impersonating
_AUDIENCE = re.compile(
    r"^//iam\.googleapis\.com/projects/(?P<project>\d+)/locations/global/"
    r"workloadIdentityPools/(?P<pool>[^/]+)/providers/(?P<provider>[^/]+)$"
)
_GET_CALLER_IDENTITY = re.compile(
    r"^https://sts\.[a-z0-9-]+\.amazonaws\.com/?\?Action=GetCallerIdentity&Version=2011-06-15$"
)
_CONDITION = re.compile(r"^assertion\.arn\s*==\s*'([^']*)'$")
_AWS_NS = {"sts": "https://sts.amazonaws.com/doc/2011-06-15/"}


def secret_key(access_key: str) -> str | None:
    """The secret moto issued with an access key (moto runs in this process); None: unknown."""
    from moto.sts.models import sts_backends

    for account in list(sts_backends):
        for backend in sts_backends[account].values():
            role = backend.get_assumed_role_from_access_key(access_key)
            if role is not None:
                return role.secret_access_key
    return None


def signature_refusal(
    url: str, headers: dict[str, str], body: bytes = b"", known: dict[str, str] | None = None
) -> str | None:
    """What AWS STS would answer for this signed request before looking at it, if anything.

    moto's server does not check signatures, so this does, as AWS does. ``known``: secrets of
    access keys moto did not issue (the function's own)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    lowered = {k.lower(): v for k, v in headers.items()}
    match = re.match(
        r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/sts/aws4_request, "
        r"SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]+)$",
        lowered.get("authorization", ""),
    )
    if not match:
        return "IncompleteSignature with error message: The request signature is malformed."
    secret = (known or {}).get(match["key"]) or secret_key(match["key"])
    if secret is None:
        return "InvalidClientTokenId with error message: The security token included in the request is invalid."
    signed = match["signed"].split(";")
    request = AWSRequest(method="POST", url=url, headers={name: lowered.get(name, "") for name in signed}, data=body)
    request.context["timestamp"] = lowered.get("x-amz-date", "")
    auth = SigV4Auth(Credentials(match["key"], secret, lowered.get("x-amz-security-token")), "sts", match["region"])
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    if expected != match["signature"]:
        return "SignatureDoesNotMatch with error message: The request signature we calculated does not match."
    return None


def evaluate(condition: str, assertion: dict[str, str]) -> bool:
    """The subset of CEL attribute conditions the tests use: ``assertion.arn == '…'`` joined by ``||``."""
    for clause in condition.split("||"):
        match = _CONDITION.match(clause.strip().strip("()").strip())
        if not match:
            raise ValueError(f"attribute condition not understood by the fake: {clause!r}")
        if assertion["arn"] == match.group(1):
            return True
    return False


@dataclass
class WorkloadProvider:
    audience: str
    aws_account: str
    condition: str | None = None
    state: str = "ACTIVE"  # DISABLED / DELETED turn every exchange away


@dataclass
class ServiceAccount:
    email: str
    users: set[str] = field(default_factory=set)  # roles/iam.workloadIdentityUser members
    exists: bool = True


class FakeGoogleIam:
    def __init__(self, cert_file: Path, key_file: Path, aws_sts_endpoint: str) -> None:
        self.aws_sts_endpoint = aws_sts_endpoint
        self.providers: dict[str, WorkloadProvider] = {}
        self.service_accounts: dict[str, ServiceAccount] = {}
        self.tokens: dict[str, tuple[str, float]] = {}  # access token -> (principal, expiry)
        self.clock = time.time  # Google's clock, which decides when a token it issued expires
        self.exchanges: list[tuple[str, str]] = []  # (audience, assertion.arn) of every accepted exchange
        self.callers: list[tuple[str, str]] = []  # (audience, assertion.arn) of every exchange, refused or not
        self.requests: list[tuple[str, str]] = []  # (host, path) of every request
        self._faults: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._server = serve_https(self._handler(), cert_file, key_file)
        self.port = self._server.server_address[1]

    # ----------------------------------------------------------------- control

    def create_provider(self, audience: str, *, aws_account: str, condition: str | None = None) -> WorkloadProvider:
        assert _AUDIENCE.match(audience), audience
        provider = self.providers[audience] = WorkloadProvider(audience, aws_account, condition)
        return provider

    @staticmethod
    def principal(audience: str, subject: str) -> str:
        """The IAM member a federated identity is: ``principal://…/workloadIdentityPools/<pool>/subject/<arn>``."""
        match = _AUDIENCE.match(audience)
        return (
            f"principal://iam.googleapis.com/projects/{match['project']}/locations/global/"
            f"workloadIdentityPools/{match['pool']}/subject/{subject}"
        )

    @staticmethod
    def principal_set(audience: str) -> str:
        """The IAM member for every identity of the provider's pool."""
        match = _AUDIENCE.match(audience)
        return (
            f"principalSet://iam.googleapis.com/projects/{match['project']}/locations/global/"
            f"workloadIdentityPools/{match['pool']}/*"
        )

    def create_service_account(self, email: str, *users: str) -> ServiceAccount:
        account = self.service_accounts[email] = ServiceAccount(email, set(users))
        return account

    def principal_of(self, token: str) -> str | None:
        """Whom a token stands for; None: not one we issued, or expired."""
        with self._lock:
            principal, expiry = self.tokens.get(token, (None, 0.0))
        return principal if self.clock() < expiry else None

    def fail_next(self, count: int, host: str, status: int) -> None:
        with self._lock:
            self._faults.extend([(host, status)] * count)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def count(self, host: str) -> int:
        return sum(1 for h, _ in self.requests if h == host)

    # ----------------------------------------------------------------- service

    def _fault(self, host: str) -> int | None:
        with self._lock:
            for index, (fault_host, status) in enumerate(self._faults):
                if fault_host == host:
                    del self._faults[index]
                    return status
        return None

    def _issue(self, principal: str) -> str:
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = (principal, self.clock() + TOKEN_LIFETIME_SECONDS)
        return token

    def _caller_arn(self, subject_token: str, audience: str) -> tuple[str | None, str]:
        """Replays the signed GetCallerIdentity as Google does; (arn, why not)."""
        try:
            signed = json.loads(urllib.parse.unquote(subject_token))
            headers = {h["key"]: h["value"] for h in signed["headers"]}
            url, method = signed["url"], signed["method"]
        except (ValueError, KeyError, TypeError):
            return None, "The subject token is not a valid serialized AWS signed request."
        if method != "POST" or not _GET_CALLER_IDENTITY.match(url):
            return None, "The subject token is not a signed AWS STS GetCallerIdentity request."
        if headers.get("x-goog-cloud-target-resource") != audience:
            return None, "The x-goog-cloud-target-resource header does not match the audience."
        if not any(k.lower() == "authorization" for k in headers):
            return None, "The subject token is not signed."
        refused = signature_refusal(url, headers)
        if refused:
            return None, f"Received invalid AWS response of type {refused}"
        query = url.split("?", 1)[1]
        answer = requests.post(f"{self.aws_sts_endpoint}/?{query}", headers=headers, timeout=10)
        root = ET.fromstring(answer.content)
        if answer.status_code != 200:
            code = root.findtext(".//{*}Code") or "Unknown"
            message = root.findtext(".//{*}Message") or ""
            return None, f"Received invalid AWS response of type {code} with error message: {message}"
        return root.findtext(".//sts:Arn", namespaces=_AWS_NS), ""

    def _exchange(self, form: dict[str, str]) -> tuple[int, dict]:
        def refuse(status: int, error: str, description: str) -> tuple[int, dict]:
            return status, {"error": error, "error_description": description}

        if form.get("grant_type") != TOKEN_EXCHANGE or form.get("requested_token_type") != ACCESS_TOKEN_TYPE:
            return refuse(400, "invalid_request", "Invalid grant_type or requested_token_type.")
        if form.get("subject_token_type") != AWS_SUBJECT_TYPE:
            return refuse(400, "invalid_request", "Invalid subject_token_type.")
        if not {CLOUD_PLATFORM, IAM_SCOPE} & set(form.get("scope", "").split()):
            return refuse(400, "invalid_scope", "The scope is not allowed.")
        audience = form.get("audience", "")
        provider = self.providers.get(audience)
        if provider is None or provider.state != "ACTIVE":
            return refuse(
                400,
                "invalid_target",
                'The target service indicated by the "audience" parameters is invalid. This might either be '
                "because the pool or provider is disabled or deleted or because it doesn't exist.",
            )
        arn, why = self._caller_arn(form.get("subject_token", ""), audience)
        if arn is None:
            return refuse(400, "invalid_grant", why)
        self.callers.append((audience, arn))
        if arn.split(":")[4] != provider.aws_account:
            return refuse(400, "invalid_grant", "The AWS account of the caller does not match the provider.")
        if provider.condition is not None and not evaluate(provider.condition, {"arn": arn}):
            return refuse(400, "unauthorized_client", "The given credential is rejected by the attribute condition.")
        self.exchanges.append((audience, arn))
        token = self._issue(self.principal(audience, arn))
        return 200, {
            "access_token": token,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_SECONDS,
        }

    def _impersonate(self, email: str, bearer: str | None, body: dict) -> tuple[int, dict]:
        def error(status: int, state: str, message: str) -> tuple[int, dict]:
            return status, {"error": {"code": status, "message": message, "status": state}}

        principal = self.principal_of(bearer or "")
        if principal is None:
            return error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                "or other valid authentication credential.",
            )
        account = self.service_accounts.get(email)
        if account is None or not account.exists:
            return error(404, "NOT_FOUND", f"Not found; Gaia id not found for email {email}")
        if principal not in account.users:
            return error(
                403,
                "PERMISSION_DENIED",
                "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
            )
        if CLOUD_PLATFORM not in body.get("scope", []):
            return error(400, "INVALID_ARGUMENT", "scope is required")
        expires = datetime.datetime.fromtimestamp(self.clock() + TOKEN_LIFETIME_SECONDS, datetime.UTC)
        return 200, {
            "accessToken": self._issue(f"serviceAccount:{email}"),
            "expireTime": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def _handler(self) -> type[JsonHandler]:
        fake = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                host = (self.headers.get("Host") or "").split(":")[0]
                path = urllib.parse.urlsplit(self.path).path
                body = self.body()
                fake.requests.append((host, path))
                fault = fake._fault(host)
                if fault is not None:
                    state = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 502: "UNAVAILABLE"}.get(fault, "UNAVAILABLE")
                    self.answer(fault, {"error": {"code": fault, "message": "try again later", "status": state}})
                elif host == STS_HOST and path == "/v1/token":
                    form = dict(urllib.parse.parse_qsl(body.decode()))
                    self.answer(*fake._exchange(form))
                elif host == IAM_CREDENTIALS_HOST and path.endswith(":generateAccessToken"):
                    email = urllib.parse.unquote(path.split("/serviceAccounts/", 1)[1].rsplit(":", 1)[0])
                    authorization = self.headers.get("Authorization") or ""
                    bearer = authorization[7:] if authorization.startswith("Bearer ") else None
                    try:
                        request = json.loads(body or b"{}")
                    except ValueError:
                        request = {}
                    self.answer(*fake._impersonate(email, bearer, request))
                else:
                    self.answer(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})

        return Handler
