"""Refuses static credentials anywhere in a request body (docs/LIFECYCLE.md rule 2).

Configs hold non-secret references only. The scan looks at every key and every string
value, at any depth; a match is reported by its path, never by its value.
"""

from __future__ import annotations

import re
from typing import Any

from tenant_kms import untrusted_json
from tenant_kms.errors import InvalidRequest, StaticCredentialsRejected

# Field names that only ever hold a secret, compared without case, "_" or "-".
_SECRET_FIELDS = {
    "accesskeyid": "an AWS access key id",
    "awsaccesskeyid": "an AWS access key id",
    "secretaccesskey": "an AWS secret access key",
    "awssecretaccesskey": "an AWS secret access key",
    "secretkey": "a secret key",
    "sessiontoken": "an AWS session token",
    "awssessiontoken": "an AWS session token",
    "securitytoken": "a security token",
    "credentials": "a credentials object",
    "privatekey": "a private key",
    "privatekeyid": "a private key id",
    "clientsecret": "a client secret",
    "clientcertificate": "a client certificate",
    "clientcertificatepath": "a client certificate",
    "certificate": "a certificate",
    "certificatepassword": "a certificate password",
    "clientassertion": "a client assertion",
    "password": "a password",
    "pfx": "a certificate",
    "refreshtoken": "a refresh token",
    "accesstoken": "an access token",
}

_VALUE_PATTERNS = (
    (re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])"), "an AWS access key id"),
    (re.compile(r"-----BEGIN [A-Z0-9 ]*-----"), "a PEM block"),
    (re.compile(r'"type"\s*:\s*"(?:service_account|authorized_user)"'), "a GCP service-account key"),
    (re.compile(r'"private_key(?:_id)?"\s*:'), "a private key"),
    (re.compile(r"(?<![\w~.-])[\w~.-]{3}\dQ~[\w~.-]{31,34}(?![\w~.-])"), "an Azure client secret"),
    # STS session tokens are long base64 with one of these well-known prefixes.
    (re.compile(r"(?:IQoJb3JpZ2lu|FwoGZXIvYXdz|FQoGZXIvYXdz)[A-Za-z0-9/+=]{40,}"), "an AWS session token"),
    # An AWS secret access key: 40 base64 characters with mixed case, a digit and / or +.
    (
        re.compile(
            r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+=]*[/+])(?=[A-Za-z0-9/+=]*[a-z])"
            r"(?=[A-Za-z0-9/+=]*[A-Z])(?=[A-Za-z0-9/+=]*\d)[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])"
        ),
        "an AWS secret access key",
    ),
)


def _normalise(field: str) -> str:
    return re.sub(r"[_\-\s.]", "", field).lower()


def _find(body: Any) -> tuple[str, str] | None:
    """The first static credential in ``body`` (its path and what it is), depth first.

    Iterative, and JSON held in a string is decoded only when its nesting is bounded, so no
    body can exhaust the stack."""
    pending: list[tuple[Any, str]] = [(body, "")]
    while pending:
        value, path = pending.pop()
        if isinstance(value, dict):
            if value.get("type") in ("service_account", "authorized_user"):
                return path or "body", "a GCP service-account key"
            children: list[tuple[Any, str]] = []
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                what = _SECRET_FIELDS.get(_normalise(str(key)))
                if what and item not in (None, "", {}, []):
                    return child, what
                children += [(str(key), child), (item, child)]
            pending.extend(reversed(children))
        elif isinstance(value, list):
            pending.extend(reversed([(item, f"{path}[{index}]") for index, item in enumerate(value)]))
        elif isinstance(value, str):
            for pattern, what in _VALUE_PATTERNS:
                if pattern.search(value):
                    return path or "body", what
            stripped = value.strip()
            if stripped[:1] in "{[" and len(stripped) > 1:
                try:
                    pending.append((untrusted_json.parse(stripped, path or "body"), path))
                except untrusted_json.TooDeep as exc:
                    raise InvalidRequest(f"{exc}; configs hold references (ARNs, names, ids), not documents") from None
                except ValueError:
                    pass  # not JSON: its text was scanned above
    return None


def reject_static_credentials(body: Any) -> None:
    found = _find(body)
    if found:
        path, what = found
        raise StaticCredentialsRejected(
            f"static credentials are not accepted: {what} at {path}. Configs hold references only "
            "(key ARNs and names, role ARNs, federation ids); access comes from roles and federation."
        )
