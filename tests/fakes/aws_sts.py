"""AWS STS as the functions reach it (``AWS_ENDPOINT_URL_STS``): moto, with the one action moto
lacks answered here. ``GetWebIdentityToken`` (outbound identity federation) checks the
request's SigV4 signature against the secret moto issued, as AWS does, and answers a JWT
signed by this account's issuer whose ``sub`` is the calling role's ARN (a session of the
key-wrapping role, or the function's own role); every other action
goes to moto unchanged (signed headers included)."""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape

import boto3
from fakes.entra_id import AssertionSigner
from fakes.google_iam import signature_refusal

NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
# The role whose static test credentials (tests/testenv.py) the functions run as by default.
FUNCTION_ROLE = "arn:aws:iam::123456789012:role/tenant-kms-function"


def create_role(moto_endpoint: str, role_arn: str) -> None:
    """The role in moto (trusting anyone), once per session."""
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=moto_endpoint)
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "*"}]}
    with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(RoleName=role_arn.rsplit("/", 1)[1], AssumeRolePolicyDocument=json.dumps(trust))


def _role_of(access_key: str) -> str | None:
    """The role ARN behind a session moto issued (``sub`` names the role, not the session)."""
    from moto.sts.models import sts_backends

    for account in list(sts_backends):
        for backend in sts_backends[account].values():
            session = backend.get_assumed_role_from_access_key(access_key)
            if session is not None:  # arn:aws:sts::<account>:assumed-role/<role>/<session>
                account_id, resource = session.arn.split(":")[4:6]
                return f"arn:aws:iam::{account_id}:role/{resource.split('/')[1]}"
    return None


class FakeSts:
    def __init__(self, moto_endpoint: str, issuer: AssertionSigner) -> None:
        self.moto = urlsplit(moto_endpoint)
        # The function's own credentials, which moto did not issue: their secret and role.
        self.own = {os.environ["AWS_ACCESS_KEY_ID"]: (os.environ["AWS_SECRET_ACCESS_KEY"], FUNCTION_ROLE)}
        self.issuer = issuer
        self.token_requests = 0  # GetWebIdentityToken requests, answered or refused
        self.tokens_issued = 0
        self.fail_with: tuple[int, str, str] | None = None  # (status, code, message) for GetWebIdentityToken
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                form = dict(parse_qsl(body.decode()))
                if form.get("Action") == "GetWebIdentityToken":
                    url = f"http://{self.headers.get('Host')}{self.path}"
                    status, answer = fake._web_identity_token(url, dict(self.headers.items()), body, form)
                else:
                    status, answer = fake._to_moto(self.path, dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _to_moto(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        upstream = http.client.HTTPConnection(self.moto.hostname, self.moto.port, timeout=30)
        upstream.request("POST", path, body=body, headers={**headers, "Content-Length": str(len(body))})
        answer = upstream.getresponse()
        data = answer.read()
        upstream.close()
        return answer.status, data

    @staticmethod
    def _error(status: int, code: str, message: str) -> tuple[int, bytes]:
        fault = "Receiver" if status >= 500 else "Sender"
        xml = (
            f'<ErrorResponse xmlns="{NAMESPACE}"><Error><Type>{fault}</Type><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        )
        return status, xml.encode()

    def _web_identity_token(self, url: str, headers: dict, body: bytes, form: dict) -> tuple[int, bytes]:
        self.token_requests += 1
        refused = signature_refusal(url, headers, body, {key: secret for key, (secret, _) in self.own.items()})
        if refused:
            code, _, message = refused.partition(" with error message: ")
            return self._error(400 if code == "IncompleteSignature" else 403, code, message)
        key = headers.get("Authorization", "").split("Credential=", 1)[1].split("/", 1)[0]
        role = self.own[key][1] if key in self.own else _role_of(key)
        if self.fail_with:
            return self._error(*self.fail_with)
        audiences = [v for k, v in sorted(form.items()) if k.startswith("Audience.member.")]
        if form.get("SigningAlgorithm") != "RS256" or not audiences:
            return self._error(400, "ValidationError", "Audience and SigningAlgorithm RS256 are required here.")
        duration = int(form.get("DurationSeconds") or 300)
        if not 60 <= duration <= 3600:
            return self._error(400, "ValidationError", "DurationSeconds must be between 60 and 3600.")
        now = int(time.time())
        claims = {
            "iss": self.issuer.issuer,
            "sub": role,
            "aud": audiences[0] if len(audiences) == 1 else audiences,
            "iat": now,
            "nbf": now,
            "exp": now + duration,
            "jti": uuid.uuid4().hex,
            "https://sts.amazonaws.com/": {"principal_id": role},
        }
        self.tokens_issued += 1
        expiration = datetime.datetime.fromtimestamp(now + duration, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        xml = (
            f'<GetWebIdentityTokenResponse xmlns="{NAMESPACE}"><GetWebIdentityTokenResult>'
            f"<WebIdentityToken>{self.issuer.sign(claims)}</WebIdentityToken><Expiration>{expiration}</Expiration>"
            f"</GetWebIdentityTokenResult><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
            f"</ResponseMetadata></GetWebIdentityTokenResponse>"
        )
        return 200, xml.encode()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
