"""Token verification: only a valid RS256 ID token from the configured issuer gets in."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from chalicelib.auth import (
    LEEWAY_SECONDS,
    InvalidToken,
    JwksSource,
    TokenVerifier,
    caller_from_context,
    caller_to_context,
)
from chalicelib.domain import Role
from tests.conftest import AUDIENCE, ISSUER, KID


@pytest.fixture
def verifier(jwks: dict[str, Any]) -> TokenVerifier:
    return TokenVerifier(JwksSource(inline=json.dumps(jwks)), issuer=ISSUER, audience=AUDIENCE)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_valid_id_token_gives_the_caller(verifier: TokenVerifier, make_token) -> None:
    caller = verifier.verify("Bearer " + make_token("alice", ["parents"]))
    assert caller.username == "alice" and caller.roles == frozenset({Role.PARENT})
    both = verifier.verify("bearer " + make_token("bea", ["nannies", "parents", "admins"]))
    assert both.roles == frozenset({Role.PARENT, Role.NANNY})


def _alg_none(make_token) -> str:
    claims = jwt.decode(make_token("alice"), options={"verify_signature": False})
    return f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': KID})}.{_b64(claims)}."


def _hs256_with_public_key(make_token, signing_key) -> str:
    claims = jwt.decode(make_token("alice"), options={"verify_signature": False})
    public_pem = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": KID})
    body = _b64(claims)
    import hashlib
    import hmac

    sig = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


def _tampered(make_token) -> str:
    header, _, sig = make_token("alice").split(".")
    claims = jwt.decode(make_token("alice"), options={"verify_signature": False})
    claims["cognito:username"] = "mallory"
    return f"{header}.{_b64(claims)}.{sig}"


def _cases(make_token, other_key, signing_key) -> dict[str, str | None]:
    now = int(time.time())
    return {
        "missing": None,
        "empty": "",
        "not bearer": "Basic " + make_token("alice"),
        "bearer without token": "Bearer ",
        "garbage": "Bearer not.a.jwt",
        "expired": "Bearer " + make_token("alice", exp=now - 3600, iat=now - 7200),
        "issued in the future": "Bearer " + make_token("alice", iat=now + 3600, exp=now + 7200),
        "not yet valid": "Bearer " + make_token("alice", nbf=now + 3600),
        "wrong issuer": "Bearer " + make_token("alice", iss="https://evil.example/pool"),
        "wrong audience": "Bearer " + make_token("alice", aud="another-client"),
        "access token": "Bearer " + make_token("alice", token_use="access"),
        "no token_use": "Bearer " + make_token("alice", token_use=None),
        "no exp": "Bearer " + make_token("alice", exp=None),
        "signed by another key": "Bearer " + make_token("alice", key=other_key),
        "unknown kid": "Bearer " + make_token("alice", headers={"kid": "someone-else"}),
        "alg none": "Bearer " + _alg_none(make_token),
        "HS256 with the public key": "Bearer " + _hs256_with_public_key(make_token, signing_key),
        "tampered claims": "Bearer " + _tampered(make_token),
        "no groups": "Bearer " + make_token("alice", []),
        "unknown group only": "Bearer " + make_token("alice", ["admins"]),
        "groups not a list": "Bearer " + make_token("alice", **{"cognito:groups": "parents"}),
        "username with #": "Bearer " + make_token("alice#JOB#1"),
        "username missing": "Bearer " + make_token("alice", **{"cognito:username": None}),
    }


def test_every_bad_token_is_rejected(verifier: TokenVerifier, make_token, other_key, signing_key) -> None:
    admitted = []
    for name, header in _cases(make_token, other_key, signing_key).items():
        try:
            verifier.verify(header)
            admitted.append(name)
        except InvalidToken:
            pass
    assert admitted == []


def test_keys_come_from_a_url_and_are_cached(jwks: dict[str, Any], make_token) -> None:
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return json.dumps(jwks).encode()

    verifier = TokenVerifier(JwksSource(url="https://issuer.test/jwks.json", fetch=fetch), ISSUER, AUDIENCE)
    for _ in range(3):
        verifier.verify("Bearer " + make_token("alice"))
    assert fetched == ["https://issuer.test/jwks.json"]


def test_caller_round_trips_through_the_authorizer_context() -> None:
    from chalicelib.domain import Caller

    caller = Caller("9b2c", "alice", frozenset({Role.NANNY, Role.PARENT}), email="alice@example.com")
    assert caller_from_context(caller_to_context(caller)) == caller
    without_email = Caller("9b2c", "alice", frozenset({Role.PARENT}))
    assert "email" not in caller_to_context(without_email)
    assert caller_from_context(caller_to_context(without_email)) == without_email
    assert caller_from_context({}) is None
    assert caller_from_context({"userId": "9b2c", "username": "a#b", "roles": "parents"}) is None
    assert caller_from_context({"userId": "a#b", "username": "alice", "roles": "parents"}) is None
    assert caller_from_context({"username": "alice", "roles": "parents"}) is None  # no sub, no caller


def test_the_identity_is_the_sub_and_the_email_is_kept_only_when_usable(verifier: TokenVerifier, make_token) -> None:
    caller = verifier.verify("Bearer " + make_token("alice", sub="sub-1", email="alice@example.com"))
    assert (caller.user_id, caller.username, caller.email) == ("sub-1", "alice", "alice@example.com")
    # The same name on another account (a new sub) is another person.
    assert verifier.verify("Bearer " + make_token("alice", sub="sub-2")).user_id == "sub-2"
    assert verifier.verify("Bearer " + make_token("alice", email="not an address")).email is None
    unverified = make_token("alice", email="alice@example.com", email_verified="false")
    assert verifier.verify("Bearer " + unverified).email is None
    for sub in (None, "a#b", "", 42):
        with pytest.raises(InvalidToken):
            verifier.verify("Bearer " + make_token("alice", sub=sub))


# Far from today, so that a clock left unfrozen fails these tests instead of passing them.
EXP = 2_000_000_000


@pytest.fixture
def frozen_at(monkeypatch: pytest.MonkeyPatch):
    """Sets the wall clock PyJWT checks exp, nbf and iat against."""

    def freeze(timestamp: float) -> None:
        class Frozen(datetime):
            @classmethod
            def now(cls, tz=None):  # type: ignore[no-untyped-def,override]
                return datetime.fromtimestamp(timestamp, tz)

        monkeypatch.setattr(jwt.api_jwt, "datetime", Frozen)

    return freeze


def _admitted(verifier: TokenVerifier, token: str) -> bool:
    try:
        verifier.verify("Bearer " + token)
    except InvalidToken:
        return False
    return True


def test_an_expired_token_is_admitted_for_the_leeway_and_not_a_second_more(
    verifier: TokenVerifier, make_token, frozen_at
) -> None:
    token = make_token("alice", iat=EXP - 3600, auth_time=EXP - 3600, exp=EXP)
    frozen_at(EXP - 1)
    assert _admitted(verifier, token)
    frozen_at(EXP + LEEWAY_SECONDS - 1)  # expired, within the leeway
    assert _admitted(verifier, token)
    frozen_at(EXP + LEEWAY_SECONDS)  # exp = now - leeway: refused
    assert not _admitted(verifier, token)
    frozen_at(EXP + 30)  # the old leeway
    assert not _admitted(verifier, token)


def test_a_token_from_the_future_is_admitted_only_within_the_leeway(
    verifier: TokenVerifier, make_token, frozen_at
) -> None:
    now = EXP - 3600
    frozen_at(now)
    for claim in ("iat", "nbf"):
        edge = {"iat": now, "exp": EXP, claim: now + LEEWAY_SECONDS}
        assert _admitted(verifier, make_token("alice", **edge))
        beyond = {"iat": now, "exp": EXP, claim: now + LEEWAY_SECONDS + 1}
        assert not _admitted(verifier, make_token("alice", **beyond))


def test_an_expired_token_is_honoured_at_most_65_seconds_past_exp() -> None:
    """API Gateway serves a cached admission for the authorizer's TTL, whatever the token's exp.

    The TTL is set per authorizer (no per-answer TTL exists), so the bound is TTL + leeway;
    docs/api.md#how-long-a-token-outlives-its-exp states it.
    """
    from app import app

    (config,) = [c for c in app.builtin_auth_handlers if c.name == "token_authorizer"]
    assert config.ttl_seconds == 60
    assert LEEWAY_SECONDS == 5
    page = (Path(__file__).parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    assert f"exp + {config.ttl_seconds + LEEWAY_SECONDS} s" in page
