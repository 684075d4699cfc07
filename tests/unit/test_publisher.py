"""The SQS publisher against a scripted client: batching, concurrency and retries."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from chalicelib.declines import (
    DeclineApplication,
    InvalidMessage,
    SqsDeclinePublisher,
    SweepJob,
    UnknownVersion,
    parse_message,
)
from chalicelib.domain import new_id
from tests.fakes.sqs import ScriptedSqs


def _publisher(sqs: ScriptedSqs, **kw: Any) -> SqsDeclinePublisher:
    return SqsDeclinePublisher(sqs, lambda: "https://queue", backoff_seconds=0, **kw)


def test_messages_go_out_ten_per_call() -> None:
    sqs = ScriptedSqs()
    ids = [new_id() for _ in range(25)]
    report = _publisher(sqs).publish(new_id(), ids)
    assert report.queued == 25 and report.failed_ids == []
    assert sqs.calls == 3 and sorted(sqs.sent) == sorted(ids)


def test_failed_entries_are_retried() -> None:
    sqs = ScriptedSqs(fail_first=3)
    ids = [new_id() for _ in range(40)]
    report = _publisher(sqs, concurrency=4).publish(new_id(), ids)
    assert report.queued == 40 and report.failed_ids == []
    assert sorted(sqs.sent) == sorted(ids)  # each exactly once
    assert sqs.calls == 8  # each batch: one call, then one for its 3 failed entries


def test_a_raising_call_is_not_retried_on_top_of_botocore() -> None:
    # botocore has already retried a call that raises: retrying it here too would
    # multiply the attempts (5 x 4 = 20 calls per batch before).
    sqs = ScriptedSqs(raise_first=1)
    ids = [new_id() for _ in range(10)]
    report = _publisher(sqs).publish(new_id(), ids)
    assert sqs.calls == 1
    assert report.queued == 0 and sorted(report.failed_ids) == sorted(ids)


def test_what_never_gets_through_is_reported() -> None:
    class Down:
        calls = 0

        def send_message_batch(self, **_: Any) -> dict:
            Down.calls += 1
            raise EndpointConnectionError(endpoint_url="https://queue")

    ids = [new_id() for _ in range(12)]
    report = SqsDeclinePublisher(Down(), lambda: "q", max_attempts=5, backoff_seconds=0).publish(new_id(), ids)
    assert report.queued == 0 and sorted(report.failed_ids) == sorted(ids)
    assert Down.calls == 2  # one per batch


def test_failed_entries_are_retried_only_until_the_deadline() -> None:
    class AlwaysFailing:
        calls = 0

        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict:
            AlwaysFailing.calls += 1
            return {"Successful": [], "Failed": [{"Id": e["Id"], "Code": "InternalError"} for e in Entries]}

    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    publisher = SqsDeclinePublisher(
        AlwaysFailing(),
        lambda: "q",
        max_attempts=100,
        backoff_seconds=0.1,
        deadline_seconds=0.5,
        sleep=sleep,
        clock=lambda: now[0],
    )
    report = publisher.publish(new_id(), [new_id() for _ in range(3)])
    assert len(report.failed_ids) == 3
    assert now[0] <= 0.5 and 2 <= AlwaysFailing.calls <= 4


def test_a_booking_s_sweep_rides_in_the_batches_with_its_delay() -> None:
    sent: list[dict[str, Any]] = []

    class Recording:
        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict:
            sent.extend(Entries)
            return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    job_id = new_id()
    report = SqsDeclinePublisher(Recording(), lambda: "q").publish(job_id, [new_id() for _ in range(10)], sweep_after=7)
    assert report.queued == 10 and not report.sweep_failed
    sweep = [e for e in sent if json.loads(e["MessageBody"])["kind"] == "SweepJob"]
    assert len(sent) == 11 and len(sweep) == 1
    assert sweep[0]["DelaySeconds"] == 7 and json.loads(sweep[0]["MessageBody"]) == {
        "v": 1,
        "kind": "SweepJob",
        "jobId": job_id,
    }


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


def test_a_version_must_be_a_known_integer() -> None:
    app_id, job_id = new_id(), new_id()

    def body(v: Any) -> str:
        return json.dumps({"v": v, "kind": "DeclineApplication", "jobId": job_id, "applicationId": app_id})

    assert parse_message(body(1)) == DeclineApplication(job_id, app_id)
    # bool is an int subclass in Python: true must not pass as version 1
    for not_an_int in [True, 1.0, "1", None]:
        with pytest.raises(InvalidMessage) as refused:
            parse_message(body(not_an_int))
        assert not isinstance(refused.value, UnknownVersion)
    for unknown in [0, 2, 99]:
        with pytest.raises(UnknownVersion):
            parse_message(body(unknown))
    assert parse_message(SweepJob(job_id).to_json()) == SweepJob(job_id)


def test_the_sweep_goes_out_in_the_first_batch_whatever_the_number_of_declines() -> None:
    first_batches: list[list[str]] = []

    class Recording:
        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict:
            first_batches.append([json.loads(e["MessageBody"])["kind"] for e in Entries])
            return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    # One batch at a time: the order of the calls is the order of the batches.
    publisher = SqsDeclinePublisher(Recording(), lambda: "q", concurrency=1)
    publisher.publish(new_id(), [new_id() for _ in range(125)], sweep_after=30)
    assert len(first_batches) == 13
    assert first_batches[0][0] == "SweepJob"
    assert all("SweepJob" not in batch for batch in first_batches[1:])
