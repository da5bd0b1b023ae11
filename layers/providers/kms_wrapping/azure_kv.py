"""Azure Key Vault adapters: ``operator_kms_azure`` and ``customer_kms_azure``.

Every wrap and unwrap is the vault's own ``wrapkey``/``unwrapkey`` operation, sent through
the SDK's ``KeyClient.send_request`` (its pipeline: the Key Vault bearer challenge, retries,
timeouts). ``CryptographyClient`` is not used: with *Key Vault Crypto User* (which includes
``keys/read``) it fetches the key and wraps locally with the public key, so the vault never
sees the wrap, and for an oct-HSM key it would wrap under a random local key.

The algorithm follows the key's type, as the vault reports it (``kty`` of a key GET):
RSA / RSA-HSM keys wrap with RSA-OAEP-256, oct / oct-HSM keys (Managed HSM) with A256KW.
Neither takes AAD, so the binding is local: what the vault wraps is
``SHA-256(binding) || TMK``, and an unwrap whose digest is not this tenant's and version's
is refused. The key version that wrapped (the answer's ``kid``) is what a TMK version records.

RSA wraps are signed by the vault. RSA-OAEP needs only the public key, so anyone who can
write the key-version table could plant a TMK of their choosing that passes the binding
check. After ``wrapkey`` the vault signs (RS256, its ``sign`` operation, allowed to Crypto
User) SHA-256 of a versioned, domain-separated string naming the key version, the binding
and the wrapped bytes; the signature is stored with the wrapped key. An unwrap first
verifies it locally against that key version's public key, read from the vault (a key
version's public key never changes, so it is cached per key version). A wrapped key the
vault did not sign is refused before the vault is asked to unwrap it. A256KW needs no
signature: AES key wrap is keyed integrity (RFC 3394), so a wrapped key made without the
vault's secret key fails the vault's own unwrap.

Credentials: ``ClientAssertionCredential`` whose client assertion comes from the
``token_source`` callable (an OIDC token naming the tenant) — an Entra ID federated
credential. Never a client secret or certificate, never ``DefaultAzureCredential`` (it
probes endpoints that do not exist in Lambda). The authority is azure-identity's default
(``AZURE_AUTHORITY_HOST`` when set, else the public cloud); the credential sends the token
request itself, with no instance discovery.

Errors: only the customer's decisions are refusals (the vault's 403/404/400 answers, and
Entra's answers in ``ENTRA_REFUSALS``). Throttling, 5xx, timeouts, a failing token source,
and Entra answers that blame our assertion are ``ProviderUnavailable``: never sealed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from azure.core import exceptions as aexc
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.pipeline.policies import RetryPolicy
from azure.core.rest import HttpRequest
from azure.keyvault.keys import KeyClient
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from kms_wrapping import deadline
from kms_wrapping.base import (
    TMK_BYTES,
    KeyAccessRefused,
    KeyWrapper,
    ProviderConfigInvalid,
    ProviderUnavailable,
    WrapContext,
    WrappedKey,
)

ENTRA_AUDIENCE = "api://AzureADTokenExchange"
KEY_ID = re.compile(r"^(?P<vault>https://[^/]+)/keys/(?P<name>[^/]+)(?:/(?P<version>[0-9a-fA-F]{32}))?$")

# The first byte of a stored wrapped key says how it was made.
RSA_UNSIGNED = b"\x01"  # never accepted: anyone with the public key can make one
A256KW = b"\x02"
RSA_SIGNED = b"\x03"  # RSA_SIGNED || len(wrapped) as u16 || wrapped || RS256 signature
ALGORITHM_BY_KTY = {"RSA": "RSA-OAEP-256", "RSA-HSM": "RSA-OAEP-256", "oct": "A256KW", "oct-HSM": "A256KW"}
_SIGNATURE_DOMAIN = b"tenant-kms/azure-wrap-signature/v1\x00"
_RETRIED = frozenset({"GET", "POST"})

# Entra ID token answers that carry the customer's decision (its tenant, application or
# federated credential says no): these seal. Every other failed token answer (429/5xx, our
# assertion's clock or signature, a malformed request, a code not listed) is ours or
# transient and never seals. Codes: learn.microsoft.com/entra/identity-platform/reference-error-codes
ENTRA_REFUSALS = {
    70021: "no federated credential matches the assertion",
    700211: "no federated credential matches the assertion's issuer",
    700212: "no federated credential matches the assertion's audience",
    700213: "no federated credential matches the assertion's subject",
    700016: "the application is not in the tenant",
    7000112: "the application is disabled",
    7000215: "the application refused the credential presented",
    90002: "the Entra tenant does not exist",
    500011: "the Key Vault resource is not known to the tenant",
    53003: "a Conditional Access policy blocked the application",
}
# These blame our assertion (clock, signing key) or request: ours to fix, never sealing.
ENTRA_OUR_FAULTS = {
    700024: "the assertion is outside its validity window (our clock or lifetime)",
    700027: "the assertion's signature did not verify against our issuer's keys",
    50027: "the assertion is malformed",
    90014: "the token request is missing a field",
}
_AADSTS = re.compile(r"AADSTS(\d+)")


class TokenUnavailable(Exception):
    """No token, through no decision of the customer: our assertion could not be made
    (the token source failed) or Entra ID did not answer."""


def binding_digest(context: WrapContext) -> bytes:
    return hashlib.sha256(b"tenant-kms/azure-binding/v1" + context.aad()).digest()


def signed_digest(kid: str, context: WrapContext, wrapped: bytes) -> bytes:
    """What the vault signs for an RSA wrap: key version, binding and wrapped bytes, each length-prefixed."""
    parts = [kid.encode(), context.aad(), wrapped]
    return hashlib.sha256(_SIGNATURE_DOMAIN + b"".join(struct.pack(">I", len(p)) + p for p in parts)).digest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _value(action: str, answer: dict[str, Any]) -> bytes:
    """The base64url ``value`` of a vault answer."""
    try:
        return _unb64url(str(answer["value"]))
    except (KeyError, ValueError):
        raise ProviderUnavailable(f"{action}: Key Vault's answer has no usable value") from None


def _json(text: str) -> dict[str, Any]:
    try:
        parsed = json.loads(text)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def entra_failure(action: str, exc: aexc.ClientAuthenticationError) -> Exception:
    """A failed token exchange as a refusal (the customer's tenant said no) or a fault."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if "not configured to acquire tokens for tenant" in str(exc.message):
        return KeyAccessRefused(f"{action} refused: the key's vault belongs to another Entra tenant")
    if response is None or status is None:
        return ProviderUnavailable(f"{action}: Entra ID gave no usable answer")
    if status == 429 or status >= 500:
        return ProviderUnavailable(f"{action}: Entra ID answered HTTP {status} after retries")
    try:
        body = _json(response.text())
    except Exception:  # an undecodable body says nothing more than its status
        body = {}
    codes = [int(c) for c in body.get("error_codes") or [] if str(c).isdigit()]
    codes += [int(c) for c in _AADSTS.findall(str(body.get("error_description") or exc.message))]
    for code in codes:
        if code in ENTRA_REFUSALS:
            return KeyAccessRefused(f"{action} refused by Entra ID: AADSTS{code} {ENTRA_REFUSALS[code]}")
    named = ", ".join(f"AADSTS{c}" + (f" {ENTRA_OUR_FAULTS[c]}" if c in ENTRA_OUR_FAULTS else "") for c in codes)
    return ProviderUnavailable(f"{action}: Entra ID refused our token request (HTTP {status}, {named or 'no code'})")


class AzureKeyVaultWrapper(KeyWrapper):
    def __init__(
        self, *, provider: str, key_id: str, credential: EntraCredential, client_options: dict[str, Any]
    ) -> None:
        match = KEY_ID.match(key_id)
        if not match:
            raise ProviderConfigInvalid("key_id must be https://<vault>/keys/<name>[/<version>]")
        self.provider = provider
        self._key_id = key_id
        self._vault = match["vault"]
        self._name = match["name"]
        self._version = match["version"] or ""
        self._key_name_prefix = f"{self._vault}/keys/{self._name}/"
        self._credential = credential
        self._client = KeyClient(self._vault, credential, **client_options)
        self._versions: dict[str, tuple[str, rsa.RSAPublicKey | None]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AzureKeyVaultWrapper(provider={self.provider!r}, key_id={self._key_id!r})"

    def _request(self, action: str, method: str, path: str, body: dict | None) -> Any:
        try:
            # wrapkey, unwrapkey and sign change nothing in the vault: retried like GET.
            return self._client.send_request(HttpRequest(method, path, json=body), retry_on_methods=_RETRIED)
        except TokenUnavailable as exc:
            raise ProviderUnavailable(f"{action}: no Entra ID token ({exc})") from None
        except aexc.ClientAuthenticationError as exc:
            raise entra_failure(action, exc) from None
        except (aexc.ServiceRequestError, aexc.ServiceResponseError) as exc:
            raise ProviderUnavailable(f"{action}: no answer ({type(exc).__name__})") from None
        except aexc.HttpResponseError as exc:
            raise ProviderUnavailable(f"{action}: unusable answer (HTTP {exc.status_code})") from None

    def _send(self, action: str, method: str, path: str, body: dict | None = None) -> dict[str, Any]:
        """One Key Vault operation; its JSON answer, or the failure normalised."""
        response = self._request(action, method, path, body)
        if response.status_code == 401:
            # The vault no longer takes the token we hold (expired early, revoked): exchange a
            # new one once. A removed federation then refuses at Entra ID, where it seals.
            self._credential.forget()
            response = self._request(action, method, path, body)
        status = response.status_code
        answer = _json(response.text())
        if status == 200 and answer:
            return answer
        if status == 200:
            raise ProviderUnavailable(f"{action}: Key Vault answered without a JSON body")
        if status == 429 or status >= 500:
            raise ProviderUnavailable(f"{action}: Key Vault answered HTTP {status} after retries")
        if status == 401:  # a token Entra issued and the vault does not take: ours to fix
            raise ProviderUnavailable(f"{action}: Key Vault did not accept our token (HTTP 401)")
        error = answer.get("error") if isinstance(answer.get("error"), dict) else {}
        inner = error.get("innererror") if isinstance(error.get("innererror"), dict) else {}
        code = inner.get("code") or error.get("code") or "error"
        raise KeyAccessRefused(f"{action} refused: {code} (HTTP {status})")

    def _read_key(self, path: str) -> tuple[str, str, rsa.RSAPublicKey | None]:
        """(versioned kid, algorithm, RSA public key or None) of a key, as the vault answers a GET."""
        answer = self._send("GetKey", "GET", path)
        jwk = answer.get("key") if isinstance(answer.get("key"), dict) else {}
        kid = str(jwk.get("kid", ""))
        if not self._names_a_version(kid):
            raise KeyAccessRefused(
                f"Key Vault answered with {kid or 'an unnamed key'}, not a version of {self._key_id}"
            )
        algorithm = ALGORITHM_BY_KTY.get(str(jwk.get("kty")))
        if algorithm is None:
            raise KeyAccessRefused(f"key type {jwk.get('kty')!r} of {kid} cannot wrap keys")
        public = None
        if algorithm == "RSA-OAEP-256":
            try:
                e, n = (int.from_bytes(_unb64url(jwk[part]), "big") for part in ("e", "n"))
                public = rsa.RSAPublicNumbers(e, n).public_key()
            except (KeyError, TypeError, ValueError):
                raise ProviderUnavailable(f"GetKey: Key Vault sent no usable public key for {kid}") from None
        with self._lock:  # a key version's type and public key never change
            self._versions[kid] = (algorithm, public)
        return kid, algorithm, public

    def _version_key(self, kid: str) -> tuple[str, rsa.RSAPublicKey | None]:
        with self._lock:
            known = self._versions.get(kid)
        if known:
            return known
        resolved, algorithm, public = self._read_key(kid.removeprefix(self._vault))
        if resolved != kid:
            raise KeyAccessRefused(f"Key Vault answered with {resolved}, not {kid}")
        return algorithm, public

    def _names_a_version(self, kid: str) -> bool:
        return kid.startswith(self._key_name_prefix) and bool(KEY_ID.match(kid)) and kid.count("/") == 5

    def _operation(self, kid: str, operation: str) -> str:
        return f"{kid.removeprefix(self._vault)}/{operation}"

    def current_key_id(self, tenant_id: str) -> str:
        # A versioned key id pins its version; an unversioned one names the key's latest version.
        return self._key_id if self._version else self._read_key(f"/keys/{self._name}")[0]

    def _wrap(self, plaintext: bytes, context: WrapContext) -> WrappedKey:
        if self._version:
            kid = self._key_id
            algorithm, _ = self._version_key(kid)
        else:  # the unversioned key names its current version: read it on every wrap
            kid, algorithm, _ = self._read_key(f"/keys/{self._name}")
        answer = self._send(
            "WrapKey",
            "POST",
            self._operation(kid, "wrapkey"),
            {"alg": algorithm, "value": _b64url(binding_digest(context) + plaintext)},
        )
        if answer.get("kid") != kid:
            raise KeyAccessRefused(f"Key Vault wrapped with {answer.get('kid') or 'an unnamed key'}, not {kid}")
        wrapped = _value("WrapKey", answer)
        if algorithm == "A256KW":
            return WrappedKey(key_id=kid, ciphertext=A256KW + wrapped)
        signature = self._sign(kid, signed_digest(kid, context, wrapped))
        return WrappedKey(key_id=kid, ciphertext=RSA_SIGNED + struct.pack(">H", len(wrapped)) + wrapped + signature)

    def _sign(self, kid: str, digest: bytes) -> bytes:
        answer = self._send("Sign", "POST", self._operation(kid, "sign"), {"alg": "RS256", "value": _b64url(digest)})
        if answer.get("kid") != kid:
            raise KeyAccessRefused(f"Key Vault signed with {answer.get('kid') or 'an unnamed key'}, not {kid}")
        return _value("Sign", answer)

    def _unwrap(self, wrapped: WrappedKey, context: WrapContext) -> bytes:
        kid = wrapped.key_id
        if not self._names_a_version(kid):
            raise KeyAccessRefused(f"wrapped under {kid}, not a version of {self._key_id}")
        kind, body = wrapped.ciphertext[:1], wrapped.ciphertext[1:]
        if kind == RSA_SIGNED:
            algorithm, public = self._version_key(kid)
            (length,) = struct.unpack(">H", body[:2]) if len(body) >= 2 else (0,)
            encrypted, signature = body[2 : 2 + length], body[2 + length :]
            if algorithm != "RSA-OAEP-256" or public is None or not encrypted or not signature:
                raise KeyAccessRefused("wrapped key does not match its key's type")
            try:
                digest = signed_digest(kid, context, encrypted)
                public.verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
            except InvalidSignature:
                raise KeyAccessRefused("wrapped key was not made by the vault for this tenant and version") from None
        elif kind == A256KW:
            algorithm, encrypted = "A256KW", body
        elif kind == RSA_UNSIGNED:
            raise KeyAccessRefused("unsigned RSA wrapped key: not accepted, anyone with the public key can make one")
        else:
            raise KeyAccessRefused("wrapped key is not in a known Key Vault format")
        answer = self._send(
            "UnwrapKey", "POST", self._operation(kid, "unwrapkey"), {"alg": algorithm, "value": _b64url(encrypted)}
        )
        payload = _value("UnwrapKey", answer)
        digest, tmk = payload[:32], payload[32:]
        if len(tmk) != TMK_BYTES or not secrets.compare_digest(digest, binding_digest(context)):
            raise KeyAccessRefused("wrapped key is bound to another tenant or version")
        return tmk


def web_identity_token_source(sts_client: Any, *, audience: str = ENTRA_AUDIENCE) -> Callable[[], str]:
    """The client assertion: an OIDC token for the function's AWS identity, issued by STS."""

    def token() -> str:
        answer = sts_client.get_web_identity_token(Audience=[audience], SigningAlgorithm="RS256", DurationSeconds=300)
        return answer["WebIdentityToken"]

    return token


def _assertion(token_source: Callable[[], str]) -> Callable[[], str]:
    def assertion() -> str:
        try:
            return token_source()
        except Exception as exc:  # our plumbing, whatever it raised: a fault, never the customer's refusal
            raise TokenUnavailable(f"our client assertion could not be made: {type(exc).__name__}") from None

    return assertion


class EntraCredential:
    """The token credential the vault pipeline uses, around azure-identity's.

    With ``max_age`` it exchanges a new client assertion at least that often: Entra ID
    cannot revoke an access token it issued, so a token used for its whole life (about an
    hour) would outlive a removed federated credential. Held no longer than the session
    TTL, a removed credential seals the tenant within the TTL, like a removed role.

    A token exchange that got no answer leaves as ``TokenUnavailable``, not as an
    ``AzureError``: azure-identity has already retried it, and the vault pipeline would
    retry the whole exchange again for each of its own attempts.
    """

    def __init__(self, make: Callable[[], Any], *, max_age: float | None) -> None:
        self._make, self._max_age = make, max_age
        self._inner = make()
        self._held: dict[tuple, tuple[AccessTokenInfo, float]] = {}
        self._lock = threading.Lock()

    def _exchange(self, inner: Any, scopes: tuple[str, ...], options: dict | None) -> AccessTokenInfo:
        try:
            return inner.get_token_info(*scopes, options=options)
        except aexc.ClientAuthenticationError:
            raise
        except aexc.AzureError as exc:
            raise TokenUnavailable(f"Entra ID did not answer ({type(exc).__name__})") from None

    def forget(self) -> None:
        """Drop every token held here and in azure-identity's cache: the next request exchanges anew."""
        fresh = self._make()
        with self._lock:
            self._held.clear()
            self._inner = fresh

    def get_token_info(self, *scopes: str, options: dict | None = None) -> AccessTokenInfo:
        if self._max_age is None:
            return self._exchange(self._inner, scopes, options)
        now = time.time()
        key = (scopes, (options or {}).get("tenant_id"))
        with self._lock:
            held = self._held.get(key)
        if held is None or not 0 <= now - held[1] < self._max_age:
            # A new credential: azure-identity's own cache would hand back the old token.
            held = (self._exchange(self._make(), scopes, options), now)
            with self._lock:
                self._held[key] = held
        # refresh_on in the past: the pipeline asks on every request and the age is decided here.
        return AccessTokenInfo(held[0].token, held[0].expires_on, token_type=held[0].token_type, refresh_on=1)

    def get_token(
        self, *scopes: str, claims: str | None = None, tenant_id: str | None = None, **kwargs: Any
    ) -> AccessToken:
        options = {k: v for k, v in {"claims": claims, "tenant_id": tenant_id}.items() if v}
        if "enable_cae" in kwargs:
            options["enable_cae"] = kwargs["enable_cae"]
        info = self.get_token_info(*scopes, options=options)
        return AccessToken(info.token, info.expires_on)


def federated_credential(
    *,
    tenant_id: str,
    client_id: str,
    token_source: Callable[[], str],
    options: dict[str, Any] | None = None,
    token_max_age: float | None = None,
) -> EntraCredential:
    from azure.identity import ClientAssertionCredential

    def make() -> Any:
        return ClientAssertionCredential(
            tenant_id=tenant_id, client_id=client_id, func=_assertion(token_source), **(options or {})
        )

    return EntraCredential(make, max_age=token_max_age)


_RETRY = RetryPolicy()


def _attempt_budget(request: Any) -> None:
    """Before every attempt (vault and Entra ID alike): none starts past the request's deadline,
    and none connects or reads longer than what is left of it."""
    if deadline.current() is None:
        return
    options = request.context.options
    config = getattr(request.context.transport, "connection_config", None)
    for name, default in (("connection_timeout", "timeout"), ("read_timeout", "read_timeout")):
        configured = options.get(name) or getattr(config, default, None) or 60
        options[name] = deadline.grant(configured, f"Azure {request.http_request.method}")


def _retry_budget(response: Any) -> None:
    """After every answer: a throttled or failed one is not retried when the wait it asks for
    (Retry-After) would leave nothing of the request's budget."""
    answer = response.http_response
    if deadline.current() is None or not (answer.status_code == 429 or answer.status_code >= 500):
        return
    # The wait azure-core's retry reads from the answer (Retry-After in seconds or as a date, then
    # the millisecond headers); without one its backoff is a fraction of a second.
    wait = _RETRY.get_retry_after(response) or 0.0
    if not deadline.left_after(wait):
        raise deadline.DeadlineExceeded(f"Azure answered HTTP {answer.status_code}; no time left for another attempt")


def client_options(*, max_attempts: int, connect_timeout: int, read_timeout: int) -> dict[str, Any]:
    """Pipeline settings for both the vault and Entra ID: ``max_attempts`` counts the first try.
    The hooks run on every attempt and keep each one within the request's deadline."""
    return {
        "retry_total": max(0, max_attempts - 1),
        "retry_backoff_factor": 0.2,
        "connection_timeout": connect_timeout,
        "read_timeout": read_timeout,
        "raw_request_hook": _attempt_budget,
        "raw_response_hook": _retry_budget,
    }


def customer_wrapper(
    tenant_config: dict[str, Any],
    _tenant_id: str,
    *,
    token_source: Callable[[], str],
    options: dict,
    token_max_age: float | None = None,
) -> KeyWrapper:
    credential = federated_credential(
        tenant_id=tenant_config["tenant_id"],
        client_id=tenant_config["client_id"],
        token_source=token_source,
        options=options,
        token_max_age=token_max_age,
    )
    return AzureKeyVaultWrapper(
        provider="customer_kms_azure", key_id=tenant_config["key_id"], credential=credential, client_options=options
    )


def operator_wrapper(
    *, key_id: str, tenant_id: str, client_id: str, token_source: Callable[[], str], options: dict
) -> KeyWrapper:
    credential = federated_credential(
        tenant_id=tenant_id, client_id=client_id, token_source=token_source, options=options
    )
    return AzureKeyVaultWrapper(
        provider="operator_kms_azure", key_id=key_id, credential=credential, client_options=options
    )
