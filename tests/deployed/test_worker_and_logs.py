"""What only the deployed functions can show: the DLQ after 5 receives, and the logs in CloudWatch."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from chalicelib.domain import new_id
from tests.deployed.api_client import call, sign_up
from tests.deployed.stage import FIGURES, VISIBILITY_SECONDS, Deployment

MAX_RECEIVES = 5


def _log_lines(deployment: Deployment, group: str, needle: str, deadline: float = 20.0) -> list[dict[str, Any]]:
    """The JSON log lines of a group that contain ``needle``, waiting for them to arrive."""
    logs = deployment.client("logs")
    stop = time.monotonic() + deadline
    while True:
        events = []
        for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group):
            events += [e["message"] for e in page["events"] if needle in e["message"]]
        lines = [json.loads(m) for m in events if m.startswith("{")]
        if lines or time.monotonic() > stop:
            return lines
        time.sleep(0.5)


def test_a_poison_message_lands_in_the_dlq_after_exactly_five_receives(deployment: Deployment) -> None:
    # Given a message the worker can never read
    sqs, outputs = deployment.client("sqs"), deployment.outputs
    marker = f"poison-{uuid.uuid4().hex}"
    sent = sqs.send_message(QueueUrl=outputs["DeclinesQueueUrl"], MessageBody=marker)
    started = time.monotonic()

    # When the deployed worker fails it each time it is received
    deadline = started + (MAX_RECEIVES + 2) * (VISIBILITY_SECONDS + 5) + 20
    dead = None
    while dead is None and time.monotonic() < deadline:
        got = sqs.receive_message(
            QueueUrl=outputs["DeclinesDeadLetterQueueUrl"], WaitTimeSeconds=2, AttributeNames=["All"]
        )
        dead = next((m for m in got.get("Messages", []) if m["Body"] == marker), None)
    FIGURES.append(f"poison message in the DLQ after {time.monotonic() - started:.1f} s")

    # Then it is in the dead-letter queue, after exactly five failed attempts of the worker
    assert dead is not None, "the poison message never reached the DLQ"
    assert dead["MessageId"] == sent["MessageId"]
    # This receive is the sixth: five from the declines queue, then ours.
    assert dead["Attributes"]["ApproximateReceiveCount"] == str(MAX_RECEIVES + 1)
    sqs.delete_message(QueueUrl=outputs["DeclinesDeadLetterQueueUrl"], ReceiptHandle=dead["ReceiptHandle"])
    failures = _log_lines(deployment, "/aws/lambda/babysitting-booking-dev-decline_worker", sent["MessageId"])
    counts = sorted(int(line["receiveCount"]) for line in failures if line.get("message") == "decline failed")
    assert counts == list(range(1, MAX_RECEIVES + 1))


def test_the_deployed_logs_carry_the_request_s_correlation_id(deployment: Deployment) -> None:
    # Given a request the API refuses (an application to a job that does not exist)
    _, token = sign_up(deployment, "nannies")
    job_id = new_id()
    answer = call(deployment, "POST", f"/jobs/{job_id}/applications", token, {})
    assert answer.status == 404
    assert answer.body["code"] == "JOB_NOT_FOUND"

    # Then the API function's log line for it is JSON with the request's correlation id
    (line,) = _log_lines(deployment, "/aws/lambda/babysitting-booking-dev", job_id)
    assert line["message"] == "request refused"
    assert line["code"] == "JOB_NOT_FOUND"
    assert uuid.UUID(line["correlation_id"])
    # On AWS that is the x-amzn-RequestId answered to the client; MiniStack answers a
    # different id than the one it puts in the Lambda event
    # (docs/deploying.md#where-ministack-differs-from-aws-and-what-we-do-about-it).
    assert answer.headers.get("x-amzn-requestid")
    # The id belongs to this request alone.
    others = _log_lines(deployment, "/aws/lambda/babysitting-booking-dev", line["correlation_id"], deadline=0)
    assert {o.get("jobId") for o in others} == {job_id}
