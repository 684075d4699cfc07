"""The decline worker's failure path: a message it can never process ends in the DLQ."""

from __future__ import annotations

import json
import uuid

import pytest

from chalicelib.declines import DeclineApplication
from chalicelib.domain import new_id
from tests.e2e.conftest import RunningStack, wait_for

pytestmark = pytest.mark.e2e


def test_poison_message_lands_in_the_dlq_after_max_receives(stack: RunningStack) -> None:
    """Sent with a good message in one batch: only the poison one is retried, then dead-lettered."""
    sqs = stack.client("sqs")
    queue_url, dlq_url = stack.ready["queue_url"], stack.ready["dlq_url"]
    policy = json.loads(
        sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"]
    )
    max_receives = int(policy["maxReceiveCount"])
    assert max_receives == 5
    body = f"not json {uuid.uuid4()}"
    # Well-formed, for an application that does not exist: processed (and deleted) at once.
    good = DeclineApplication(new_id(), new_id()).to_json()

    sent = sqs.send_message_batch(
        QueueUrl=queue_url, Entries=[{"Id": "good", "MessageBody": good}, {"Id": "poison", "MessageBody": body}]
    )
    assert len(sent["Successful"]) == 2

    def in_dlq() -> dict | None:
        resp = sqs.receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageSystemAttributeNames=["All"]
        )
        messages = resp.get("Messages", [])
        assert good not in [m["Body"] for m in messages]
        return next((m for m in messages if m["Body"] == body), None)

    # Each failed receive is retried after the stack's 1 s retry delay.
    message = wait_for(in_dlq, 30, "the poison message in the DLQ", stack, interval=0)
    sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
    # The count moves with the message: the worker's receives, then this test's one.
    assert int(message["Attributes"]["ApproximateReceiveCount"]) == max_receives + 1
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert attrs == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
