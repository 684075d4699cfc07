"""moto-backed AWS, the app behind Chalice's test client, and a way to run the worker."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

from app import app
from tests.conftest import TokenFactory
from tests.payloads import job_body as job_body  # the tests import it from here
from tools import resources
from tools.localstack import start_dynamodb_local


@dataclass
class Aws:
    dynamodb: Any
    sqs: Any
    outputs: dict[str, Any]

    @property
    def table(self) -> str:
        return self.outputs["TableName"]

    @property
    def queue_url(self) -> str:
        return self.outputs["DeclinesQueueUrl"]

    def items(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"TableName": self.table}
        while True:
            resp = self.dynamodb.scan(**params)
            found.extend(resp["Items"])
            if "LastEvaluatedKey" not in resp:
                return found
            params["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def queue_depth(self) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def snapshot(self) -> tuple[list[str], int]:
        """Everything a rejected request must leave unchanged: items and queue depth."""
        return sorted(json.dumps(i, sort_keys=True) for i in self.items()), self.queue_depth()

    def receive_all(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while True:
            resp = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["All"],
            )
            batch = resp.get("Messages") or []
            if not batch:
                return messages
            messages.extend(batch)


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[str]:
    """AWS's DynamoDB Local, in memory, for the whole session (started on first use)."""
    child, endpoint = start_dynamodb_local(dict(os.environ))
    try:
        yield endpoint
    finally:
        child.stop()


# Every test runs on moto and again on DynamoDB Local: moto accepts some requests
# DynamoDB refuses (a filter on an index key, for one), DynamoDB Local does not.
@pytest.fixture(params=["moto", "dynamodb-local"])
def aws(request: pytest.FixtureRequest, app_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    stage = "test"
    if request.param == "dynamodb-local":
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", request.getfixturevalue("dynamodb_local"))
        stage = f"test-{uuid.uuid4().hex[:12]}"  # a table of its own, in a shared emulator
        monkeypatch.setenv("TABLE_NAME", f"booking-{stage}")
        monkeypatch.setenv("DECLINES_QUEUE_NAME", f"booking-declines-{stage}")
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        sqs = boto3.client("sqs")
        outputs = resources.apply(dynamodb, sqs, stage=stage)
        yield Aws(dynamodb=dynamodb, sqs=sqs, outputs=outputs)
        if request.param == "dynamodb-local":
            dynamodb.delete_table(TableName=outputs["TableName"])


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class Api:
    """Speaks to the app through Chalice's local gateway, authorizer included."""

    def __init__(self, client: Client, make_token: TokenFactory) -> None:
        self._client = client
        self._make_token = make_token

    def token(self, user: str, role: str = "parent") -> str:
        return self._make_token(user, ["parents" if role == "parent" else "nannies"])

    def call(
        self,
        method: str,
        path: str,
        *,
        user: str | None = None,
        role: str = "parent",
        body: Any = None,
        raw: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
    ) -> Reply:
        sent = {"Content-Type": "application/json"}
        if user is not None:
            sent["Authorization"] = f"Bearer {self.token(user, role)}"
        if token is not None:
            sent["Authorization"] = token
        sent.update(headers or {})
        payload = raw if raw is not None else (json.dumps(body) if body is not None else None)
        resp = getattr(self._client.http, method.lower())(path, headers=sent, body=payload)
        try:
            parsed = json.loads(resp.body) if resp.body else None
        except ValueError:
            parsed = resp.body
        return Reply(resp.status_code, parsed, dict(resp.headers))

    # conveniences for the common steps
    def create_job(self, owner: str, **fields: Any) -> dict[str, Any]:
        body = job_body(**fields)
        reply = self.call("POST", "/jobs", user=owner, body=body)
        assert reply.status == 201, reply.body
        return reply.body

    def apply(self, nanny: str, job_id: str, message: str | None = None) -> dict[str, Any]:
        body = {"message": message} if message else {}
        reply = self.call("POST", f"/jobs/{job_id}/applications", user=nanny, role="nanny", body=body)
        assert reply.status == 201, reply.body
        return reply.body

    def book(self, owner: str, job_id: str, application_id: str) -> Reply:
        return self.call("POST", f"/jobs/{job_id}/book", user=owner, body={"applicationId": application_id})

    def applications(self, owner: str, job_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = None
        while True:
            path = f"/jobs/{job_id}/applications?limit=100" + (f"&nextToken={token}" if token else "")
            reply = self.call("GET", path, user=owner)
            assert reply.status == 200, reply.body
            items.extend(reply.body["items"])
            token = reply.body["nextToken"]
            if not token:
                return items


@pytest.fixture
def client(aws: Aws) -> Iterator[Client]:
    # A stage with no config of its own: the app reads the environment set up above.
    with Client(app, stage_name="test") as test_client:
        yield test_client


@pytest.fixture
def api(client: Client, make_token: TokenFactory) -> Api:
    return Api(client, make_token)


def sqs_event(messages: list[dict[str, Any]], queue_arn: str = "arn:aws:sqs:us-east-1:123456789012:q") -> dict:
    """A Lambda SQS event with each record's own messageId (Chalice's generator reuses one)."""
    return {
        "Records": [
            {
                "messageId": m.get("MessageId", f"msg-{i}"),
                "receiptHandle": m.get("ReceiptHandle", f"rh-{i}"),
                "body": m["Body"],
                "attributes": {
                    "ApproximateReceiveCount": m.get("Attributes", {}).get("ApproximateReceiveCount", "1"),
                    "SentTimestamp": "1700000000000",
                    "SenderId": "AIDTEST",
                    "ApproximateFirstReceiveTimestamp": "1700000000001",
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for i, m in enumerate(messages)
        ]
    }


def run_worker(client: Client, aws: Aws) -> int:
    """Feeds every queued decline to the SQS handler, 10 at a time, as Lambda would."""
    handled = 0
    while True:
        messages = aws.receive_all()
        if not messages:
            return handled
        for i in range(0, len(messages), 10):
            batch = messages[i : i + 10]
            result = client.lambda_.invoke("decline_worker", sqs_event(batch)).payload
            failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
            entries = [
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                for n, m in enumerate(batch)
                if m["MessageId"] not in failed
            ]
            if entries:
                aws.sqs.delete_message_batch(QueueUrl=aws.queue_url, Entries=entries)
            handled += len(entries)
