"""The SQS publisher against a scripted client: batching, concurrency and retries."""

from __future__ import annotations

import json
import threading
from typing import Any

from botocore.exceptions import EndpointConnectionError

from chalicelib.declines import DeclineApplication, InvalidMessage, SqsDeclinePublisher
from chalicelib.domain import new_id


class ScriptedSqs:
    def __init__(self, fail_first: int = 0, raise_first: int = 0) -> None:
        self.fail_first = fail_first  # entries to fail on each of the first calls of a batch
        self.raise_first = raise_first
        self.sent: list[str] = []
        self.calls = 0
        self.lock = threading.Lock()
        self.seen_ids: dict[str, int] = {}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict:
        with self.lock:
            self.calls += 1
            assert len(Entries) <= 10 and len({e["Id"] for e in Entries}) == len(Entries)
            first_try = all(self.seen_ids.get(e["Id"], 0) == 0 for e in Entries)
            for e in Entries:
                self.seen_ids[e["Id"]] = self.seen_ids.get(e["Id"], 0) + 1
            if self.raise_first and first_try:
                self.raise_first -= 1
                raise EndpointConnectionError(endpoint_url=QueueUrl)
            failing = Entries[: self.fail_first] if first_try else []
            ok = Entries[len(failing) :]
            self.sent.extend(json.loads(e["MessageBody"])["applicationId"] for e in ok)
            return {
                "Successful": [{"Id": e["Id"]} for e in ok],
                "Failed": [{"Id": e["Id"], "Code": "InternalError", "SenderFault": False} for e in failing],
            }


def _publisher(sqs: ScriptedSqs, **kw: Any) -> SqsDeclinePublisher:
    return SqsDeclinePublisher(sqs, lambda: "https://queue", backoff_seconds=0, **kw)


def test_messages_go_out_ten_per_call() -> None:
    sqs = ScriptedSqs()
    ids = [new_id() for _ in range(25)]
    report = _publisher(sqs).publish(new_id(), ids)
    assert report.queued == 25 and report.failed_ids == []
    assert sqs.calls == 3 and sorted(sqs.sent) == sorted(ids)


def test_failed_entries_and_raising_calls_are_retried() -> None:
    sqs = ScriptedSqs(fail_first=3, raise_first=1)
    ids = [new_id() for _ in range(40)]
    report = _publisher(sqs, concurrency=4).publish(new_id(), ids)
    assert report.queued == 40 and report.failed_ids == []
    assert sorted(sqs.sent) == sorted(ids)  # each exactly once
    assert sqs.calls > 4


def test_what_never_gets_through_is_reported() -> None:
    class Down:
        def send_message_batch(self, **_: Any) -> dict:
            raise EndpointConnectionError(endpoint_url="https://queue")

    ids = [new_id() for _ in range(12)]
    report = SqsDeclinePublisher(Down(), lambda: "q", max_attempts=2, backoff_seconds=0).publish(new_id(), ids)
    assert report.queued == 0 and sorted(report.failed_ids) == sorted(ids)


def test_nothing_to_send_sends_nothing() -> None:
    sqs = ScriptedSqs()
    assert _publisher(sqs).publish(new_id(), []).queued == 0
    assert sqs.calls == 0


def test_message_schema_is_versioned_and_strict() -> None:
    msg = DeclineApplication(new_id(), new_id())
    assert DeclineApplication.from_json(msg.to_json()) == msg
    assert json.loads(msg.to_json())["v"] == 1
    hashed = json.dumps({"v": 1, "kind": "DeclineApplication", "jobId": "x#y", "applicationId": new_id()})
    for body in ["", "[]", '{"v":2,"kind":"DeclineApplication"}', '{"v":1,"kind":"Other"}', hashed]:
        try:
            DeclineApplication.from_json(body)
        except InvalidMessage:
            continue
        raise AssertionError(f"accepted {body!r}")
