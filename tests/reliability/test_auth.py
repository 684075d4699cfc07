"""Bad credentials over HTTP: every one is refused by the authorizer (401/403) on every route, and nothing is written.

The stack trusts the dev key's JWKS (``.local/auth``); the bad tokens are minted here,
with that key where the point is a claim, and with other keys or algorithms otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.reliability.conftest import FIGURES, Stack, job_body, nanny_token, parent_token, run_parallel, unique
from tools.local.devkeys import LocalIssuer, ensure_keys

pytestmark = pytest.mark.e2e

ISSUER = LocalIssuer.from_config()
KEY, KID = ensure_keys(ISSUER)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC_PEM = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "5f1e0c1e-0000-4000-8000-000000000000",
        "cognito:username": "mallory",
        "cognito:groups": ["parents"],
        "iss": ISSUER.issuer,
        "aud": ISSUER.audience,
        "token_use": "id",
        "auth_time": now,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not ...}


def _signed(key: Any = KEY, algorithm: str = "RS256", headers: dict[str, Any] | None = None, **changes: Any) -> str:
    return jwt.encode(_claims(**changes), key, algorithm=algorithm, headers={"kid": KID, **(headers or {})})


def _unsigned(alg: str = "none") -> str:
    header = _b64(json.dumps({"alg": alg, "kid": KID, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(_claims()).encode())}."


def _hs256_with_public_key() -> str:
    """The key-confusion attack: HMAC with the RSA public key the verifier has."""
    signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'kid': KID, 'typ': 'JWT'}).encode())}.{_b64(json.dumps(_claims()).encode())}"  # noqa: E501
    return f"{signing_input}.{_b64(hmac.new(PUBLIC_PEM, signing_input.encode(), hashlib.sha256).digest())}"


def _spliced() -> str:
    """A nanny's valid signature under a parent's claims."""
    header, _, _ = _signed().split(".")
    _, payload, _ = jwt.encode(_claims(**{"cognito:groups": ["admins"]}), KEY, algorithm="RS256").split(".")
    _, _, signature = _signed(**{"cognito:groups": ["nannies"]}).split(".")
    return f"{header}.{payload}.{signature}"


def _tampered() -> str:
    header, payload, signature = _signed(**{"cognito:groups": ["nannies"]}).split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged["cognito:groups"] = ["parents"]
    return f"{header}.{_b64(json.dumps(forged).encode())}.{signature}"


def _embedded_jwk() -> str:
    """The attacker's own public key in the header (``jwk``), signed with it."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(OTHER_KEY.public_key()))
    return _signed(OTHER_KEY, headers={"jwk": jwk, "kid": KID})


NOW = int(time.time())
# name -> the Authorization header value (None: no header at all)
CASES: dict[str, Callable[[], str | None]] = {
    "no Authorization header": lambda: None,
    "empty header": lambda: "",
    "Bearer and nothing": lambda: "Bearer ",
    "Basic credentials": lambda: "Basic " + base64.b64encode(b"alice:secret").decode(),
    "garbage": lambda: "Bearer not-a-token",
    "three dots of garbage": lambda: "Bearer a.b.c",
    "JWE-shaped, five parts": lambda: "Bearer " + ".".join(["eyJhbGciOiJSU0EtT0FFUCJ9"] * 5),
    "expired an hour ago": lambda: "Bearer " + _signed(exp=NOW - 3600, iat=NOW - 7200),
    "expired beyond the leeway": lambda: "Bearer " + _signed(exp=int(time.time()) - 90, iat=NOW - 3600),
    "not yet valid (nbf)": lambda: "Bearer " + _signed(nbf=int(time.time()) + 3600),
    "issued in the future (iat)": lambda: "Bearer " + _signed(iat=int(time.time()) + 3600),
    "wrong issuer": lambda: "Bearer " + _signed(iss="https://cognito-idp.us-east-1.amazonaws.com/us-east-1_evil"),
    "issuer with a trailing slash": lambda: "Bearer " + _signed(iss=ISSUER.issuer + "/"),
    "wrong audience": lambda: "Bearer " + _signed(aud="another-app-client"),
    "audience list without ours": lambda: "Bearer " + _signed(aud=["a", "b"]),
    "access token": lambda: (
        "Bearer "
        + _signed(
            token_use="access",
            aud=...,
            client_id=ISSUER.audience,
            username="mallory",
            scope="aws.cognito.signin.user.admin",
            **{"cognito:username": ...},
        )
    ),
    "token_use access, ID-shaped": lambda: "Bearer " + _signed(token_use="access"),
    "no token_use": lambda: "Bearer " + _signed(token_use=...),
    "no exp": lambda: "Bearer " + _signed(exp=...),
    "no iat": lambda: "Bearer " + _signed(iat=...),
    # A numeric string is read as a number (PyJWT's int()): an expired one must still be refused.
    "exp as a string, expired": lambda: "Bearer " + _signed(exp=str(NOW - 3600), iat=NOW - 7200),
    "exp not a number": lambda: "Bearer " + _signed(exp="tomorrow"),
    "signed by another key": lambda: "Bearer " + _signed(OTHER_KEY),
    "unknown kid": lambda: "Bearer " + _signed(headers={"kid": "not-our-key"}),
    "no kid": lambda: "Bearer " + jwt.encode(_claims(), KEY, algorithm="RS256"),
    "kid path traversal": lambda: "Bearer " + _signed(headers={"kid": "../../../../etc/passwd"}),
    "alg none": lambda: "Bearer " + _unsigned("none"),
    "alg None": lambda: "Bearer " + _unsigned("None"),
    "HS256 signed with the public key": lambda: "Bearer " + _hs256_with_public_key(),
    "RS512 with the right key": lambda: "Bearer " + _signed(algorithm="RS512"),
    "PS256 with the right key": lambda: "Bearer " + _signed(algorithm="PS256"),
    "ES256 with another key": lambda: "Bearer " + _signed(EC_KEY, algorithm="ES256"),
    "embedded jwk header": lambda: "Bearer " + _embedded_jwk(),
    "tampered payload": lambda: "Bearer " + _tampered(),
    "spliced signature": lambda: "Bearer " + _spliced(),
    "signature cut short": lambda: "Bearer " + _signed()[:-10],
    "two tokens": lambda: f"Bearer {_signed(OTHER_KEY)} {_signed(OTHER_KEY)}",
    "missing groups": lambda: "Bearer " + _signed(**{"cognito:groups": ...}),
    "empty groups": lambda: "Bearer " + _signed(**{"cognito:groups": []}),
    "groups as a string": lambda: "Bearer " + _signed(**{"cognito:groups": "parents"}),
    "unknown group": lambda: "Bearer " + _signed(**{"cognito:groups": ["admins"]}),
    "group in the wrong case": lambda: "Bearer " + _signed(**{"cognito:groups": ["Parents", "NANNIES"]}),
    "nested group list": lambda: "Bearer " + _signed(**{"cognito:groups": [["parents"]]}),
    "no username": lambda: "Bearer " + _signed(**{"cognito:username": ...}),
    "no sub": lambda: "Bearer " + _signed(sub=...),
    "sub bending a key": lambda: "Bearer " + _signed(sub="alice#JOB#01HZZ"),
    "username bending a key": lambda: "Bearer " + _signed(**{"cognito:username": "alice#JOB#01HZZ"}),
    "username with a slash": lambda: "Bearer " + _signed(**{"cognito:username": "alice/bob"}),
    "username of 129 characters": lambda: "Bearer " + _signed(**{"cognito:username": "a" * 129}),
    "username not ASCII": lambda: "Bearer " + _signed(**{"cognito:username": "ålice"}),
    "username with a space": lambda: "Bearer " + _signed(**{"cognito:username": "alice smith"}),
    "username as a number": lambda: "Bearer " + _signed(**{"cognito:username": 12345}),
    "12 KB token from another key": lambda: "Bearer " + _signed(OTHER_KEY, padding="x" * 12_000),
}
assert len(CASES) >= 40


@pytest.fixture(scope="module")
def targets(stack: Stack) -> list[tuple[str, str, Any]]:
    """A request on every route, each of which a valid token would get through."""
    owner = parent_token()
    job_id = stack.create_job(owner)["jobId"]
    app_id = stack.apply(nanny_token(), job_id)["applicationId"]
    return [
        ("POST", "/jobs", job_body()),
        ("GET", "/jobs", None),
        ("GET", f"/jobs/{job_id}", None),
        ("POST", f"/jobs/{job_id}/applications", {}),
        ("GET", f"/jobs/{job_id}/applications", None),
        ("POST", f"/jobs/{job_id}/book", {"applicationId": app_id}),
        ("POST", f"/jobs/{job_id}/cancel", {"reason": "r"}),
        ("GET", f"/jobs/{job_id}/applications/{app_id}", None),
        ("POST", f"/jobs/{job_id}/applications/{app_id}/withdraw", {}),
        ("GET", "/me/jobs", None),
        ("GET", "/me/applications", None),
    ]


def _send(stack: Stack, method: str, path: str, authorization: str | None, body: Any) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    resp = stack.call(method, path, headers=headers, data=json.dumps(body) if body is not None else None)
    try:
        return resp.status_code, resp.json()
    except ValueError:
        return resp.status_code, resp.text


def test_a_valid_token_gets_through_on_every_route(stack: Stack, targets: list[tuple[str, str, Any]]) -> None:
    """The control: the same requests with good tokens are admitted (so a 403 below means the token)."""
    parent, nanny = parent_token(unique("control")), nanny_token()
    for method, path, body in targets:
        token = nanny if (path.endswith(("/applications", "/withdraw")) and method == "POST") else parent
        status, reply = _send(stack, method, path, f"Bearer {token}", body)
        assert status < 500 and not (status in (401, 403) and "code" not in reply), (method, path, status, reply)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_credentials_are_refused_everywhere_and_write_nothing(
    stack: Stack, targets: list[tuple[str, str, Any]], name: str
) -> None:
    authorization = CASES[name]()
    expected = 401 if authorization is None else 403
    before = stack.snapshot()
    wrong = []
    replies = run_parallel(
        lambda m, p, b: _send(stack, m, p, authorization, b), list(targets), barrier=False, stack=stack
    )
    for (method, path, _), reply_or_error in zip(targets, replies, strict=True):
        if isinstance(reply_or_error, BaseException):
            raise reply_or_error
        status, reply = reply_or_error
        FIGURES.add("auth", "requests with bad credentials")
        gateway = isinstance(reply, dict) and "code" not in reply and bool(reply.get("message") or reply.get("Message"))
        if status not in (401, 403) or not gateway:
            FIGURES.add("auth", "wrongly admitted")
            wrong.append(f"{method} {path}: {status} {reply}")
        elif status != expected:
            wrong.append(f"{method} {path}: {status}, wanted {expected}")
    FIGURES.add("auth", "bad-credential cases")
    FIGURES.add("auth", "wrongly admitted", 0)
    after = stack.snapshot()
    assert not wrong, "\n".join(wrong)
    assert after == before, "a refused request wrote something"
