"""AWS on two backends (moto, MiniStack), the app behind Chalice's test client, and a way to run the worker."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from chalice.test import Client
from moto import mock_aws

from app import app
from tests.conftest import TokenFactory
from tests.integration.key_filters import key_filter_violation, template_keys
from tests.payloads import job_body as job_body  # the tests import it from here
from tools import resources
from tools.local import ministack
from tools.local.stream import StreamPoller


@dataclass
class SentQueries:
    """Every Query sent through the default boto3 session, and what DynamoDB would refuse of them."""

    seen: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def inspect(self, params: dict[str, Any], **_: Any) -> None:
        self.seen.append(dict(params))
        problem = key_filter_violation(params, template_keys())
        if problem:
            self.refused.append(problem)


@contextlib.contextmanager
def no_key_filters() -> Iterator[SentQueries]:
    """Fails the test if the code sent a Query DynamoDB would refuse for filtering on a key attribute.

    The hook goes on the default session (which ``mock_aws`` replaces: enter it first)
    before any client exists; the app's clients come from ``boto3.client`` and copy it.
    Scans may filter on keys, so only queries are looked at.
    """
    boto3.setup_default_session()
    sent = SentQueries()
    boto3.DEFAULT_SESSION.events.register("provide-client-params.dynamodb.Query", sent.inspect)
    yield sent
    assert not sent.refused, "DynamoDB would refuse:\n" + "\n".join(sent.refused)


@dataclass
class Aws:
    dynamodb: Any
    sqs: Any
    outputs: dict[str, Any]
    queries: SentQueries = field(default_factory=SentQueries)
    streams: Any = None
    events: Any = None
    sesv2: Any = None
    backend: str = "moto"

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

    def queue_depth(self, *, delayed: bool = False) -> int:
        """Messages visible or in flight; with ``delayed``, also those not yet visible (a sweep)."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        if delayed:
            names.append("ApproximateNumberOfMessagesDelayed")
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)["Attributes"]
        return sum(int(attrs.get(name, 0)) for name in names)

    def snapshot(self) -> tuple[list[str], int]:
        """Everything a rejected request must leave unchanged: items and every queued message."""
        return sorted(json.dumps(i, sort_keys=True) for i in self.items()), self.queue_depth(delayed=True)

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
def ministack_endpoint() -> Iterator[str]:
    """MiniStack (DynamoDB and its streams, SQS, EventBridge, SES), nothing kept, for the whole session."""
    state_dir = Path(tempfile.mkdtemp(prefix="integration-ministack-"))
    emulator = ministack.start(state_dir=state_dir, services=("dynamodb", "dynamodbstreams", "sqs", "events", "ses"))
    try:
        yield emulator.endpoint
    finally:
        emulator.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


# Every test runs on moto and again on MiniStack, DynamoDB and SQS both: one contract,
# two implementations, each with its own gaps (moto's transactions race, MiniStack keeps
# state across calls as the local stack does). Neither refuses a filter on a key
# attribute as DynamoDB does: `no_key_filters` checks that for both.
@pytest.fixture(params=["moto", "ministack"])
def aws(request: pytest.FixtureRequest, app_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    with emulated_aws(request.param, request, monkeypatch) as emulated:
        yield emulated


@contextlib.contextmanager
def emulated_aws(backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """The project's resources on moto or MiniStack (``backend``), for one test; needs ``app_env``."""
    stage = "test"
    if backend == "ministack":
        endpoint = request.getfixturevalue("ministack_endpoint")
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", endpoint)  # mock_aws lets these calls through
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", endpoint)
        for service in ("DYNAMODB_STREAMS", "EVENTBRIDGE", "SESV2"):
            monkeypatch.setenv(f"AWS_ENDPOINT_URL_{service}", endpoint)
        stage = f"test-{uuid.uuid4().hex[:12]}"  # a table and queues of its own, in a shared emulator
        monkeypatch.setenv("TABLE_NAME", f"booking-{stage}")
        monkeypatch.setenv("DECLINES_QUEUE_NAME", f"booking-declines-{stage}")
    with mock_aws(), no_key_filters() as queries:
        dynamodb = boto3.client("dynamodb")
        sqs = boto3.client("sqs")
        events = boto3.client("events")
        sesv2 = boto3.client("sesv2")
        outputs = resources.apply(dynamodb, sqs, stage=stage, events=events, sesv2=sesv2)
        monkeypatch.setenv("EVENT_BUS_NAME", outputs["EventBusName"])
        monkeypatch.setenv("MAIL_SENDER", outputs["MailSender"])
        yield Aws(
            dynamodb=dynamodb,
            sqs=sqs,
            outputs=outputs,
            queries=queries,
            streams=streams_client(backend),
            events=events,
            sesv2=sesv2,
            backend=backend,
        )
        if backend == "ministack":
            dynamodb.delete_table(TableName=outputs["TableName"])
            for name, url in outputs.items():
                if name.endswith("QueueUrl"):
                    sqs.delete_queue(QueueUrl=url)
            events.remove_targets(
                Rule=f"booking-notifications-{stage}", EventBusName=outputs["EventBusName"], Ids=["notifications"]
            )
            events.delete_rule(Name=f"booking-notifications-{stage}", EventBusName=outputs["EventBusName"])
            events.delete_event_bus(Name=outputs["EventBusName"])


def streams_client(backend: str) -> Any:
    if backend == "moto":
        # moto 5.2.5 matches the streams endpoint only with its trailing slash, which botocore
        # 1.44 no longer sends: DescribeStream answers 404 "Not yet implemented" without it.
        return boto3.client("dynamodbstreams", endpoint_url="https://streams.dynamodb.us-east-1.amazonaws.com/")
    return boto3.client("dynamodbstreams")


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


def stream_poller(client: Client, aws: Aws, **options: Any) -> StreamPoller:
    """The table's stream fed to the stream function as Lambda would (no pause between retries)."""

    def handler(event: dict[str, Any], _context: Any) -> Any:
        reply = client.lambda_.invoke("table_stream", event)
        if reply.payload and isinstance(reply.payload, dict) and reply.payload.get("errorType"):
            raise RuntimeError(f"{reply.payload['errorType']}: {reply.payload.get('errorMessage')}")
        return reply.payload

    return StreamPoller(
        aws.streams,
        aws.outputs["TableStreamArn"],
        options.pop("handler", handler),
        function_name="table_stream",
        sleep=lambda _s: None,
        **options,
    )


@pytest.fixture
def stream(client: Client, aws: Aws) -> StreamPoller:
    """The test's reader of the table's stream: ``stream.drain()`` handles what was written so far."""
    return stream_poller(client, aws)


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
