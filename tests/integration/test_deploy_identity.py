"""The identity a deployed stage gets: tokens of either of the pool's clients are admitted.

The packaged template sets ``AUTH_AUDIENCE`` to ``<app client>,<admin client>``: the apps
sign in through the first, the smoke test (AdminInitiateAuth) through the second.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.auth import InvalidToken, JwksSource, TokenVerifier
from tests.conftest import ISSUER
from tools.deploy.templates import infrastructure_template


def _verifier(jwks: dict[str, Any], audience: str) -> TokenVerifier:
    return TokenVerifier(JwksSource(inline=json.dumps(jwks)), issuer=ISSUER, audience=audience)


def test_each_listed_client_is_an_accepted_audience(jwks: dict[str, Any], make_token: Any) -> None:
    verifier = _verifier(jwks, "appclient,adminclient")
    for client in ("appclient", "adminclient"):
        assert verifier.verify(f"Bearer {make_token('alice', aud=client)}").username == "alice"
    with pytest.raises(InvalidToken):
        verifier.verify(f"Bearer {make_token('alice', aud='otherclient')}")
    with pytest.raises(InvalidToken):
        verifier.verify(f"Bearer {make_token('alice', aud='appclient,adminclient')}")


def test_a_single_audience_still_works(jwks: dict[str, Any], make_token: Any) -> None:
    verifier = _verifier(jwks, "appclient")
    assert verifier.verify(f"Bearer {make_token('nina', ['nannies'], aud='appclient')}").username == "nina"
    with pytest.raises(InvalidToken):
        verifier.verify(f"Bearer {make_token('nina', ['nannies'], aud='adminclient')}")


def test_a_pool_of_your_own_brings_only_its_app_client() -> None:
    # With ExistingUserPoolId the stack creates no pool, no groups and no admin client;
    # with ExistingAppClientId no app client either.
    template = infrastructure_template("dev")
    resources, conditions = template["Resources"], template["Conditions"]
    assert conditions["CreateUserPool"] == {"Fn::Equals": [{"Ref": "ExistingUserPoolId"}, ""]}
    assert conditions["CreateAppClient"] == {"Fn::Equals": [{"Ref": "ExistingAppClientId"}, ""]}
    for name in ("UserPool", "ParentsGroup", "NanniesGroup", "AdminClient"):
        assert resources[name]["Condition"] == "CreateUserPool", name
    assert resources["AppClient"]["Condition"] == "CreateAppClient"
    audience = template["Outputs"]["AuthAudience"]["Value"]["Fn::If"]
    assert audience[0] == "CreateUserPool"
    assert audience[2] == {"Fn::If": ["CreateAppClient", {"Ref": "AppClient"}, {"Ref": "ExistingAppClientId"}]}
