"""Each function's IAM policy file allows exactly the AWS calls its code makes.

The app runs on moto behind Chalice's test client with the real wiring
(``chalicelib.bootstrap``); a botocore hook on boto3's default session records every
API call with the parameters it was made with, attributed to the function that was
running. ``tools.deploy.iam_check`` maps the calls to IAM actions and ARNs, adds what Lambda
does with the role (logs, X-Ray, the worker's SQS polling), and compares with the
policy of every deployable stage, in both directions.
"""

from __future__ import annotations

import copy
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS as powertools_providers
from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider
from chalice.test import Client
from moto import mock_aws

from app import app, token_authorizer
from chalicelib import bootstrap
from chalicelib.declines import DeclineApplication
from chalicelib.domain import new_id
from chalicelib.page_token_keys import parameter_name
from chalicelib.store import DynamoStore
from tests.conftest import AUDIENCE, ISSUER
from tools import resources
from tools.deploy import iam_check
from tools.deploy.iam_check import Call, Need
from tools.deploy.settings import (
    FUNCTIONS,
    MAIL_FUNCTION,
    SCHEDULER_FUNCTION,
    STREAM_FUNCTION,
    WORKER_FUNCTION,
    function_name,
)
from tools.local.stream import StreamPoller
from tools.shared import chalice_config, stage_environment

STAGES = ("dev", "prod")
# Not moto's defaults: the policies must not depend on a region or an account.
REGION, ACCOUNT = "eu-west-1", "111122223333"
TEST_TABLE, TEST_QUEUE, TEST_DLQ = "booking-test", "booking-declines-test", "booking-declines-dlq-test"
TEST_BUS, TEST_SENDER = "booking-test", "booking-test@example.com"
TEST_PARAMETER = parameter_name("test")


class Recorder:
    """Records API calls, with parameters, while a function label is set."""

    def __init__(self) -> None:
        self.label: str | None = None
        self.calls: dict[str, list[Call]] = defaultdict(list)
        self.invocations: Counter[str] = Counter()

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.label is not None:
            self.calls[self.label].append(Call(model.service_model.service_name, model.name, copy.deepcopy(params)))

    @contextmanager
    def running(self, label: str) -> Iterator[None]:
        previous, self.label = self.label, label
        self.invocations[label] += 1
        try:
            yield
        finally:
            self.label = previous

    def operations(self, label: str) -> set[str]:
        return {f"{c.service}.{c.operation}" for c in self.calls[label]}


class LaggingIndexStore(DynamoStore):
    """The jobApplications index has not caught up with the job's applications yet (GSIs are eventually consistent)."""

    def indexed_application_ids(self, job_id: str) -> list[str]:
        return []


def _sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{TEST_QUEUE}",
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


@pytest.fixture(scope="module")
def recorder(jwks: dict[str, Any], make_token: Any) -> Iterator[Recorder]:
    """Runs every code path of the three functions once, recording their AWS calls."""
    rec = Recorder()
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SQS", "AWS_PROFILE"):
            mp.delenv(name, raising=False)
        env = {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "TABLE_NAME": TEST_TABLE,
            "DECLINES_QUEUE_NAME": TEST_QUEUE,
            "DECLINES_PARTIAL_BATCH_RESPONSES": "true",
            "AUTH_ISSUER": ISSUER,
            "AUTH_AUDIENCE": AUDIENCE,
            "AUTH_JWKS": json.dumps(jwks),
            "ENQUEUE_BACKOFF_MS": "1",
            "SWEEP_DELAY_SECONDS": "0",  # the worker loop below receives each booking's sweep
            # As on a deployed stage: the page-token key from SSM, not from the environment.
            "PAGE_TOKEN_SECRET_PARAMETER": TEST_PARAMETER,
            "PAGE_TOKEN_SECRET": "",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "EVENT_BUS_NAME": TEST_BUS,
            "STREAM_PARTIAL_BATCH_RESPONSES": "true",
            "MAIL_SENDER": TEST_SENDER,
        }
        for name, value in env.items():
            mp.setenv(name, value)
        with mock_aws():
            # The test's own clients come from a separate session and are never recorded.
            harness = boto3.session.Session(region_name="us-east-1")
            ddb, sqs = harness.client("dynamodb"), harness.client("sqs")
            outputs = resources.apply(
                ddb, sqs, stage="test", events=harness.client("events"), sesv2=harness.client("sesv2")
            )
            harness.client("ssm").put_parameter(Name=TEST_PARAMETER, Value="s" * 64, Type="SecureString")
            # Every client the app creates from here on carries the hook.
            boto3.setup_default_session(region_name="us-east-1")
            boto3.DEFAULT_SESSION.events.register("before-parameter-build.*.*", rec)
            # powertools Parameters makes its own session: give it a client of the recorded one.
            powertools_providers["ssm"] = SSMProvider(boto3_client=boto3.client("ssm"))
            bootstrap.reset()
            # The authorizer runs inside each HTTP request: label its calls separately.
            real_authorizer = token_authorizer.func

            def labelled_authorizer(auth_request: Any) -> Any:
                with rec.running("token_authorizer"):
                    return real_authorizer(auth_request)

            mp.setattr(token_authorizer, "func", labelled_authorizer)
            try:
                _exercise(rec, Client(app, stage_name="iam-test"), make_token, sqs, outputs, harness)
            finally:
                bootstrap.reset()
                powertools_providers.pop("ssm", None)
                boto3.DEFAULT_SESSION = None
    yield rec


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _exercise(rec: Recorder, client: Client, make_token: Any, sqs: Any, outputs: dict, harness: Any) -> None:
    def call(method: str, path: str, user: str | None, groups: list[str], body: Any = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if user:
            headers["Authorization"] = f"Bearer {make_token(user, groups)}"
        with rec.running("api_handler"):
            resp = getattr(client.http, method.lower())(
                path, headers=headers, body=json.dumps(body) if body is not None else None
            )
        return resp.status_code, json.loads(resp.body) if resp.body else None

    parent, nanny = ["parents"], ["nannies"]
    start = datetime.now(UTC) + timedelta(days=2)
    job = {"title": "Friday night", "startsAt": _iso(start), "endsAt": _iso(start + timedelta(hours=5))}

    # Authorizer only: no token, a bad token.
    assert call("GET", "/jobs", None, parent)[0] == 401
    status, _ = call("GET", "/jobs", "mallory", [])
    assert status in (401, 403)

    # A job, twelve applications (the declines need two SendMessageBatch calls), one duplicate.
    status, created = call("POST", "/jobs", "alice", parent, job)
    assert status == 201, created
    job_id = created["jobId"]
    apps = []
    for i in range(12):
        status, body = call("POST", f"/jobs/{job_id}/applications", f"nanny{i}", nanny, {"message": "hi"})
        assert status == 201, body
        apps.append(body["applicationId"])
    assert call("POST", f"/jobs/{job_id}/applications", "nanny0", nanny, {})[0] == 409

    # Every read, with a second page where there is one.
    status, page = call("GET", "/jobs?limit=1", "nanny0", nanny)
    assert status == 200 and page["items"]
    call("POST", "/jobs", "carol", parent, job)
    status, page = call("GET", "/jobs?limit=1", "nanny0", nanny)
    assert status == 200 and page["nextToken"]
    assert call("GET", f"/jobs?limit=1&nextToken={page['nextToken']}", "nanny0", nanny)[0] == 200
    assert call("GET", f"/jobs/{job_id}", "nanny0", nanny)[0] == 200
    status, page = call("GET", f"/jobs/{job_id}/applications?limit=5", "alice", parent)
    assert status == 200 and page["nextToken"]
    assert call("GET", f"/jobs/{job_id}/applications?limit=5&nextToken={page['nextToken']}", "alice", parent)[0] == 200
    assert call("GET", "/me/jobs", "alice", parent)[0] == 200
    assert call("GET", "/me/applications", "nanny0", nanny)[0] == 200

    # Booking: refusals first, then the booking, then its replay.
    assert call("POST", f"/jobs/{job_id}/book", "bob", parent, {"applicationId": apps[0]})[0] in (403, 404)
    assert call("POST", f"/jobs/{job_id}/book", "alice", parent, {"applicationId": new_id()})[0] == 404
    status, booked = call("POST", f"/jobs/{job_id}/book", "alice", parent, {"applicationId": apps[0]})
    assert status == 200 and booked["declinesQueued"] == 11, booked
    assert call("POST", f"/jobs/{job_id}/book", "alice", parent, {"applicationId": apps[0]})[0] == 200
    assert call("POST", f"/jobs/{job_id}/book", "alice", parent, {"applicationId": apps[1]})[0] == 409
    assert call("POST", f"/jobs/{job_id}/applications", "nanny99", nanny, {})[0] == 409

    # A booking whose index read has not caught up: the sweep declines what it missed.
    _, lagging_job = call("POST", "/jobs", "alice", parent, job)
    _, lagging_app = call("POST", f"/jobs/{lagging_job['jobId']}/applications", "nanny50", nanny, {})
    bootstrap.reset()
    bootstrap.override(store=LaggingIndexStore(bootstrap.dynamodb_client(), TEST_TABLE))
    status, body = call(
        "POST", f"/jobs/{lagging_job['jobId']}/book", "alice", parent, {"applicationId": lagging_app["applicationId"]}
    )
    assert status == 200, body
    bootstrap.reset()

    # The worker: everything queued (declines twice over, from the replay, and three
    # sweeps), plus an accepted application, an unknown one, a malformed message and
    # one of a version it does not know (parked in the DLQ).
    queue_url = outputs["DeclinesQueueUrl"]
    for body in (
        DeclineApplication(job_id, apps[0]).to_json(),
        DeclineApplication(job_id, new_id()).to_json(),
        "not json",
        json.dumps({"v": 2, "kind": "DeclineApplication", "jobId": job_id, "applicationId": apps[1]}),
    ):
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    handled = 0
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages")
        if not messages:
            break
        with rec.running(WORKER_FUNCTION):
            result = client.lambda_.invoke(WORKER_FUNCTION, _sqs_event(messages)).payload
        handled += len(messages) - len(result["batchItemFailures"])
        for m in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    assert handled == 11 + 11 + 3 + 2 + 1
    statuses = {
        item["applicationId"]["S"]: item["status"]["S"]
        for item in harness.client("dynamodb").scan(TableName=TEST_TABLE)["Items"]
        if item["type"]["S"] == "APPLICATION" and item["jobId"]["S"] == job_id
    }
    assert statuses == {apps[0]: "ACCEPTED", **dict.fromkeys(apps[1:], "DECLINED")}

    # The rest of a job's life: reading one application, withdrawing it, cancelling the job (and again).
    _, other = call("POST", "/jobs", "alice", parent, job)
    other_id = other["jobId"]
    _, kept = call("POST", f"/jobs/{other_id}/applications", "nanny1", nanny, {})
    _, leaving = call("POST", f"/jobs/{other_id}/applications", "nanny2", nanny, {})
    assert call("GET", f"/jobs/{other_id}/applications/{kept['applicationId']}", "alice", parent)[0] == 200
    assert call("GET", f"/jobs/{other_id}/applications/{kept['applicationId']}", "nanny2", nanny)[0] == 403
    withdraw = f"/jobs/{other_id}/applications/{leaving['applicationId']}/withdraw"
    assert call("POST", withdraw, "nanny2", nanny, {})[0] == 200
    assert call("POST", withdraw, "nanny1", nanny, {})[0] == 403
    assert call("POST", f"/jobs/{other_id}/cancel", "alice", parent, {"reason": "plans changed"})[0] == 200
    assert call("POST", f"/jobs/{other_id}/cancel", "alice", parent, {})[0] == 200
    assert call("POST", f"/jobs/{other_id}/cancel", "bob", parent, {})[0] == 403

    # After a booking: the booked nanny backs out, another is booked, the parent cancels the booking.
    later = {**job, "startsAt": _iso(start + timedelta(days=1)), "endsAt": _iso(start + timedelta(days=1, hours=2))}
    _, third = call("POST", "/jobs", "alice", parent, later)
    third_id = third["jobId"]
    _, first = call("POST", f"/jobs/{third_id}/applications", "nanny3", nanny, {})
    _, second = call("POST", f"/jobs/{third_id}/applications", "nanny4", nanny, {})
    assert call("POST", f"/jobs/{third_id}/book", "alice", parent, {"applicationId": first["applicationId"]})[0] == 200
    backing_out = f"/jobs/{third_id}/applications/{first['applicationId']}/withdraw"
    assert call("POST", backing_out, "nanny3", nanny, {})[0] == 200
    assert call("POST", f"/jobs/{third_id}/book", "alice", parent, {"applicationId": second["applicationId"]})[0] == 200
    assert call("POST", f"/jobs/{third_id}/cancel", "alice", parent, {})[0] == 200

    # The scheduled settling: one open job past its start expires, one booked job past its end completes.
    _, due_open = call("POST", "/jobs", "alice", parent, job)
    call("POST", f"/jobs/{due_open['jobId']}/applications", "nanny5", nanny, {})
    _, due_booked = call("POST", "/jobs", "alice", parent, later)
    _, booked_app = call("POST", f"/jobs/{due_booked['jobId']}/applications", "nanny6", nanny, {})
    body = {"applicationId": booked_app["applicationId"]}
    assert call("POST", f"/jobs/{due_booked['jobId']}/book", "alice", parent, body)[0] == 200
    past = _iso(datetime.now(UTC) - timedelta(minutes=5))
    for job_id_due in (due_open["jobId"], due_booked["jobId"]):
        harness.client("dynamodb").update_item(
            TableName=TEST_TABLE,
            Key={"PK": {"S": f"JOB#{job_id_due}"}, "SK": {"S": "JOB"}},
            UpdateExpression="SET startsAt = :past, endsAt = :past, GSI4SK = :past",
            ExpressionAttributeValues={":past": {"S": past}},
        )
    event = client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=[], region="us-east-1"
    )
    bootstrap.reset()  # a container of its own: it looks the queue up itself
    with rec.running(SCHEDULER_FUNCTION):
        settled = client.lambda_.invoke(SCHEDULER_FUNCTION, event).payload
    assert settled == {"expired": 1, "completed": 1, "failed": 0}, settled

    _exercise_stream_and_mail(rec, client, sqs, outputs, harness)


def _run_sqs_function(rec: Recorder, client: Client, sqs: Any, queue_url: str, function: str) -> int:
    handled = 0
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages")
        if not messages:
            return handled
        with rec.running(function):
            result = client.lambda_.invoke(function, _sqs_event(messages)).payload
        failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
        for m in messages:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
        handled += len(messages) - len(failed)


def _exercise_stream_and_mail(rec: Recorder, client: Client, sqs: Any, outputs: dict, harness: Any) -> None:
    """The stream function on every record so far (events, sweeps), the sweeps, then the mailer,
    whose first send fails once (it gives its receipt back) and whose redeliveries send nothing."""

    bootstrap.reset()  # each function has containers of its own: nothing looked up by another

    def stream_handler(event: dict[str, Any], _context: Any) -> Any:
        with rec.running(STREAM_FUNCTION):
            return client.lambda_.invoke(STREAM_FUNCTION, event).payload

    # moto matches the streams endpoint only with its trailing slash (tests/integration/conftest.py).
    streams = harness.client("dynamodbstreams", endpoint_url="https://streams.dynamodb.us-east-1.amazonaws.com/")
    outcome = StreamPoller(
        streams, outputs["TableStreamArn"], stream_handler, function_name=STREAM_FUNCTION, sleep=lambda _: None
    ).drain()
    assert outcome.records > 0 and outcome.failed == 0, outcome.errors
    _run_sqs_function(rec, client, sqs, outputs["DeclinesQueueUrl"], WORKER_FUNCTION)

    bootstrap.reset()
    ses = bootstrap.mailer()._sender._ses
    failures = [0]

    def fail_first_send(model: Any, **_: Any) -> Any:
        if model.name == "SendEmail" and failures[0] == 0:
            failures[0] += 1
            return (type("R", (), {"status_code": 500, "headers": {}})(), {"Error": {"Code": "InternalFailure"}})
        return None

    ses.meta.events.register("before-call.sesv2.SendEmail", fail_first_send)
    batch_reads = [0]

    def fail_first_batch_read(model: Any, **_: Any) -> Any:  # its emails then read their own items
        batch_reads[0] += 1
        if batch_reads[0] == 1:
            return (type("R", (), {"status_code": 400, "headers": {}})(), {"Error": {"Code": "ValidationException"}})
        return None

    bootstrap.dynamodb_client().meta.events.register("before-call.dynamodb.BatchGetItem", fail_first_batch_read)
    url = outputs["NotificationsQueueUrl"]
    notices = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        notices += batch
    for body in {m["Body"] for m in notices}:  # every event twice: the second finds its receipt
        sqs.send_message(QueueUrl=url, MessageBody=body)
        sqs.send_message(QueueUrl=url, MessageBody=body)
    sent = _run_sqs_function(rec, client, sqs, url, MAIL_FUNCTION)
    assert failures[0] == 1 and batch_reads[0] > 1 and sent > 0


def _needs(rec: Recorder, stage: str, function: str) -> list[Need]:
    env = stage_environment(stage)
    rename = {
        TEST_TABLE: env["TABLE_NAME"],
        TEST_QUEUE: env["DECLINES_QUEUE_NAME"],
        TEST_DLQ: env["DECLINES_QUEUE_NAME"].replace("booking-declines-", "booking-declines-dlq-"),
        TEST_PARAMETER: parameter_name(stage),
    }
    rename[TEST_BUS] = env["EVENT_BUS_NAME"]
    rename[TEST_SENDER] = env["MAIL_SENDER"]
    cfg = chalice_config(stage, function)
    needs = [n for c in rec.calls[function] for n in iam_check.needs_for_call(c, REGION, ACCOUNT, rename)]
    polled = {WORKER_FUNCTION: env["DECLINES_QUEUE_NAME"], MAIL_FUNCTION: env["NOTIFICATIONS_QUEUE_NAME"]}
    needs += iam_check.runtime_needs(
        function_name(cfg.app_name, stage, function),
        REGION,
        ACCOUNT,
        xray=bool(cfg.xray_enabled),
        polled_queue=polled.get(function),
        polled_stream_table=env["TABLE_NAME"] if function == STREAM_FUNCTION else None,
        on_failure_queue=f"booking-stream-failures-{stage}" if function == STREAM_FUNCTION else None,
    )
    return needs


# ------------------------------------------------------------------ the check


def test_every_code_path_was_exercised(recorder: Recorder) -> None:
    # The authorizer ran for every request with a token, under its own label.
    assert recorder.invocations["token_authorizer"] >= recorder.invocations["api_handler"] - 1 > 30
    assert recorder.invocations[WORKER_FUNCTION] >= 3
    assert recorder.operations("api_handler") == {
        "dynamodb.Query",
        "dynamodb.UpdateItem",
        "dynamodb.GetItem",
        "dynamodb.TransactGetItems",
        "dynamodb.TransactWriteItems",
        "sqs.GetQueueUrl",
        "sqs.SendMessageBatch",
        "ssm.GetParameter",
    }
    # The page-token key is read once per container (bootstrap.reset starts a new one).
    reads = [c for c in recorder.calls["api_handler"] if c.operation == "GetParameter"]
    assert {(c.params["Name"], c.params["WithDecryption"]) for c in reads} == {(TEST_PARAMETER, True)}
    assert len(reads) <= 3
    # No GetItem: a refused decline returns the old item (ALL_OLD), none if it does not exist.
    # Query: a booking's sweep reads the job's partition; sqs.*: a message of an unknown
    # version is parked in the DLQ the queue's RedrivePolicy names.
    assert recorder.operations(WORKER_FUNCTION) == {
        "dynamodb.UpdateItem",
        "dynamodb.Query",
        "sqs.GetQueueUrl",
        "sqs.GetQueueAttributes",
        "sqs.SendMessage",
    }
    assert recorder.operations(SCHEDULER_FUNCTION) == {
        "dynamodb.Query",
        "dynamodb.GetItem",
        "dynamodb.TransactWriteItems",
        "dynamodb.UpdateItem",
        "sqs.GetQueueUrl",
        "sqs.SendMessageBatch",
    }
    assert recorder.operations("token_authorizer") == set()
    # The stream: the job's owner for application events, the bus, the sweep.
    assert recorder.operations(STREAM_FUNCTION) == {
        "dynamodb.GetItem",
        "events.PutEvents",
        "sqs.GetQueueUrl",
        "sqs.SendMessageBatch",
    }
    # The mailer: a batch's jobs and applications read at once (or each email's, when that
    # read failed), its receipt claimed, marked, given back once.
    assert recorder.operations(MAIL_FUNCTION) == {
        "dynamodb.BatchGetItem",
        "dynamodb.GetItem",
        "dynamodb.PutItem",
        "dynamodb.UpdateItem",
        "dynamodb.DeleteItem",
        "sesv2.SendEmail",
    }
    transact = {
        kind
        for c in recorder.calls["api_handler"]
        if c.operation == "TransactWriteItems"
        for i in c.params["TransactItems"]
        for kind in i
    }
    assert transact == {"ConditionCheck", "Put", "Update", "Delete"}
    indexes = {c.params.get("IndexName") for c in recorder.calls["api_handler"] if c.operation == "Query"}
    assert indexes == {None, "jobApplications", "applicantApplications", "openJobs"}


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("function", FUNCTIONS)
def test_policy_allows_exactly_what_the_function_does(recorder: Recorder, stage: str, function: str) -> None:
    path, policy = iam_check.function_policy(stage, function)

    report = iam_check.compare(policy, _needs(recorder, stage, function))

    assert report.ok, f"{path.name}:\n{report}"


def test_every_deployable_function_has_its_own_policy_file() -> None:
    files = set()
    for stage in STAGES:
        for function in FUNCTIONS:
            cfg = chalice_config(stage, function)
            assert cfg.autogen_policy is False
            path, _ = iam_check.function_policy(stage, function)
            files.add(path.name)
    assert len(files) == len(STAGES) * len(FUNCTIONS)


# ----------------------------------------------- the check can fail, and says why


def _edited(stage: str, function: str, edit: Any) -> dict[str, Any]:
    _, policy = iam_check.function_policy(stage, function)
    policy = copy.deepcopy(policy)
    edit({st["Sid"]: st for st in policy["Statement"]}, policy)
    return policy


def test_a_missing_transaction_item_action_is_reported(recorder: Recorder) -> None:
    def drop(st: dict, _: dict) -> None:
        st["BookingTable"]["Action"].remove("dynamodb:ConditionCheckItem")

    report = iam_check.compare(_edited("dev", "api_handler", drop), _needs(recorder, "dev", "api_handler"))

    assert [str(n) for n in report.missing] == [
        f"dynamodb:ConditionCheckItem on arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/booking-dev"
    ]


def test_a_query_on_an_index_needs_the_index_arn(recorder: Recorder) -> None:
    def drop(st: dict, policy: dict) -> None:
        policy["Statement"].remove(st["BookingTableIndexes"])

    report = iam_check.compare(_edited("prod", "api_handler", drop), _needs(recorder, "prod", "api_handler"))

    assert {n.resource.rsplit("/", 1)[-1] for n in report.missing} == {
        "jobApplications",
        "applicantApplications",
        "openJobs",
    }


def test_a_write_the_code_never_makes_is_reported(recorder: Recorder) -> None:
    def add(st: dict, _: dict) -> None:
        st["DeclineApplications"]["Action"].append("dynamodb:DeleteItem")

    report = iam_check.compare(_edited("dev", WORKER_FUNCTION, add), _needs(recorder, "dev", WORKER_FUNCTION))

    assert report.unused == [("dynamodb:DeleteItem", "arn:aws:dynamodb:*:*:table/booking-dev")]


def test_the_worker_needs_every_polling_action(recorder: Recorder) -> None:
    def drop(st: dict, _: dict) -> None:
        st["PollDeclines"]["Action"].remove("sqs:ChangeMessageVisibility")

    report = iam_check.compare(_edited("dev", WORKER_FUNCTION, drop), _needs(recorder, "dev", WORKER_FUNCTION))

    assert [n.action for n in report.missing] == ["sqs:ChangeMessageVisibility"]


def test_the_other_stage_s_table_does_not_count(recorder: Recorder) -> None:
    def swap(st: dict, _: dict) -> None:
        st["BookingTable"]["Resource"] = ["arn:aws:dynamodb:*:*:table/booking-prod"]

    report = iam_check.compare(_edited("dev", "api_handler", swap), _needs(recorder, "dev", "api_handler"))

    assert report.missing and report.unused


def test_wildcards_are_reported(recorder: Recorder) -> None:
    def widen(st: dict, _: dict) -> None:
        st["DeclineApplications"]["Action"] = ["dynamodb:*"]
        st["PollDeclines"]["Resource"] = "*"

    report = iam_check.compare(_edited("dev", WORKER_FUNCTION, widen), _needs(recorder, "dev", WORKER_FUNCTION))

    assert "action dynamodb:* (DeclineApplications)" in report.broad
    assert "sqs:ReceiveMessage on * (PollDeclines)" in report.broad


def test_the_authorizer_may_not_read_the_table(recorder: Recorder) -> None:
    def add(_: dict, policy: dict) -> None:
        policy["Statement"].append(
            {"Effect": "Allow", "Action": ["dynamodb:GetItem"], "Resource": ["arn:aws:dynamodb:*:*:table/booking-dev"]}
        )

    report = iam_check.compare(_edited("dev", "token_authorizer", add), _needs(recorder, "dev", "token_authorizer"))

    assert report.unused == [("dynamodb:GetItem", "arn:aws:dynamodb:*:*:table/booking-dev")]


# ----------------------------------------------------------- the mapping itself


def test_transactions_need_the_action_of_each_item() -> None:
    call = Call(
        "dynamodb",
        "TransactWriteItems",
        {
            "TransactItems": [
                {"ConditionCheck": {"TableName": "t"}},
                {"Put": {"TableName": "t"}},
                {"Update": {"TableName": "u"}},
                {"Delete": {"TableName": "u"}},
            ]
        },
    )
    assert [str(n) for n in iam_check.needs_for_call(call, "r", "1")] == [
        "dynamodb:ConditionCheckItem on arn:aws:dynamodb:r:1:table/t",
        "dynamodb:PutItem on arn:aws:dynamodb:r:1:table/t",
        "dynamodb:UpdateItem on arn:aws:dynamodb:r:1:table/u",
        "dynamodb:DeleteItem on arn:aws:dynamodb:r:1:table/u",
    ]


def test_batch_sends_need_send_message_on_the_queue() -> None:
    call = Call("sqs", "SendMessageBatch", {"QueueUrl": "https://sqs.r.amazonaws.com/1/q", "Entries": []})
    assert iam_check.needs_for_call(call, "r", "1") == [Need("sqs:SendMessage", "arn:aws:sqs:r:1:q")]


def test_an_operation_without_a_mapping_fails_loudly() -> None:
    with pytest.raises(iam_check.UnmappedOperation, match=r"dynamodb\.ExecuteStatement"):
        iam_check.needs_for_call(Call("dynamodb", "ExecuteStatement", {}), "r", "1")
