"""Injected DynamoDB faults: each maps to its status, and none leaves partial state or a lost decline."""

from __future__ import annotations

import json
import random
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from chalicelib import bootstrap
from tests.integration.conftest import Api, Aws, sqs_event


def _error(code: str, message: str = "injected", reasons: list[dict] | None = None) -> tuple[Any, dict]:
    body: dict[str, Any] = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}
    if reasons is not None:
        body["CancellationReasons"] = reasons
    return (SimpleNamespace(status_code=400, headers={}), body)


class Injector:
    """Answers chosen calls with an error instead of sending them (botocore's before-call hook)."""

    def __init__(self, operation: str, plan: list[tuple[Any, dict] | None]) -> None:
        self.operation = operation
        self.plan = list(plan)
        self.seen = 0

    def __call__(self, model: Any, **_: Any) -> tuple[Any, dict] | None:
        if model.name != self.operation:
            return None
        self.seen += 1
        return self.plan.pop(0) if self.plan else None


def _inject(operation: str, plan: list) -> Injector:
    injector = Injector(operation, plan)
    bootstrap.dynamodb_client().meta.events.register("before-call.dynamodb.*", injector)
    return injector


def _setup(api: Api, n: int = 3) -> tuple[str, list[str]]:
    job = api.create_job("alice")
    return job["jobId"], [api.apply(f"n{i}", job["jobId"])["applicationId"] for i in range(n)]


CONFLICT = _error("TransactionCanceledException", reasons=[{"Code": "TransactionConflict"}, {"Code": "None"}])
THROTTLED_TX = _error("TransactionCanceledException", reasons=[{"Code": "ThrottlingError"}, {"Code": "None"}])


# A transaction is retried with its token until its deadline (1.5 s): a fault must outlast it.
LASTING = 100
THROTTLED_PROVISIONED_TX = _error(
    "TransactionCanceledException", reasons=[{"Code": "ProvisionedThroughputExceeded"}, {"Code": "None"}]
)


@pytest.mark.parametrize(
    "plan,status,code",
    [
        ([CONFLICT] * 10, 409, "CONCURRENT_UPDATE"),
        ([THROTTLED_TX], 503, "SERVICE_UNAVAILABLE"),
        # a provisioned table or index names its throttle without "Exception"
        ([THROTTLED_PROVISIONED_TX], 503, "SERVICE_UNAVAILABLE"),
        ([_error("ProvisionedThroughputExceededException")] * LASTING, 503, "SERVICE_UNAVAILABLE"),
        ([_error("ThrottlingException")] * LASTING, 503, "SERVICE_UNAVAILABLE"),
        ([_error("TransactionConflictException")] * 10, 409, "CONCURRENT_UPDATE"),
        ([_error("AccessDeniedException")], 500, "INTERNAL_ERROR"),
    ],
)
def test_transaction_failures_map_to_a_status_and_change_nothing(
    api: Api, aws: Aws, plan: list, status: int, code: str
) -> None:
    job_id, apps = _setup(api)
    _inject("TransactWriteItems", plan)
    before = aws.snapshot()

    reply = api.book("alice", job_id, apps[0])

    assert (reply.status, reply.body["code"]) == (status, code)
    assert aws.snapshot() == before


@pytest.mark.parametrize("error", ["InternalServerError", "TransactionInProgressException"])
def test_a_lasting_ambiguous_failure_is_an_unknown_outcome_with_the_sweep_queued(
    api: Api, aws: Aws, monkeypatch: pytest.MonkeyPatch, error: str
) -> None:
    monkeypatch.setenv("SWEEP_DELAY_SECONDS", "0")
    # Given a booking whose transaction answers, until its deadline, what leaves its outcome open
    job_id, apps = _setup(api)
    _inject("TransactWriteItems", [_error(error)] * LASTING)
    items_before, _ = aws.snapshot()

    reply = api.book("alice", job_id, apps[0])

    # Then a 503 the client repeats, nothing written, and the sweep queued in case it had committed
    assert (reply.status, reply.body["code"]) == (503, "OUTCOME_UNKNOWN"), reply.body
    assert reply.body["details"]["sweepQueued"] is True
    assert aws.snapshot()[0] == items_before
    assert [json.loads(m["Body"])["kind"] for m in aws.receive_all()] == ["SweepJob"]


def test_a_passing_throttle_is_retried_and_the_booking_goes_through(api: Api, aws: Aws) -> None:
    job_id, apps = _setup(api)
    injector = _inject("TransactWriteItems", [_error("ThrottlingException"), _error("InternalServerError")])
    reply = api.book("alice", job_id, apps[0])
    assert reply.status == 200 and injector.seen == 3


def test_a_passing_conflict_is_retried_and_the_booking_goes_through(api: Api, aws: Aws) -> None:
    job_id, apps = _setup(api)
    injector = _inject("TransactWriteItems", [CONFLICT, CONFLICT])
    reply = api.book("alice", job_id, apps[0])
    assert reply.status == 200 and injector.seen == 3


def test_a_throttled_apply_is_503_and_writes_nothing(api: Api, aws: Aws) -> None:
    job_id, _ = _setup(api, 1)
    _inject("TransactWriteItems", [_error("ThrottlingException")] * LASTING)
    before = aws.snapshot()
    reply = api.call("POST", f"/jobs/{job_id}/applications", user="zed", role="nanny", body={})
    assert (reply.status, reply.body["code"]) == (503, "SERVICE_UNAVAILABLE")
    assert reply.headers.get("Retry-After") == "1"
    assert aws.snapshot() == before


def test_a_worker_throttled_one_time_in_five_loses_nothing(api: Api, aws: Aws, client) -> None:
    # Given 40 declines queued
    job_id, apps = _setup(api, 41)
    assert api.book("alice", job_id, apps[0]).status == 200
    rng = random.Random(7)
    throttled = Counter()

    def throttle(model: Any, **_: Any) -> tuple[Any, dict] | None:
        if model.name == "UpdateItem" and rng.random() < 0.2:
            throttled["UpdateItem"] += 1
            return _error("ProvisionedThroughputExceededException")
        return None

    bootstrap.dynamodb_client().meta.events.register("before-call.dynamodb.UpdateItem", throttle)

    # When the worker runs until the queue is empty, failed records coming back as SQS would
    rounds = 0
    while aws.queue_depth() and rounds < 30:
        rounds += 1
        for batch in _batches(aws.receive_all()):
            result = client.lambda_.invoke("decline_worker", sqs_event(batch)).payload
            failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
            for m in batch:
                if m["MessageId"] in failed:
                    aws.sqs.change_message_visibility(
                        QueueUrl=aws.queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                    )
                else:
                    aws.sqs.delete_message(QueueUrl=aws.queue_url, ReceiptHandle=m["ReceiptHandle"])

    # Then throttling happened, yet every other application is declined
    assert throttled["UpdateItem"] > 0
    statuses = Counter(a["status"] for a in api.applications("alice", job_id))
    assert statuses == Counter({"DECLINED": 40, "ACCEPTED": 1})


def _batches(messages: list[dict]) -> list[list[dict]]:
    return [messages[i : i + 10] for i in range(0, len(messages), 10)]
