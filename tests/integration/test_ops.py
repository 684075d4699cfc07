"""tools.ops against moto: reconcile heals declines a booking left behind, redrive returns dead letters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from chalicelib import bootstrap
from chalicelib.declines import DeclineApplication, SqsDeclinePublisher
from chalicelib.domain import format_time, utc_now
from chalicelib.store import DynamoStore
from chalicelib.worker import handle_decline_batch
from tests.conftest import user_id
from tests.integration.conftest import Api, Aws, sqs_event
from tools import resources
from tools.ops import cli, redrive
from tools.ops.reconcile import reconcile

MISSING_QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue"


def _job_with_applicants(api: Api, owner: str, count: int) -> tuple[str, list[str]]:
    job_id = api.create_job(owner)["jobId"]
    return job_id, [api.apply(f"nanny{i}", job_id)["applicationId"] for i in range(count)]


def _statuses(api: Api, owner: str, job_id: str) -> dict[str, str]:
    return {a["applicationId"]: a["status"] for a in api.applications(owner, job_id)}


def _work_off_queue(aws: Aws) -> int:
    """Runs every queued message through the worker's record handling, as Lambda would."""
    handled = 0
    while messages := aws.receive_all():
        for i in range(0, len(messages), 10):
            batch = messages[i : i + 10]
            result = handle_decline_batch(sqs_event(batch), None, bootstrap.service(), partial_responses=True)
            assert result == {"batchItemFailures": []}
            aws.sqs.delete_message_batch(
                QueueUrl=aws.queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(batch)],
            )
            handled += len(batch)
    return handled


def _queued(aws: Aws, queue_url: str | None = None) -> list[dict[str, Any]]:
    """Peeks at every message (received and made visible again)."""
    url = queue_url or aws.queue_url
    seen: list[dict[str, Any]] = []
    while True:
        batch = aws.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30, WaitTimeSeconds=0
        ).get("Messages")
        if not batch:
            break
        seen.extend(batch)
    for m in seen:
        aws.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    return [json.loads(m["Body"]) for m in seen]


def _unreachable_publisher(aws: Aws) -> SqsDeclinePublisher:
    return SqsDeclinePublisher(aws.sqs, lambda: MISSING_QUEUE, max_attempts=2, backoff_seconds=0, sleep=lambda _: None)


# ----------------------------------------------------------------- reconcile


def test_reconcile_heals_a_booking_that_committed_but_queued_nothing(api: Api, aws: Aws) -> None:
    # Given a booking whose transaction committed, then the process died before publishing
    job_id, (chosen, *others) = _job_with_applicants(api, "alice", 3)
    assert not bootstrap.store().close_job_and_accept(user_id("alice"), job_id, chosen, format_time(utc_now())).replayed
    assert aws.queue_depth() == 0

    # When reconcile runs
    report = reconcile(bootstrap.store(), bootstrap.publisher(), out=lambda _: None)

    # Then it queued exactly the other applicants' declines, and the worker applies them
    assert (report.jobs_scanned, report.jobs_with_leftovers, report.jobs_healed) == (1, 1, 1)
    assert report.declines_queued == 2 and report.failures == []
    assert sorted(m["applicationId"] for m in _queued(aws)) == sorted(others)
    assert _work_off_queue(aws) == 2
    assert _statuses(api, "alice", job_id) == {chosen: "ACCEPTED", **dict.fromkeys(others, "DECLINED")}

    # And a second run finds nothing left to do
    again = reconcile(bootstrap.store(), bootstrap.publisher(), out=lambda _: None)
    assert (again.jobs_scanned, again.jobs_with_leftovers, again.declines_queued) == (1, 0, 0)


def test_reconcile_heals_an_expired_job_with_the_reason_of_its_state(api: Api, aws: Aws) -> None:
    # Given a job expired by a run that died before queuing its declines
    job_id, apps = _job_with_applicants(api, "alice", 2)
    starts = bootstrap.store().get_job(job_id).starts_at
    assert bootstrap.store().expire_job(job_id, starts) is True

    report = reconcile(bootstrap.store(), bootstrap.publisher(), out=lambda _: None)

    assert (report.jobs_scanned, report.jobs_healed, report.declines_queued) == (1, 1, 2)
    assert sorted((m["applicationId"], m["reason"]) for m in _queued(aws)) == sorted((a, "JOB_EXPIRED") for a in apps)


def test_reconcile_heals_a_booking_whose_declines_could_not_be_queued(api: Api, aws: Aws) -> None:
    job_id, (chosen, *others) = _job_with_applicants(api, "alice", 4)
    # The booking runs with an SQS queue it cannot reach: committed, declines not queued.
    bootstrap.reset()
    bootstrap.override(publisher=_unreachable_publisher(aws))
    reply = api.book("alice", job_id, chosen)
    assert reply.status == 503, reply.body
    assert api.call("GET", f"/jobs/{job_id}", user="alice").body["status"] == "CLOSED"
    bootstrap.reset()

    report = reconcile(bootstrap.store(), bootstrap.publisher(), out=lambda _: None)

    assert report.declines_queued == 3 and report.jobs_healed == 1
    _work_off_queue(aws)
    assert _statuses(api, "alice", job_id) == {chosen: "ACCEPTED", **dict.fromkeys(others, "DECLINED")}


def test_reconcile_leaves_open_jobs_and_finished_bookings_alone(api: Api, aws: Aws) -> None:
    open_job, _ = _job_with_applicants(api, "alice", 2)
    done_job, (chosen, *_) = _job_with_applicants(api, "bob", 2)
    assert api.book("bob", done_job, chosen).status == 200
    _work_off_queue(aws)
    before = aws.snapshot()

    report = reconcile(bootstrap.store(), bootstrap.publisher(), out=lambda _: None)

    assert (report.jobs_scanned, report.jobs_with_leftovers, report.declines_queued) == (1, 0, 0)
    assert aws.snapshot() == before
    assert set(_statuses(api, "alice", open_job).values()) == {"PENDING"}


def test_reconcile_dry_run_queues_nothing(api: Api, aws: Aws) -> None:
    job_id, (chosen, *_) = _job_with_applicants(api, "alice", 3)
    bootstrap.store().close_job_and_accept(user_id("alice"), job_id, chosen, format_time(utc_now()))
    lines: list[str] = []

    report = reconcile(bootstrap.store(), bootstrap.publisher(), dry_run=True, out=lines.append)

    assert report.jobs_with_leftovers == 1 and report.declines_queued == 0
    assert aws.queue_depth() == 0
    assert any("would queue 2 declines" in line for line in lines)


def test_reconcile_reports_declines_it_could_not_queue(api: Api, aws: Aws) -> None:
    job_id, (chosen, *_) = _job_with_applicants(api, "alice", 3)
    bootstrap.store().close_job_and_accept(user_id("alice"), job_id, chosen, format_time(utc_now()))

    report = reconcile(bootstrap.store(), _unreachable_publisher(aws), out=lambda _: None)

    assert report.jobs_healed == 0 and report.declines_queued == 0
    assert report.failures == [f"job {job_id}: 2 declines not queued"]


@pytest.fixture
def dev_stage(aws: Aws) -> Iterator[dict[str, Any]]:
    """The dev stage's table and queues (names from the template, as config.json expects)."""
    outputs = resources.apply(aws.dynamodb, aws.sqs, stage="dev")
    yield outputs
    # Gone with everything in them: on MiniStack the next test shares the emulator and these names.
    aws.dynamodb.delete_table(TableName=outputs["TableName"])
    for url in (outputs["DeclinesQueueUrl"], outputs["DeclinesDeadLetterQueueUrl"]):
        aws.sqs.delete_queue(QueueUrl=url)


def test_reconcile_command_uses_the_stage_names_from_config(
    api: Api, aws: Aws, dev_stage: dict[str, Any], capsys
) -> None:
    outputs = dev_stage
    # Data in the dev table, written through the app with its store pointed there.
    dev_store = DynamoStore(aws.dynamodb, outputs["TableName"])
    bootstrap.reset()
    bootstrap.override(store=dev_store)
    job_id, (chosen, *_) = _job_with_applicants(api, "alice", 3)
    dev_store.close_job_and_accept(user_id("alice"), job_id, chosen, format_time(utc_now()))

    assert cli.main(["reconcile", "--stage", "dev"]) == 0
    out = capsys.readouterr().out
    assert "table booking-dev -> queue booking-declines-dev" in out
    summary = "1 closed or cancelled jobs scanned, 1 with PENDING leftovers, 1 healed, 2 declines queued, 0 failures"
    assert summary in out
    assert len(_queued(aws, outputs["DeclinesQueueUrl"])) == 2

    # A queue that cannot be reached: the failure is reported and the exit status says so.
    assert cli.main(["reconcile", "--stage", "dev", "--queue", "no-such-queue"]) == 1
    assert "FAILED job" in capsys.readouterr().out


# ------------------------------------------------------------------- redrive


def _dead_letter(aws: Aws, bodies: list[str]) -> None:
    """Puts messages in the DLQ the way production does: received maxReceiveCount times, never deleted."""
    for body in bodies:
        aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body)
    for _ in range(10):
        aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=0)
        if aws.queue_depth() == 0:
            return
    raise AssertionError("messages did not reach the DLQ")


def _dlq_url(aws: Aws) -> str:
    return aws.outputs["DeclinesDeadLetterQueueUrl"]


def test_redrive_brings_dead_letters_back_and_the_worker_declines_them(api: Api, aws: Aws) -> None:
    # Given declines that failed five times (say, the table was throttled) and sit in the DLQ
    job_id, (chosen, *others) = _job_with_applicants(api, "alice", 4)
    bootstrap.store().close_job_and_accept(user_id("alice"), job_id, chosen, format_time(utc_now()))
    _dead_letter(aws, [DeclineApplication(job_id, a).to_json() for a in others])
    assert len(_queued(aws, _dlq_url(aws))) == 3

    # When redrive runs (moto has no StartMessageMoveTask: the copy fallback moves them)
    lines: list[str] = []
    report = redrive.redrive(aws.sqs, aws.queue_url, wait_seconds=0, out=lines.append)

    # Then every message is back on the declines queue, none left in the DLQ
    assert report.ok and report.moved == 3 and report.method == "receive, send, delete"
    assert any("not available here" in line for line in lines)
    assert redrive.depth(aws.sqs, _dlq_url(aws)) == (0, 0)
    assert sorted(m["applicationId"] for m in _queued(aws)) == sorted(others)
    # And the worker declines them
    _work_off_queue(aws)
    assert _statuses(api, "alice", job_id) == {chosen: "ACCEPTED", **dict.fromkeys(others, "DECLINED")}


class _SendFails:
    """The SQS client, except that SendMessageBatch fails entirely or for chosen entries."""

    def __init__(self, sqs: Any, *, fail_ids: set[str] | None = None) -> None:
        self._sqs = sqs
        self._fail_ids = fail_ids

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict]) -> dict:
        if self._fail_ids is None:
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "SendMessageBatch")
        sent = self._sqs.send_message_batch(
            QueueUrl=QueueUrl, Entries=[e for e in Entries if e["Id"] not in self._fail_ids]
        )
        failed = [{"Id": i, "Code": "InternalError", "SenderFault": False} for i in sorted(self._fail_ids)]
        return {"Successful": sent.get("Successful", []), "Failed": failed}


def test_redrive_copy_deletes_nothing_it_could_not_send(aws: Aws) -> None:
    _dead_letter(aws, [f"message {i}" for i in range(3)])

    report = redrive.move_by_copy(_SendFails(aws.sqs), _dlq_url(aws), aws.queue_url, wait_seconds=0, out=lambda _: None)

    assert (report.moved, report.not_sent, report.ok) == (0, 3, False)
    assert sum(redrive.depth(aws.sqs, _dlq_url(aws))) == 3  # still there, back after the visibility timeout
    assert aws.queue_depth() == 0


def test_redrive_copy_keeps_the_entries_sqs_rejected(aws: Aws) -> None:
    _dead_letter(aws, [f"message {i}" for i in range(3)])

    report = redrive.move_by_copy(
        _SendFails(aws.sqs, fail_ids={"1"}), _dlq_url(aws), aws.queue_url, wait_seconds=0, out=lambda _: None
    )

    assert (report.moved, report.not_sent) == (2, 1)
    assert sum(redrive.depth(aws.sqs, _dlq_url(aws))) == 1
    assert aws.queue_depth() == 2


def test_redrive_command_uses_the_stage_names_from_config(aws: Aws, dev_stage: dict[str, Any], capsys) -> None:
    outputs = dev_stage
    dlq = outputs["DeclinesDeadLetterQueueUrl"]
    for i in range(12):
        aws.sqs.send_message(QueueUrl=dlq, MessageBody=f"m{i}")

    assert cli.main(["redrive", "--stage", "dev", "--wait-seconds", "0"]) == 0

    assert "12 messages moved back" in capsys.readouterr().out
    assert redrive.depth(aws.sqs, dlq) == (0, 0)
    assert redrive.depth(aws.sqs, outputs["DeclinesQueueUrl"])[0] == 12


# SQS's own move task, where it exists (not in moto): the calls and the polling, stubbed.

DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:booking-declines-dlq-test"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:booking-declines-test"


def test_redrive_follows_a_move_task_until_it_completes(aws: Aws) -> None:
    sqs = aws.sqs
    with Stubber(sqs) as stub:
        stub.add_response("list_message_move_tasks", {"Results": []}, {"SourceArn": DLQ_ARN, "MaxResults": 10})
        stub.add_response(
            "start_message_move_task", {"TaskHandle": "handle-123"}, {"SourceArn": DLQ_ARN, "DestinationArn": QUEUE_ARN}
        )
        running = {"Status": "RUNNING", "ApproximateNumberOfMessagesMoved": 4, "ApproximateNumberOfMessagesToMove": 9}
        done = {"Status": "COMPLETED", "ApproximateNumberOfMessagesMoved": 9}
        for task in (running, done):
            stub.add_response("list_message_move_tasks", {"Results": [task]}, {"SourceArn": DLQ_ARN, "MaxResults": 1})
        sleeps: list[float] = []

        report = redrive.move_with_task(
            sqs, DLQ_ARN, QUEUE_ARN, poll_seconds=7, sleep=sleeps.append, out=lambda _: None
        )

        stub.assert_no_pending_responses()
    assert (report.method, report.moved, report.ok, sleeps) == ("message move task", 9, True, [7])


def test_redrive_reports_a_failed_move_task(aws: Aws) -> None:
    sqs = aws.sqs
    with Stubber(sqs) as stub:
        stub.add_response("list_message_move_tasks", {"Results": []}, {"SourceArn": DLQ_ARN, "MaxResults": 10})
        stub.add_response(
            "start_message_move_task", {"TaskHandle": "h"}, {"SourceArn": DLQ_ARN, "DestinationArn": QUEUE_ARN}
        )
        failed = {"Status": "FAILED", "ApproximateNumberOfMessagesMoved": 2, "FailureReason": "AccessDenied on KMS"}
        stub.add_response("list_message_move_tasks", {"Results": [failed]}, {"SourceArn": DLQ_ARN, "MaxResults": 1})

        report = redrive.move_with_task(sqs, DLQ_ARN, QUEUE_ARN, sleep=lambda _: None, out=lambda _: None)

    assert not report.ok and report.moved == 2 and "AccessDenied on KMS" in (report.failure or "")


def test_redrive_refuses_to_guess_when_the_move_task_is_denied(aws: Aws) -> None:
    sqs = aws.sqs
    with Stubber(sqs) as stub:
        stub.add_response(
            "get_queue_attributes",
            {"Attributes": {"QueueArn": QUEUE_ARN, "RedrivePolicy": json.dumps({"deadLetterTargetArn": DLQ_ARN})}},
        )
        stub.add_response("get_queue_url", {"QueueUrl": "https://dlq"})
        stub.add_response(
            "get_queue_attributes",
            {"Attributes": {"ApproximateNumberOfMessages": "3", "ApproximateNumberOfMessagesNotVisible": "0"}},
        )
        stub.add_client_error("list_message_move_tasks", "AccessDenied", http_status_code=403)

        with pytest.raises(redrive.OpsError, match="--method copy"):
            redrive.redrive(sqs, "https://queue", out=lambda _: None)
