"""A JWKS outage through the authorizer and the app: refusals are 403s, valid tokens get in, never a 5xx."""

from __future__ import annotations

import json
import logging
import urllib.error
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib import bootstrap
from chalicelib.auth import JwksSource, TokenVerifier
from chalicelib.observability import PowertoolsMetrics
from tests.conftest import AUDIENCE, ISSUER
from tests.integration.conftest import Api
from tests.integration.test_observability import _emf
from tests.unit.test_jwks import Records

URL = "https://issuer.test/pool/.well-known/jwks.json"


class Endpoint:
    def __init__(self, jwks: dict[str, Any]) -> None:
        self.body = json.dumps(jwks).encode()
        self.up = True
        self.fetches = 0

    def fetch(self, url: str) -> bytes:
        self.fetches += 1
        if not self.up:
            raise urllib.error.HTTPError(url, 503, "Service Unavailable", None, None)  # type: ignore[arg-type]
        return self.body


@pytest.fixture
def auth_log() -> Iterator[Records]:
    lib = logging.getLogger("chalicelib.auth")
    handler = Records()
    lib.addHandler(handler)
    yield handler
    lib.removeHandler(handler)


# The authorizer does not touch the table, so one backend is enough here.
@pytest.mark.parametrize("aws", ["moto"], indirect=True)
def test_a_jwks_outage_never_turns_a_request_into_an_error(
    api: Api, aws: Any, jwks: dict[str, Any], capsys: pytest.CaptureFixture[str], auth_log: Records
) -> None:
    endpoint = Endpoint(jwks)
    clock = [0.0]
    keys = JwksSource(url=URL, fetch=endpoint.fetch, clock=lambda: clock[0], metrics=PowertoolsMetrics())
    bootstrap.override(verifier=TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE))
    token = "Bearer " + api.token("alice")

    def requests(n: int, every: float) -> Counter[int]:
        statuses: Counter[int] = Counter()
        for _ in range(n):
            statuses[api.call("GET", "/me/jobs", token=token).status] += 1
            clock[0] += every
        return statuses

    # Cold start with the endpoint down: no key was ever loaded, so every token is refused.
    endpoint.up = False
    capsys.readouterr()
    assert requests(50, every=1) == Counter({403: 50})
    assert endpoint.fetches <= 6  # backing off: 0, 1, 3, 7, 15, 31 s
    out = capsys.readouterr().out
    assert _emf(out).get("JwksUnavailable") == 50
    logged = [r.getMessage() for r in auth_log.records]
    assert logged.count("no JWKS signing keys loaded: refusing the token") == 50

    # The endpoint comes back: within a minute tokens get in.
    endpoint.up = True
    clock[0] += 60
    assert requests(5, every=1) == Counter({200: 5})

    # An hour later the keys are due and the endpoint is down again: ten minutes of
    # requests, all admitted on the last good keys, and the endpoint is not hammered.
    clock[0] += 3600
    endpoint.up = False
    fetches = endpoint.fetches
    assert requests(200, every=3) == Counter({200: 200})
    assert endpoint.fetches - fetches <= 16
    assert _emf(capsys.readouterr().out).get("JwksUnavailable") is None
