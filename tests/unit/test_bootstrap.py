"""bootstrap.override: named parts only, and whatever is built on a replaced part is rebuilt around it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib import bootstrap
from chalicelib.store import DynamoStore


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "TABLE_NAME": "booking-test",
        "DECLINES_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/declines",
        "AUTH_ISSUER": "https://issuer.example",
        "AUTH_AUDIENCE": "booking",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    bootstrap.reset()
    yield
    bootstrap.reset()


def test_a_part_that_is_not_one_is_a_type_error() -> None:
    override: Any = bootstrap.override
    with pytest.raises(TypeError):
        override(stor=object())  # a typo does not silently do nothing
    with pytest.raises(TypeError):
        override(object())  # parts are named


def test_replacing_the_dynamodb_client_rebuilds_the_store_and_the_service() -> None:
    store, service, publisher = bootstrap.store(), bootstrap.service(), bootstrap.publisher()
    client = object()

    bootstrap.override(dynamodb_client=client)

    assert bootstrap.dynamodb_client() is client
    assert bootstrap.store() is not store
    assert bootstrap.store()._table.client is client
    assert bootstrap.service() is not service
    assert bootstrap.publisher() is publisher  # not built on DynamoDB: kept


def test_replacing_the_store_rebuilds_the_service_around_it() -> None:
    service = bootstrap.service()
    store = DynamoStore(object(), "another")

    bootstrap.override(store=store)

    assert bootstrap.store() is store
    assert bootstrap.service() is not service
    assert bootstrap.service()._store is store


def test_a_part_given_with_what_it_is_built_on_is_kept() -> None:
    store = DynamoStore(object(), "another")
    bootstrap.override(dynamodb_client=object(), store=store)
    assert bootstrap.store() is store


def test_replacing_the_sqs_client_rebuilds_the_queue_s_users() -> None:
    publisher, letters = bootstrap.publisher(), bootstrap.dead_letters()
    bootstrap.override(sqs_client=object())
    assert bootstrap.publisher() is not publisher
    assert bootstrap.dead_letters() is not letters


def test_what_is_built_on_a_part_is_known_through_other_parts() -> None:
    assert bootstrap.built_on({"dynamodb_client"}) == {"store", "service", "stream_processor", "mailer"}
    assert bootstrap.built_on({"sqs_client"}) == {
        "declines_queue_url",
        "publisher",
        "dead_letters",
        "service",
        "stream_processor",
    }


def test_every_part_override_takes_is_a_known_part() -> None:
    import inspect

    names = set(inspect.signature(bootstrap.override).parameters)
    assert names <= set(bootstrap.BUILT_FROM)


def test_the_sqs_client_is_made_on_its_first_call_not_with_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker declining applications never sends: its cold start must not build the client.
    made: list[str] = []
    real_client = bootstrap.boto3.client

    def client(service: str, **kwargs: Any) -> Any:
        made.append(service)
        return real_client(service, **kwargs)

    monkeypatch.setattr(bootstrap.boto3, "client", client)
    bootstrap.service()
    bootstrap.dead_letters()
    assert made == ["dynamodb"]

    bootstrap.publisher().publish  # noqa: B018 - reading it is enough
    assert "sqs" not in made  # the publisher's own attribute, not the client's
    bootstrap.dead_letters()._sqs.meta  # noqa: B018 - the first use of the client
    assert made.count("sqs") == 1
