"""A stage without a readable page-token key refuses listings with an answer clients can act on."""

from __future__ import annotations

import json

import pytest
from chalice.test import Client

from app import app
from chalicelib import bootstrap

pytestmark = pytest.mark.usefixtures("app_env")


def test_listings_answer_503_page_tokens_unavailable_without_a_key(
    monkeypatch: pytest.MonkeyPatch, make_token, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the dev stage's settings (its parameter's name, no key), and a parameter that cannot be read
    monkeypatch.delenv("PAGE_TOKEN_SECRET")

    def unreadable(name: str) -> str:
        raise RuntimeError(f"ParameterNotFound: {name}")

    monkeypatch.setattr("chalicelib.secrets._powertools_fetch", unreadable)
    bootstrap.reset()

    # When a nanny lists the open jobs
    with Client(app, stage_name="dev") as client:
        answer = client.http.get(
            "/jobs?limit=1", headers={"Authorization": f"Bearer {make_token('nina', ['nannies'])}"}
        )

    # Then the API refuses with a stable code and says to retry, and logs which parameter is missing
    assert answer.status_code == 503
    assert json.loads(answer.body)["code"] == "PAGE_TOKENS_UNAVAILABLE"
    assert answer.headers["Retry-After"]
    assert "/booking/dev/page-token-secret" in caplog.text
