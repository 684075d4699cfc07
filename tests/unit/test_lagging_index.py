"""The development-only lagging index is off unless LOCAL_INDEX_LAG_SECONDS asks for it."""

from __future__ import annotations

import boto3
import pytest

from tools.local import lagging_index


def test_it_is_off_without_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(lagging_index.ENV_VAR, raising=False)
    assert lagging_index.install_from_env(boto3.session.Session(region_name="us-east-1")) is None
    monkeypatch.setenv(lagging_index.ENV_VAR, "0")
    assert lagging_index.install_from_env(boto3.session.Session(region_name="us-east-1")) is None


def test_with_the_variable_every_new_client_of_the_session_lags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(lagging_index.ENV_VAR, "2.5")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    session = boto3.session.Session(region_name="us-east-1")
    installed = lagging_index.install_from_env(session)
    assert installed is not None and installed.lag == 2.5
    client = session.client("dynamodb", aws_access_key_id="x", aws_secret_access_key="x")
    handlers = list(client.meta.events._emitter._lookup_cache.get("after-call.dynamodb.Query", []))
    handlers = handlers or list(client.meta.events._emitter._handlers.prefix_search("after-call.dynamodb.Query"))
    assert installed._after_query in handlers
