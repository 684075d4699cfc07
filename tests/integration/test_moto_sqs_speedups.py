"""tools.moto_sqs: the local stack's faster moto SQS behaves exactly like stock moto.

The same script of sends, receives, visibility changes, deletes by old receipt handles,
delays, expiry and dead-lettering runs on stock moto and on the patched model; both
must observe the same thing, and that thing is what SQS promises.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.sqs.models import Message, Queue, SQSBackend, sqs_backends

from tools import moto_sqs

REGION = "us-east-1"


@pytest.fixture(params=["stock", "sped-up"])
def flavour(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # Whatever speed_up replaces is put back after the test.
    for name in ("visible", "delayed", "had_receipt_handle"):
        monkeypatch.setattr(Message, name, Message.__dict__[name])
    for name in (
        "delete_message",
        "attributes",
        "approximate_number_of_messages",
        "approximate_number_of_messages_not_visible",
        "approximate_number_of_messages_delayed",
    ):
        monkeypatch.setattr(Queue, name, Queue.__dict__[name])
    monkeypatch.setattr(
        SQSBackend,
        "is_message_valid_based_on_retention_period",
        SQSBackend.__dict__["is_message_valid_based_on_retention_period"],
    )
    monkeypatch.setattr(moto_sqs, "_applied", False)
    if request.param == "sped-up":
        moto_sqs.speed_up()
    yield request.param


def _script(sqs: Any) -> list[Any]:
    seen: list[Any] = []
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})
    queue = sqs.create_queue(QueueName="q", Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": "30"})[
        "QueueUrl"
    ]

    def receive(**kw: Any) -> list[dict[str, Any]]:
        return sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, **kw).get("Messages", [])

    def depth(url: str = queue) -> list[str]:
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return [attrs[n] for n in names]

    sqs.send_message_batch(
        QueueUrl=queue,
        Entries=[
            {"Id": "a", "MessageBody": "a"},
            {"Id": "b", "MessageBody": "b"},
            {"Id": "late", "MessageBody": "late", "DelaySeconds": 1},
        ],
    )
    seen.append(("depth after send", depth()))
    first = receive()
    seen.append(("first receive", sorted(m["Body"] for m in first)))
    seen.append(("in flight", [m["Body"] for m in receive()], depth()))
    by_body = {m["Body"]: m for m in first}
    old_handle = by_body["a"]["ReceiptHandle"]
    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=old_handle, VisibilityTimeout=0)
    again = receive(VisibilityTimeout=0)
    seen.append(("visible again", [m["Body"] for m in again]))
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=old_handle)  # an older handle of the same message
    seen.append(("deleted by an old handle", depth()))
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=old_handle)  # twice is fine
    try:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle="not-a-receipt-handle")
    except ClientError as err:
        seen.append(("unknown handle", err.response["Error"]["Code"]))
    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=by_body["b"]["ReceiptHandle"], VisibilityTimeout=0)
    time.sleep(1.1)  # "late" was delayed by one second
    seen.append(("after the delay", sorted(m["Body"] for m in receive(VisibilityTimeout=0))))
    # "b" has now been received twice: the next receive moves it to the DLQ.
    third = receive(VisibilityTimeout=0)
    seen.append(("third receive", sorted(m["Body"] for m in third)))
    for m in third:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    seen.append(("dlq", [m["Body"] for m in sqs.receive_message(QueueUrl=dlq).get("Messages", [])]))
    # A message older than the retention period is no longer delivered.
    sqs.send_message(QueueUrl=queue, MessageBody="expired")
    (message,) = sqs_backends["123456789012"][REGION].get_queue("q")._messages
    sent = message.sent_timestamp
    message.sent_timestamp = sent - (4 * 86400 + 60) * 1000  # the default retention is four days
    seen.append(("expired", [m["Body"] for m in receive(VisibilityTimeout=0)]))
    message.sent_timestamp = sent
    seen.append(("not expired", [m["Body"] for m in receive(VisibilityTimeout=0)]))
    return seen


def test_the_sped_up_model_behaves_like_stock_moto(flavour: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        seen = _script(boto3.client("sqs", region_name=REGION))
    assert seen == [
        ("depth after send", ["2", "0", "1"]),
        ("first receive", ["a", "b"]),
        ("in flight", [], ["0", "2", "1"]),
        ("visible again", ["a"]),
        ("deleted by an old handle", ["0", "1", "1"]),
        ("unknown handle", "ReceiptHandleIsInvalid"),
        ("after the delay", ["b", "late"]),
        ("third receive", ["late"]),
        ("dlq", ["b"]),
        ("expired", []),
        ("not expired", ["expired"]),
    ], flavour
