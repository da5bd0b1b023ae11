"""Hypothesis strategies for hostile input: what an attacker or a confused client can put in
an admin API request (body bytes, base64 flag, headers, path segments, claims) or a
direct-invoke payload. Each strategy mixes well-formed values, near misses and junk, so a
run reaches the handlers' deep paths as well as their first refusals.
"""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st
from local_gateway import Route, http_event

from tenant_kms.provider_config import PROVIDERS

# The tenant the fuzz runs act on: configured, with a retired and an active version and a
# record, so operations get past "not found" to the code that changes things.
TENANT = f"fuzz-{uuid.uuid4().hex[:10]}"
OTHER_TENANT = f"fuzz-other-{uuid.uuid4().hex[:6]}"
ADMIN, OPERATOR = "tenant-kms/admin", "tenant-kms/operator"
MAX_BODY_BYTES = 16 * 1024

lone_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
# Text of every kind: any code point (lone surrogates included), control characters, and
# the punctuation that means something in paths, JSON and regular expressions.
any_text = st.text(
    alphabet=st.one_of(st.characters(codec=None), lone_surrogates, st.sampled_from('/%.+-_{}[]"\\:\x00\n ')),
    max_size=40,
)

# -------------------------------------------------------------------------------- JSON

huge_ints = st.integers(min_value=10**18, max_value=10**60) | st.integers(min_value=-(10**60), max_value=-(10**18))
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=12,
)


def nested(depth: int, kind: str) -> str:
    """JSON text nesting ``depth`` levels of arrays or objects."""
    if kind == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


deep_json_text = st.builds(nested, st.integers(min_value=20, max_value=5000), st.sampled_from(["[", "{"]))
long_number_text = st.integers(min_value=4000, max_value=6000).map(lambda n: "9" * n)

# Values a config field might hold: well-formed references, credentials (refused with
# their own code), JSON documents in a string, deep JSON, junk.
config_values = st.one_of(
    st.sampled_from(
        [
            "us-east-1",
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:iam::111122223333:role/tenant-kms",
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "-----BEGIN PRIVATE KEY-----",
            '{"type": "service_account"}',
            '{"client_secret": "s"}',
        ]
    ),
    deep_json_text,
    json_values,
)
config_objects = st.dictionaries(
    st.sampled_from(
        ["region", "key_arn", "role_arn", "external_id", "key_name", "key_id", "tenant_id", "client_id", "note"]
    )
    | any_text,
    config_values,
    max_size=4,
)
configure_bodies = st.fixed_dictionaries(
    {"provider": st.sampled_from(PROVIDERS) | json_scalars},
    optional={"config": config_objects | json_values, "force": json_values},
)


def _json_bytes(value: Any) -> bytes:
    # Python's encoder escapes lone surrogates (\ud800) and writes NaN/Infinity: both are
    # what a hostile client can send.
    return json.dumps(value).encode()


well_formed_configure = st.one_of(
    st.just({"provider": "global", "config": {}}),
    st.just({"provider": "global"}),
    st.fixed_dictionaries(
        {"provider": st.sampled_from(["global", "operator_kms_aws", "customer_kms_aws"]), "config": config_objects}
    ),
)

body_bytes = st.one_of(
    st.just(b""),
    well_formed_configure.map(_json_bytes),
    st.binary(max_size=64),  # non-UTF-8 included
    st.sampled_from([b"{}", b"[]", b"13", b"null", b'"x"', b"\xff\xfe{}", b'{"provider": "global", "config": {']),
    configure_bodies.map(_json_bytes),
    json_values.map(_json_bytes),
    deep_json_text.map(str.encode),
    st.builds(
        lambda text: b'{"provider": "global", "config": {"note": ' + text + b"}}", long_number_text.map(str.encode)
    ),
    any_text.map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.integers(min_value=MAX_BODY_BYTES - 8, max_value=MAX_BODY_BYTES + 64).map(lambda n: b"x" * n),
)


@st.composite
def encoded_bodies(draw: st.DrawFn) -> tuple[str | None, bool]:
    """``(body, isBase64Encoded)`` as an event carries them, including a flag that lies."""
    raw = draw(st.none() | body_bytes)
    if raw is None:
        return None, draw(st.booleans())
    how = draw(st.sampled_from(["base64", "text", "bad base64"]))
    if how == "bad base64":
        return draw(any_text), True
    if how == "base64":
        return base64.b64encode(raw).decode(), True
    return raw.decode("utf-8", "surrogatepass") if _is_utf8(raw) else raw.decode("latin-1"), False


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return False
    return True


content_types = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "application/jsonp",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "multipart/form-data",
            "",
        ]
    ),
    any_text,
)


# ------------------------------------------------------------------- Idempotency-Key

# A few keys drawn again and again, so examples repeat a key: on the same tenant, on
# another, after a refusal, from another caller.
REPEATED_IDEMPOTENCY_KEYS = ["retry-1", "7f1c9a5e-2b7d-4c1e-9d1a-3f1e2d4c5b6a", "a", "k" * 128, "v1:job.42_b"]
valid_idempotency_keys = st.sampled_from(REPEATED_IDEMPOTENCY_KEYS) | st.from_regex(
    r"[A-Za-z0-9._:-]{1,128}", fullmatch=True
)
# How a client may write one key: bare, as a structured-field string, padded.
IDEMPOTENCY_KEY_SPELLINGS = ["{}", '"{}"', " {} ", '\t"{}" ']
spelled_idempotency_keys = st.builds(str.format, st.sampled_from(IDEMPOTENCY_KEY_SPELLINGS), valid_idempotency_keys)
idempotency_key_values = st.one_of(
    spelled_idempotency_keys,
    st.sampled_from(
        [
            "",
            '"',
            '""',
            "k" * 129,
            "two words",
            "k\u00e9y",
            "\uff4b\uff45\uff59",  # fullwidth letters
            "\u0661\u0662",  # Arabic-Indic digits
            "retry-1, retry-1",  # how API Gateway joins a repeated header
            '"retry-1',
            "retry-1\n",
            "retry-1\x00",
            "'retry-1'",
            "retry-1/../x",
        ]
    ),
    st.integers(min_value=129, max_value=MAX_BODY_BYTES).map(lambda n: "k" * n),
    any_text,
)
idempotency_key_names = st.sampled_from(["idempotency-key", "Idempotency-Key", "IDEMPOTENCY-KEY"])


@st.composite
def headers(draw: st.DrawFn) -> dict[str, str]:
    found = draw(st.dictionaries(st.from_regex(r"[a-z][a-z-]{0,12}", fullmatch=True), any_text, max_size=3))
    content_type = draw(content_types)
    if content_type is not None:
        found[draw(st.sampled_from(["content-type", "Content-Type", "CONTENT-TYPE"]))] = content_type
    if draw(st.booleans()):
        found[draw(idempotency_key_names)] = draw(idempotency_key_values)
    return found


# ----------------------------------------------------------------------- path segments

tenant_segments = st.one_of(
    st.sampled_from([TENANT, OTHER_TENANT]),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True),
    st.sampled_from([".hidden", "x" * 65, "a/b", "a%2Fb", "", " ", "acme ", "%61cme"]),
    any_text,
)
version_segments = st.one_of(
    st.sampled_from(["1", "2", "3"]),
    st.integers(min_value=-3, max_value=5).map(str),
    st.integers(min_value=0, max_value=10**45).map(str),
    st.sampled_from(["01", "1.0", "1_0", "+1", "-1", " 1", "1 ", "1e3", "\u0663", "0x1", "1" * 42, "1000000001"]),
    st.from_regex(r"[+\-]?[0-9_. ]{0,45}", fullmatch=True),
    any_text,
)

# ------------------------------------------------------------------------------ claims

scopes = st.one_of(
    st.sampled_from([ADMIN, OPERATOR, f"openid {ADMIN}", f"[{ADMIN}]", f"{ADMIN},{OPERATOR}", "openid", ""]),
    st.lists(st.sampled_from([ADMIN, OPERATOR, "openid"]) | any_text, max_size=3),
    json_scalars,
    st.dictionaries(any_text, json_scalars, max_size=2),
)


@dataclass(frozen=True)
class FromNow:
    """A login time relative to when the request is sent (strategies must not read the clock)."""

    seconds: int
    form: type = int

    def value(self) -> Any:
        return self.form(int(time.time()) + self.seconds)


auth_times = st.one_of(
    st.builds(FromNow, st.just(0), st.sampled_from([int, str, float])),
    st.builds(FromNow, st.integers(min_value=-(10**6), max_value=10**6)),
    st.sampled_from([FromNow(3600), FromNow(-3600), 0, -1, True, None, "now", "", [0], {"t": 0}]),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, str(10**40), " 12 "]),
    huge_ints,
    json_scalars,
)


def sent_now(claims: Any) -> Any:
    """``claims`` with each relative login time made absolute."""
    if isinstance(claims, FromNow):
        return claims.value()
    if isinstance(claims, dict):
        return {key: sent_now(value) for key, value in claims.items()}
    return claims


@st.composite
def claim_sets(draw: st.DrawFn) -> Any:
    """Claims as an authorizer might pass them, and shapes no authorizer should."""
    shape = draw(st.sampled_from(["claims", "claims", "claims", "not a dict", "absent"]))
    if shape == "absent":
        return None
    if shape == "not a dict":
        return draw(st.one_of(st.lists(json_scalars, max_size=3), json_scalars))
    claims = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "sub": any_text | json_scalars,
                "tenant_id": st.sampled_from([TENANT, OTHER_TENANT]) | json_scalars,
                "scope": scopes,
                "auth_time": auth_times,
                "client_id": any_text,
            },
        )
    )
    return claims


def placed(claims: Any, authorizer: str) -> dict[str, Any]:
    """``requestContext.authorizer`` as API Gateway fills it for ``authorizer`` (ADMIN_AUTHORIZER):
    a JWT authorizer's claims, or a Lambda authorizer's context (LocalClaimsAuthorizer's claims)."""
    return {"jwt": {"claims": claims, "scopes": None}} if authorizer == "jwt" else {"lambda": claims}


@st.composite
def authorizers(draw: st.DrawFn, authorizer: str = "jwt") -> Any:
    """``requestContext.authorizer``: claims where ``authorizer`` puts them, where the other
    authorizer would, or odd shapes."""
    claims = draw(claim_sets())
    other = "lambda" if authorizer == "jwt" else "jwt"
    return draw(
        st.sampled_from(
            [
                placed(claims, authorizer),
                placed(claims, authorizer),
                placed(claims, authorizer),
                placed(claims, other),
                {"jwt": claims},
                {"lambda": {"claims": claims}},
                claims,
            ]
        )
    )


def admin_claims(scope: str = OPERATOR) -> dict[str, Any]:
    """A caller allowed to act on TENANT, who logged in just now."""
    return {"sub": "fuzz", "tenant_id": TENANT, "scope": scope, "auth_time": int(time.time())}


# ---------------------------------------------------------------------------- requests


@st.composite
def admin_requests(
    draw: st.DrawFn, route: Route, *, authorised: bool = False, authorizer: str = "jwt"
) -> dict[str, Any]:
    """An event API Gateway could deliver on ``route`` to functions reading ``authorizer``'s
    claims: hostile parts, or (``authorised``) hostile bodies, headers and paths from a caller
    who may act on the tenant."""
    # Mostly the fuzz tenant, so requests get past the tenant pattern to the operation.
    tenant = TENANT if draw(st.integers(min_value=0, max_value=3)) else draw(tenant_segments)
    # A job id is a path segment like a version: hostile text or a well-formed id.
    segments = {"tenant_id": tenant, "version": draw(version_segments), "job_id": draw(version_segments)}
    path = route.path
    for name in route.names:
        path = path.replace("{" + name + "}", quote(segments[name].encode("utf-8", "surrogatepass"), safe=""))
    event = http_event(
        route.method,
        path,
        route=route,
        path_parameters={name: segments[name] for name in route.names},
        headers=draw(headers()),
    )
    if authorised:
        event["requestContext"]["authorizer"] = placed(admin_claims(), authorizer)
    else:
        event["requestContext"]["authorizer"] = sent_now(draw(authorizers(authorizer)))
    if draw(st.booleans()):  # as a well-behaved client sends it
        event["headers"]["content-type"] = "application/json"
    body, encoded = draw(encoded_bodies())
    if body is not None:
        event["body"] = body
    event["isBase64Encoded"] = encoded
    return event


# ---------------------------------------------------------------------- direct invoke

tenant_ids = st.sampled_from([TENANT, OTHER_TENANT]) | tenant_segments | json_scalars
versions = st.one_of(
    st.integers(min_value=-2, max_value=4),
    st.sampled_from([1.0, 2.0, True, "1", "01", 10**42, 1e300, math.nan]),
    json_values,
)
extra_fields = st.dictionaries(any_text, json_values, max_size=2)

unwrap_payloads = st.one_of(
    st.fixed_dictionaries({"tenant_id": st.just(TENANT)}, optional={"version": st.integers(min_value=0, max_value=4)}),
    st.builds(
        lambda base, extra: {**extra, **base},
        st.fixed_dictionaries({"tenant_id": tenant_ids}, optional={"version": versions}),
        extra_fields,
    ),
    st.fixed_dictionaries({"tenant_id": tenant_ids}, optional={"version": versions}),
    json_values,
)

record_names = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
    st.sampled_from(["db-admin-password", "ca-key", "x" * 255, "x" * 256, "", "a\nb", "a\x7fb"]),
    st.builds(lambda a, s, b: a + s + b, any_text, lone_surrogates, any_text),
    any_text,
    json_scalars,
)
values_b64 = st.one_of(
    st.binary(max_size=64).map(lambda raw: base64.b64encode(raw).decode()),
    st.sampled_from(["abc", "AA=", "====", "AA==\n", "-_-_", ""]),
    any_text,
    json_scalars,
)
tenant_data_payloads = st.one_of(
    st.builds(
        lambda name, value: {"op": "put", "tenant_id": TENANT, "name": name, "value_b64": value},
        st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True) | record_names,
        st.binary(max_size=64).map(lambda raw: base64.b64encode(raw).decode()),
    ),
    st.builds(
        lambda op, name: {"op": op, "tenant_id": TENANT, "name": name},
        st.sampled_from(["get", "delete"]),
        record_names,
    ),
    st.builds(
        lambda op, name, value: {
            "op": op,
            "tenant_id": TENANT,
            "name": name,
            **({"value_b64": value} if value else {}),
        },
        st.sampled_from(["put", "get", "delete"]),
        record_names,
        st.none() | values_b64,
    ),
    st.fixed_dictionaries(
        {"op": st.sampled_from(["put", "get", "delete"]) | json_scalars, "tenant_id": tenant_ids, "name": record_names},
        optional={"value_b64": values_b64},
    ),
    st.builds(
        lambda base, extra: {**extra, **base},
        st.fixed_dictionaries({"op": st.sampled_from(["put", "get", "delete"]), "tenant_id": tenant_ids}),
        extra_fields,
    ),
    json_values,
)
