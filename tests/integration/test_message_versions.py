"""Message versions: an unknown one is parked in the DLQ at once, a malformed one fails."""

from __future__ import annotations

import json

import pytest

from chalicelib import bootstrap
from chalicelib.declines import DeclineApplication
from tests.integration.conftest import Api, Aws, sqs_event


def _dlq_bodies(aws: Aws) -> list[dict]:
    url = aws.outputs["DeclinesDeadLetterQueueUrl"]
    resp = aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
    return resp.get("Messages") or []


def test_a_message_of_an_unknown_version_goes_to_the_dlq_at_its_first_receive(
    api: Api, aws: Aws, client, caplog: pytest.LogCaptureFixture
) -> None:
    job = api.create_job("alice")
    app_id = api.apply("nina", job["jobId"])["applicationId"]
    newer = json.dumps({"v": 2, "kind": "DeclineApplication", "jobId": job["jobId"], "applicationId": app_id})
    event = sqs_event([{"MessageId": "newer", "Body": newer}])

    result = client.lambda_.invoke("decline_worker", event).payload

    # acknowledged (so not retried 5 x 180 s), because a copy is in the DLQ
    assert result == {"batchItemFailures": []}
    [parked] = _dlq_bodies(aws)
    assert parked["Body"] == newer
    assert "unknown message version" in parked["MessageAttributes"]["parkedReason"]["StringValue"]
    assert "moved to the dead-letter queue" in caplog.text
    assert api.applications("alice", job["jobId"])[0]["status"] == "PENDING"


def test_a_boolean_version_is_not_version_1(api: Api, aws: Aws, client) -> None:
    job = api.create_job("alice")
    app_id = api.apply("nina", job["jobId"])["applicationId"]
    bad = json.dumps({"v": True, "kind": "DeclineApplication", "jobId": job["jobId"], "applicationId": app_id})
    good = DeclineApplication(job["jobId"], api.apply("olga", job["jobId"])["applicationId"]).to_json()
    event = sqs_event([{"MessageId": "bool", "Body": bad}, {"MessageId": "ok", "Body": good}])

    result = client.lambda_.invoke("decline_worker", event).payload

    assert result == {"batchItemFailures": [{"itemIdentifier": "bool"}]}
    statuses = {a["applicantName"]: a["status"] for a in api.applications("alice", job["jobId"])}
    assert statuses == {"nina": "PENDING", "olga": "DECLINED"}


def test_when_the_dlq_cannot_be_reached_the_message_is_retried_not_lost(
    api: Api, aws: Aws, client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DECLINES_DLQ_URL", aws.outputs["DeclinesDeadLetterQueueUrl"] + "-missing")
    bootstrap.reset()
    job = api.create_job("alice")
    good = DeclineApplication(job["jobId"], api.apply("olga", job["jobId"])["applicationId"]).to_json()
    newer = json.dumps({"v": 3, "kind": "SweepJob", "jobId": job["jobId"]})
    event = sqs_event(
        [
            {"MessageId": "newer", "Body": newer},
            {"MessageId": "x", "Body": "not json"},
            {"MessageId": "ok", "Body": good},
        ]
    )
    result = client.lambda_.invoke("decline_worker", event).payload
    assert {f["itemIdentifier"] for f in result["batchItemFailures"]} == {"newer", "x"}
