"""The local poller settles batches as Lambda does with ReportBatchItemFailures (no stack needed)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.fakes.sqs import QUEUE_ARN, FakeSqs
from tools.local.worker import QueuePoller, failed_message_ids

pytestmark = pytest.mark.e2e

QUEUE_URL = "http://127.0.0.1:1/123456789012/q"


def messages(n: int) -> list[dict[str, Any]]:
    return [
        {
            "MessageId": f"m{i}",
            "ReceiptHandle": f"r{i}",
            "Body": f"body {i}",
            "MD5OfBody": hashlib.md5(f"body {i}".encode()).hexdigest(),  # noqa: S324 - what SQS sends
            "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1", "SenderId": "x"},
            "MessageAttributes": {"kind": {"DataType": "String", "StringValue": "decline"}},
        }
        for i in range(n)
    ]


def poller(sqs: FakeSqs, handler: Any) -> QueuePoller:
    return QueuePoller(sqs, QUEUE_URL, handler, function_name="fn", retry_delay_seconds=1)


def test_the_handler_gets_a_lambda_shaped_event_and_context() -> None:
    seen: dict[str, Any] = {}

    def handler(event: dict[str, Any], context: Any) -> None:
        seen["event"], seen["context"] = event, context

    poller(FakeSqs(), handler).process(messages(2))

    records = seen["event"]["Records"]
    assert [r["messageId"] for r in records] == ["m0", "m1"]
    assert records[0]["eventSource"] == "aws:sqs"
    assert records[0]["eventSourceARN"] == QUEUE_ARN
    assert records[0]["awsRegion"] == "us-east-1"
    assert records[0]["attributes"]["ApproximateReceiveCount"] == "1"
    assert records[0]["messageAttributes"]["kind"]["stringValue"] == "decline"
    context = seen["context"]
    assert context.invoked_function_arn == "arn:aws:lambda:us-east-1:123456789012:function:fn"
    assert 0 < context.get_remaining_time_in_millis() <= 30_000
    assert context.aws_request_id


def test_reported_failures_are_retried_soon_and_the_rest_deleted() -> None:
    sqs = FakeSqs()

    outcome = poller(sqs, lambda e, c: {"batchItemFailures": [{"itemIdentifier": "m1"}]}).process(messages(3))

    assert sqs.deleted == ["r0", "r2"]
    assert sqs.retried == [("r1", 1)]
    assert (outcome.deleted, outcome.failed, outcome.whole_batch_error) == (2, 1, None)


def test_an_exception_fails_the_whole_batch() -> None:
    sqs = FakeSqs()

    def handler(event: dict[str, Any], context: Any) -> None:
        raise RuntimeError("boom\nwith details")

    outcome = poller(sqs, handler).process(messages(2))

    assert sqs.deleted == []
    assert [h for h, _ in sqs.retried] == ["r0", "r1"]
    assert outcome.whole_batch_error == "RuntimeError: boom"


@pytest.mark.parametrize(
    ("result", "failed"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "a"}]}, {"a"}),
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, {"a", "b"}),  # not in the batch
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"a", "b"}),
        ({"batchItemFailures": [{"id": "a"}]}, {"a", "b"}),
        ("not an object", {"a", "b"}),
    ],
)
def test_failed_ids_follow_lambdas_rules(result: Any, failed: set[str]) -> None:
    assert failed_message_ids(result, ["a", "b"])[0] == failed
