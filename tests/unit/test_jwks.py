"""The issuer's JWKS failing, rotating or never answering: tokens are refused or admitted, never an error."""

from __future__ import annotations

import json
import logging
import urllib.error
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from chalicelib.auth import InvalidToken, JwksSource, JwksUnavailable, TokenVerifier
from tests.conftest import AUDIENCE, ISSUER
from tests.fakes.clock import FakeClock
from tests.fakes.metrics import CountingMetrics

URL = "https://issuer.test/pool/.well-known/jwks.json"
ROTATED_KID = "test-key-2"


class Issuer:
    """The JWKS endpoint: answers ``body``, or raises ``failure`` when one is set."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.failure: Callable[[], bytes] | None = None
        self.fetches = 0

    def fetch(self, url: str) -> bytes:
        assert url == URL
        self.fetches += 1
        return self.failure() if self.failure else self.body


def _raise(exc: Exception) -> Callable[[], bytes]:
    def fail() -> bytes:
        raise exc

    return fail


def _ec_only_jwks() -> bytes:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    jwk.update({"kid": "ec-key", "use": "sig"})
    return json.dumps({"keys": [jwk]}).encode()


# Every way the endpoint can let us down; each must leave the last good keys in use.
FAILURES: dict[str, Callable[[], Callable[[], bytes]]] = {
    "network error": lambda: _raise(urllib.error.URLError("connection refused")),
    "timeout": lambda: _raise(TimeoutError("timed out")),
    "503": lambda: _raise(urllib.error.HTTPError(URL, 503, "Service Unavailable", None, None)),  # type: ignore[arg-type]
    "HTML instead of JSON": lambda: lambda: b"<html>502 Bad Gateway</html>",
    "not UTF-8": lambda: lambda: b"\xff\xfe\x00",
    "a JSON list": lambda: lambda: b"[]",
    "no keys": lambda: lambda: b'{"keys": []}',
    "no RSA key": lambda: (lambda body: lambda: body)(_ec_only_jwks()),
    "a broken RSA key": lambda: lambda: b'{"keys": [{"kty": "RSA", "kid": "x", "n": "!!", "e": "AQAB"}]}',
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def issuer(jwks: dict[str, Any]) -> Issuer:
    return Issuer(json.dumps(jwks).encode())


@pytest.fixture
def metrics() -> CountingMetrics:
    return CountingMetrics()


@pytest.fixture
def verifier(issuer: Issuer, clock: FakeClock, metrics: CountingMetrics) -> TokenVerifier:
    keys = JwksSource(url=URL, fetch=issuer.fetch, clock=clock, metrics=metrics)
    return TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def auth_log() -> Iterator[Records]:
    # chalicelib's logger stops propagating once observability is set up: listen on it directly.
    lib = logging.getLogger("chalicelib.auth")
    handler, level = Records(), lib.level
    lib.addHandler(handler)
    lib.setLevel(logging.INFO)
    yield handler
    lib.removeHandler(handler)
    lib.setLevel(level)


def _admits(verifier: TokenVerifier, token: str) -> bool:
    try:
        verifier.verify("Bearer " + token)
    except InvalidToken:
        return False
    return True


def test_keys_are_fetched_once_and_reloaded_after_an_hour(
    verifier: TokenVerifier, issuer: Issuer, clock: FakeClock, make_token
) -> None:
    for _ in range(5):
        assert _admits(verifier, make_token("alice"))
        clock.advance(600)
    assert issuer.fetches == 1
    clock.advance(600)  # 3600 s since the load
    assert _admits(verifier, make_token("alice"))
    assert issuer.fetches == 2


def test_an_unknown_kid_refetches_at_most_once_a_minute(
    verifier: TokenVerifier, issuer: Issuer, clock: FakeClock, jwks: dict[str, Any], make_token, other_key
) -> None:
    assert _admits(verifier, make_token("alice"))
    assert issuer.fetches == 1

    # The issuer rotates: a second key appears and tokens signed with it arrive at once.
    rotated = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(other_key.public_key()))
    rotated.update({"kid": ROTATED_KID, "alg": "RS256", "use": "sig"})
    issuer.body = json.dumps({"keys": [*jwks["keys"], rotated]}).encode()
    new_token = make_token("bea", key=other_key, headers={"kid": ROTATED_KID})

    # Within a minute of the last fetch: refused, and the issuer is not asked again,
    # however many unknown kids arrive (they cost nothing to forge).
    clock.advance(30)
    assert not _admits(verifier, new_token)
    for i in range(20):
        assert not _admits(verifier, make_token("mallory", headers={"kid": f"forged-{i}"}))
    assert issuer.fetches == 1

    # A minute after it: one refetch picks the new key up, and the old key still works.
    clock.advance(30)
    assert _admits(verifier, new_token)
    assert _admits(verifier, make_token("alice"))
    assert issuer.fetches == 2

    # A kid the issuer does not publish either: one refetch a minute at most, and refused.
    stray = make_token("mallory", headers={"kid": "nobody-has-this"})
    for _ in range(120):
        clock.advance(1)
        assert not _admits(verifier, stray)
    assert issuer.fetches == 4


@pytest.mark.parametrize("failure", FAILURES)
def test_a_failing_refresh_keeps_the_last_good_keys_and_backs_off(
    failure: str, verifier: TokenVerifier, issuer: Issuer, clock: FakeClock, metrics: CountingMetrics, make_token
) -> None:
    token = make_token("alice")
    assert _admits(verifier, token)
    clock.advance(3600)  # the keys are due for a reload...
    issuer.failure = FAILURES[failure]()  # ...and the endpoint is down

    # Ten minutes of traffic, a request every 0.5 s: every valid token is admitted.
    refused = 0
    for _ in range(1200):
        refused += not _admits(verifier, token)
        clock.advance(0.5)
    assert refused == 0
    # Attempts back off (1, 2, 4 ... 60 s apart): 7 in the first 64 s, then one a minute.
    assert 10 <= issuer.fetches - 1 <= 16
    assert metrics.counts["JwksRefreshFailed"] == issuer.fetches - 1
    assert metrics.counts["JwksUnavailable"] == 0

    # Once the endpoint answers again, the next attempt (at most a minute later) reloads.
    issuer.failure = None
    fetches = issuer.fetches
    for _ in range(61):
        assert _admits(verifier, token)
        clock.advance(1)
    assert issuer.fetches == fetches + 1


def test_with_no_key_ever_loaded_every_token_is_refused_with_a_log_line_and_a_metric(
    verifier: TokenVerifier,
    issuer: Issuer,
    clock: FakeClock,
    metrics: CountingMetrics,
    make_token,
    auth_log: Records,
) -> None:
    issuer.failure = _raise(urllib.error.URLError("connection refused"))
    errors: list[str] = []
    token = make_token("alice")
    for _ in range(300):  # five minutes, a request a second
        try:
            verifier.verify("Bearer " + token)
            errors.append("admitted")
        except JwksUnavailable:
            pass
        except Exception as exc:
            errors.append(repr(exc))
        clock.advance(1)
    assert errors == []
    assert metrics.counts["JwksUnavailable"] == 300
    assert issuer.fetches <= 11  # 0, 1, 3, 7, 15, 31, 63, 123, 183, 243: not one per request
    refusals = [r for r in auth_log.records if r.getMessage().startswith("no JWKS signing keys loaded")]
    assert len(refusals) == 300 and all(r.levelno == logging.ERROR for r in refusals)
    assert any("JWKS load failed (URLError" in r.getMessage() for r in auth_log.records)

    # The endpoint comes back: within a minute the keys load and tokens get in.
    issuer.failure = None
    clock.advance(60)
    assert _admits(verifier, make_token("alice"))


def test_a_jwks_unavailable_refusal_is_an_invalid_token() -> None:
    # The authorizer turns InvalidToken into a deny (403); anything else would be a 500.
    assert issubclass(JwksUnavailable, InvalidToken)


def test_inline_keys_that_do_not_load_refuse_tokens_instead_of_raising(make_token) -> None:
    verifier = TokenVerifier(JwksSource(inline="not json", clock=FakeClock()), issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(JwksUnavailable):
        verifier.verify("Bearer " + make_token("alice"))
