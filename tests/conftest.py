"""Shared fixtures: signing keys, tokens and the environment the app reads."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib import bootstrap

ISSUER = "https://issuer.test/pool"
AUDIENCE = "booking-tests"
KID = "test-key-1"


@pytest.fixture(scope="session")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def jwks(signing_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    jwk.update({"kid": KID, "alg": "RS256", "use": "sig"})
    return {"keys": [jwk]}


TokenFactory = Callable[..., str]

_USERS = uuid.UUID("6f1c3c56-2a4e-4d0b-9a55-0c1b8f4f7e21")


def user_id(user: str) -> str:
    """The ``sub`` the test tokens give ``user``: stable, like a real account's."""
    return str(uuid.uuid5(_USERS, user))


@pytest.fixture(scope="session")
def make_token(signing_key: rsa.RSAPrivateKey) -> TokenFactory:
    def make(
        user: str,
        groups: list[str] | None = None,
        *,
        key: Any = None,
        headers: dict[str, Any] | None = None,
        algorithm: str = "RS256",
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "sub": user_id(user),
            "cognito:username": user,
            "cognito:groups": groups if groups is not None else ["parents"],
            # As `make token` does: an address per user, so that notifications have someone to write to.
            "email": f"{user}@example.com",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "token_use": "id",
            "iat": now,
            "auth_time": now,
            "exp": now + 3600,
        }
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, key or signing_key, algorithm=algorithm, headers={"kid": KID, **(headers or {})})

    return make


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, jwks: dict[str, Any]) -> Iterator[None]:
    """The environment a deployed stage would give the app, pointed at test resources."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SQS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "TABLE_NAME": "booking-test",
        "DECLINES_QUEUE_NAME": "booking-declines-test",
        "DECLINES_PARTIAL_BATCH_RESPONSES": "true",
        "AUTH_ISSUER": ISSUER,
        "AUTH_AUDIENCE": AUDIENCE,
        "AUTH_JWKS": json.dumps(jwks),
        "PAGE_TOKEN_SECRET": "test-secret",
        "ENQUEUE_BACKOFF_MS": "1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "BookingTests",
        "EVENT_BUS_NAME": "booking-test",
        "STREAM_PARTIAL_BATCH_RESPONSES": "true",
        "MAIL_SENDER": "booking-test@example.com",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bootstrap.reset()
    yield
    bootstrap.reset()
