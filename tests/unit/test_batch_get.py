"""``Table.batch_get``: one call per hundred keys, duplicates asked once, unprocessed keys asked again."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib import items as it
from chalicelib.domain import Unavailable
from chalicelib.dynamo import BATCH_GET_RETRIES, Table


class Client:
    """Answers BatchGetItem from ``items``, leaving ``unprocessed`` keys of each call for later."""

    def __init__(self, items: list[dict[str, Any]], unprocessed: list[int]) -> None:
        self.items = {it.primary_key(i): i for i in items}
        self.unprocessed = list(unprocessed)  # how many keys each call leaves, in order
        self.calls: list[list[dict[str, Any]]] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((name, request),) = RequestItems.items()
        assert request["ConsistentRead"] is True
        keys = request["Keys"]
        assert len(keys) <= 100
        self.calls.append(keys)
        left = self.unprocessed.pop(0) if self.unprocessed else 0
        done, rest = keys[: len(keys) - left], keys[len(keys) - left :]
        found = [self.items[it.primary_key(k)] for k in done if it.primary_key(k) in self.items]
        return {"Responses": {name: found}, "UnprocessedKeys": {name: {"Keys": rest}} if rest else {}}


def _items(n: int) -> list[dict[str, Any]]:
    return [{**it.application_key("j1", f"a{i}"), "n": {"N": str(i)}} for i in range(n)]


def test_a_hundred_keys_per_call_and_each_key_asked_once() -> None:
    stored = _items(150)
    client = Client(stored, [])
    keys = [it.application_key("j1", f"a{i}") for i in range(150)] + [it.application_key("j1", "a0")]
    keys.append(it.job_key("missing"))

    found = Table(client, "t").batch_get(keys)

    assert [len(c) for c in client.calls] == [100, 51]
    assert sorted(it.primary_key(i) for i in found) == sorted(it.primary_key(i) for i in stored)


def test_unprocessed_keys_are_asked_again_after_a_pause() -> None:
    client = Client(_items(5), [3, 1])
    pauses: list[float] = []

    found = Table(client, "t", sleep=pauses.append).batch_get([it.application_key("j1", f"a{i}") for i in range(5)])

    assert [len(c) for c in client.calls] == [5, 3, 1]
    assert len(found) == 5 and len(pauses) == 2 and all(p > 0 for p in pauses)


def test_keys_still_unprocessed_after_the_retries_are_unavailable() -> None:
    client = Client(_items(2), [1] * (BATCH_GET_RETRIES + 1))

    with pytest.raises(Unavailable):
        Table(client, "t", sleep=lambda _: None).batch_get([it.application_key("j1", f"a{i}") for i in range(2)])

    assert len(client.calls) == BATCH_GET_RETRIES + 1
