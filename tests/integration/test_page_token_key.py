"""A stage without a readable page-token key refuses listings with an answer clients can act on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from chalice.test import Client

from app import app
from chalicelib import bootstrap
from chalicelib.domain import InvalidInput
from chalicelib.page_token_keys import MAX_AGE_SECONDS, PageTokenKeySource, parameter_name
from chalicelib.pagination import PageTokens
from tests.fakes.clock import FakeClock
from tests.integration.conftest import Api, Aws
from tools.ops.page_token_key import rotate_page_token_key
from tools.shared import ToolError

pytestmark = pytest.mark.usefixtures("app_env")


def test_listings_answer_503_page_tokens_unavailable_without_a_key(
    monkeypatch: pytest.MonkeyPatch, make_token, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the dev stage's settings (its parameter's name, no key), and a parameter that cannot be read
    monkeypatch.delenv("PAGE_TOKEN_SECRET")

    def unreadable(name: str) -> str:
        raise RuntimeError(f"ParameterNotFound: {name}")

    monkeypatch.setattr("chalicelib.page_token_keys._powertools_fetch", unreadable)
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


FIRST_KEY = "first-key-" + "0" * 40


def test_a_rotation_in_two_steps_reaches_warm_containers_and_never_breaks_paging(
    api: Api, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a stage whose key is in SSM, and a warm container that has read it
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name=parameter_name("test"), Value=FIRST_KEY, Type="SecureString")
    monkeypatch.delenv("PAGE_TOKEN_SECRET")
    monkeypatch.setenv("PAGE_TOKEN_SECRET_PARAMETER", parameter_name("test"))
    clock = FakeClock()
    bootstrap.override(page_tokens=PageTokens(PageTokenKeySource(clock=clock)))
    for _ in range(12):
        api.create_job("alice")

    def page(token: str | None) -> tuple[int, str | None]:
        reply = api.call("GET", "/jobs?limit=1" + (f"&nextToken={token}" if token else ""), user="nina")
        return reply.status, (reply.body.get("nextToken") if reply.status == 200 else reply.body["code"])

    _, before_rotation = page(None)
    assert before_rotation
    cursor = PageTokens(FIRST_KEY).decode("jobs:open", before_rotation)

    # When the key is rotated: step 1 (the new key accepted), the containers' max age, step 2
    assert rotate_page_token_key(ssm, "test", out=lambda _: None) == "accepting"
    status, during = page(before_rotation)
    assert status == 200 and during
    PageTokens(FIRST_KEY).decode("jobs:open", during)  # not re-read yet: still signed with the first key
    clock.now += MAX_AGE_SECONDS
    assert rotate_page_token_key(ssm, "test", force=True, out=lambda _: None) == "signing"
    # a container started now signs with the new key; the warm one, not re-read yet, accepts it
    by_a_new_container = PageTokens(PageTokenKeySource()).encode("jobs:open", cursor)
    assert page(by_a_new_container)[0] == 200
    clock.now += MAX_AGE_SECONDS

    # Then every token issued before, during and after the rotation pages on
    for token in (before_rotation, during, by_a_new_container):
        assert page(token)[0] == 200
    # and the warm container signs with the new key now
    _, after = page(None)
    assert after
    with pytest.raises(InvalidInput):
        PageTokens(FIRST_KEY).decode("jobs:open", after)

    # And one rotation later the first key is accepted no more
    rotate_page_token_key(ssm, "test", out=lambda _: None)
    clock.now += MAX_AGE_SECONDS
    rotate_page_token_key(ssm, "test", force=True, out=lambda _: None)
    clock.now += MAX_AGE_SECONDS
    assert page(before_rotation) == (400, "INVALID_NEXT_TOKEN")
    assert page(after)[0] == 200


def test_step_two_waits_for_the_containers_max_age(aws: Aws) -> None:
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name=parameter_name("test"), Value=FIRST_KEY, Type="SecureString")
    rotate_page_token_key(ssm, "test", out=lambda _: None)
    with pytest.raises(ToolError, match="wait"):
        rotate_page_token_key(ssm, "test", out=lambda _: None)
    later = datetime.now(UTC) + timedelta(seconds=MAX_AGE_SECONDS + 1)
    assert rotate_page_token_key(ssm, "test", now=later, out=lambda _: None) == "signing"
