"""Calls that time out or are re-sent by botocore: never a 500, never a duplicate."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from chalicelib import bootstrap
from tests.integration.conftest import Api, Aws, job_body, run_worker


def _items(aws: Aws, kind: str) -> list[dict[str, Any]]:
    return [i for i in aws.items() if i["type"]["S"] == kind]


class ResendOnce:
    """Makes botocore send a call again after its first attempt succeeded.

    The first attempt commits; botocore then behaves as after a 5xx or a read
    timeout whose answer was lost, and re-sends the very same request.
    """

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.resent = 0

    def __call__(self, attempts: int, caught_exception: Any, response: Any, operation: Any, **_: Any) -> Any:
        if operation.name == self.operation and attempts == 1 and caught_exception is None and not self.resent:
            self.resent += 1
            return 0  # retry now
        return None


def _resend(operation: str) -> ResendOnce:
    hook = ResendOnce(operation)
    bootstrap.dynamodb_client().meta.events.register_first(f"needs-retry.dynamodb.{operation}", hook)
    return hook


@pytest.mark.parametrize("operation", ["TransactWriteItems"])
def test_a_re_sent_job_creation_answers_201_with_one_job(api: Api, aws: Aws, operation: str) -> None:
    hook = _resend(operation)
    reply = api.call("POST", "/jobs", user="alice", body=job_body())
    assert hook.resent == 1
    assert reply.status == 201, reply.body
    assert [i["jobId"]["S"] for i in _items(aws, "JOB")] == [reply.body["jobId"]]
    assert [i["jobId"]["S"] for i in _items(aws, "JOB_LISTING")] == [reply.body["jobId"]]


def test_a_re_sent_application_answers_201_with_one_application(api: Api, aws: Aws) -> None:
    job_id = api.create_job("alice")["jobId"]
    hook = _resend("TransactWriteItems")
    reply = api.call("POST", f"/jobs/{job_id}/applications", user="nina", role="nanny", body={})
    assert hook.resent == 1
    assert reply.status == 201, reply.body
    assert [i["applicationId"]["S"] for i in _items(aws, "APPLICATION")] == [reply.body["applicationId"]]
    # and a second application by the same nanny is still refused
    again = api.call("POST", f"/jobs/{job_id}/applications", user="nina", role="nanny", body={})
    assert (again.status, again.body["code"]) == (409, "ALREADY_APPLIED")


def test_a_re_sent_booking_answers_200(api: Api, aws: Aws) -> None:
    job_id = api.create_job("alice")["jobId"]
    apps = [api.apply(f"n{i}", job_id)["applicationId"] for i in range(3)]
    hook = _resend("TransactWriteItems")
    reply = api.book("alice", job_id, apps[1])
    assert hook.resent == 1
    assert reply.status == 200 and reply.body["declinesQueued"] == 2


# ------------------------------------------------------------ Idempotency-Key


def test_the_same_idempotency_key_and_body_gets_the_same_job(api: Api, aws: Aws) -> None:
    body = job_body()
    first = api.call("POST", "/jobs", user="alice", body=body, headers={"Idempotency-Key": "k-1"})
    again = api.call("POST", "/jobs", user="alice", body=body, headers={"Idempotency-Key": "k-1"})
    assert first.status == 201 and again.status == 200
    assert again.body == first.body
    assert len(_items(aws, "JOB")) == 1

    # another body under the same key is refused, and creates nothing
    other = api.call("POST", "/jobs", user="alice", body={**body, "title": "Other"}, headers={"Idempotency-Key": "k-1"})
    assert (other.status, other.body["code"]) == (422, "IDEMPOTENCY_KEY_REUSED")
    # the key belongs to its parent: another parent's same key is another request
    bob = api.call("POST", "/jobs", user="bob", body=body, headers={"Idempotency-Key": "k-1"})
    assert bob.status == 201 and bob.body["jobId"] != first.body["jobId"]
    assert len(_items(aws, "JOB")) == 2


def test_a_re_sent_idempotent_creation_answers_201_with_one_job(api: Api, aws: Aws) -> None:
    hook = _resend("TransactWriteItems")
    reply = api.call("POST", "/jobs", user="alice", body=job_body(), headers={"Idempotency-Key": "abc"})
    assert hook.resent == 1 and reply.status == 201
    assert len(_items(aws, "JOB")) == 1


def test_an_expired_idempotency_key_may_be_used_again(api: Api, aws: Aws) -> None:
    body = job_body()
    first = api.call("POST", "/jobs", user="alice", body=body, headers={"Idempotency-Key": "old"})
    [record] = _items(aws, "IDEMPOTENCY_KEY")
    aws.dynamodb.update_item(
        TableName=aws.table,
        Key={"PK": record["PK"], "SK": record["SK"]},
        UpdateExpression="SET expiresAt = :past",
        ExpressionAttributeValues={":past": {"N": "1"}},
    )  # TTL deletes lazily: an expired record may still be there
    again = api.call("POST", "/jobs", user="alice", body=body, headers={"Idempotency-Key": "old"})
    assert again.status == 201 and again.body["jobId"] != first.body["jobId"]


@pytest.mark.parametrize("key", ["", "a b", "é", "x" * 256])
def test_a_malformed_idempotency_key_is_a_400(api: Api, aws: Aws, key: str) -> None:
    before = aws.snapshot()
    reply = api.call("POST", "/jobs", user="alice", body=job_body(), headers={"Idempotency-Key": key})
    assert (reply.status, reply.body["code"]) == (400, "INVALID_IDEMPOTENCY_KEY")
    assert aws.snapshot() == before


# ------------------------------------------------- failures after the commit


def _timeout(kind: str, operation: str) -> Exception:
    url = f"https://{operation}.test"
    return {
        "read": lambda: ReadTimeoutError(endpoint_url=url),
        "connect": lambda: ConnectTimeoutError(endpoint_url=url),
        "unreachable": lambda: EndpointConnectionError(endpoint_url=url),
    }[kind]()


class FailSends:
    """Raises a transport error instead of sending the chosen calls (every attempt botocore makes)."""

    def __init__(self, operation: str, kind: str) -> None:
        self.operation, self.kind = operation, kind
        self.attempts = 0

    def __call__(self, request: Any, **kwargs: Any) -> None:
        if kwargs["event_name"].endswith(f".{self.operation}"):
            self.attempts += 1
            raise _timeout(self.kind, self.operation)


@pytest.mark.parametrize("kind", ["read", "connect", "unreachable"])
@pytest.mark.parametrize(
    "service,operation,code",
    [("dynamodb", "Query", "BOOKING_INCOMPLETE"), ("sqs", "SendMessageBatch", "DECLINES_NOT_QUEUED")],
)
def test_a_failure_after_the_commit_is_a_503_and_the_replay_heals_it(
    api: Api, aws: Aws, client, service: str, operation: str, code: str, kind: str
) -> None:
    # Given a job with 12 applications
    job_id = api.create_job("alice")["jobId"]
    apps = [api.apply(f"n{i}", job_id)["applicationId"] for i in range(12)]
    clients = {"dynamodb": bootstrap.dynamodb_client(), "sqs": bootstrap.sqs_client()}
    bootstrap.declines_queue_url()()  # resolved before the fault: only the send fails
    fault = FailSends(operation, kind)
    clients[service].meta.events.register(f"before-send.{service}.{operation}", fault)

    # When the call after the booking's commit times out on every attempt
    reply = api.book("alice", job_id, apps[0])

    # Then the answer is a 503 to retry, never a 500, and botocore alone retried
    assert (reply.status, reply.body["code"]) == (503, code), reply.body
    assert reply.headers.get("Retry-After") == "1"
    batches = 2 if operation == "SendMessageBatch" else 1  # 11 declines + the sweep
    assert fault.attempts == 2 * batches  # CLIENT_MAX_ATTEMPTS, nothing on top
    assert api.call("GET", f"/jobs/{job_id}", user="alice").body["status"] == "CLOSED"
    if operation == "Query":
        # the sweep needs nothing but the commit: it went out although the read failed
        assert reply.body["details"]["sweepQueued"] is True
        assert aws.queue_depth(delayed=True) == 1

    # And the same request, once the dependency is back, finishes the work
    clients[service].meta.events.unregister(f"before-send.{service}.{operation}", fault)
    assert api.book("alice", job_id, apps[0]).status == 200
    run_worker(client, aws)
    statuses = Counter(a["status"] for a in api.applications("alice", job_id))
    assert statuses == Counter({"ACCEPTED": 1, "DECLINED": 11})


def test_client_timeouts_and_attempts_bound_a_failing_call(app_env: None) -> None:
    # A call that keeps failing gives up after its attempts, each bounded by the
    # timeouts, plus standard mode's backoff before the second (at most 1 s).
    settings = bootstrap.get_settings()
    sqs = bootstrap.client_config()
    dynamodb = bootstrap.dynamodb_client().meta.config
    assert sqs.retries == dynamodb.retries == {"mode": "standard", "total_max_attempts": 2}
    # AWS's advice for transactions: a read timeout of at least 1 s
    assert dynamodb.read_timeout >= 1.0
    worst_sqs_call = 2 * (sqs.connect_timeout + sqs.read_timeout) + 1.0
    worst_dynamodb_call = 2 * (dynamodb.connect_timeout + dynamodb.read_timeout) + 1.0
    assert worst_sqs_call <= 3.0 and worst_dynamodb_call <= 3.6
    # a booking: its transaction (re-sent with its token until the deadline; its index read
    # runs beside it), then one round of sends and the publisher's deadline for re-sends
    worst_transaction = settings.transaction_deadline_seconds + worst_dynamodb_call
    assert worst_transaction + worst_sqs_call + settings.enqueue_deadline_seconds < 10.0  # the API function's timeout


# ------------------------------------------------ answers lost after a commit


class LoseAnswers:
    """The first ``lost`` transactions reach the table, then their answers are lost (a read
    timeout after botocore's attempts); the next ``in_progress`` calls are answered
    TransactionInProgressException, as DynamoDB answers a re-send of one still running."""

    def __init__(self, lost: int = 1, in_progress: int = 0) -> None:
        self.lost, self.in_progress = lost, in_progress
        self.calls = 0
        self.tokens: list[str] = []

    def before_call(self, model: Any, params: dict[str, Any], **_: Any) -> Any:
        if model.name != "TransactWriteItems":
            return None
        self.calls += 1
        self.tokens.append(params.get("ClientRequestToken", ""))
        if self.lost < self.calls <= self.lost + self.in_progress:
            body = {"Error": {"Code": "TransactionInProgressException", "Message": "in progress"}}
            return (SimpleNamespace(status_code=400, headers={}), {**body, "ResponseMetadata": {"HTTPStatusCode": 400}})
        return None

    def after_call(self, model: Any, **_: Any) -> None:
        if model.name == "TransactWriteItems" and self.calls <= self.lost:
            raise ReadTimeoutError(endpoint_url="https://dynamodb.test")

    def attach(self) -> LoseAnswers:
        events = bootstrap.dynamodb_client().meta.events
        events.register("before-call.dynamodb.TransactWriteItems", self.before_call)
        events.register("after-call.dynamodb.TransactWriteItems", self.after_call)
        return self


def test_a_booking_whose_answer_was_lost_and_whose_re_send_is_in_progress_answers_200(
    api: Api, aws: Aws, client
) -> None:
    # Given a booking that commits, whose answer is lost, and whose re-send finds it running
    job_id = api.create_job("alice")["jobId"]
    apps = [api.apply(f"n{i}", job_id)["applicationId"] for i in range(4)]
    lost = LoseAnswers(lost=1, in_progress=2).attach()

    reply = api.book("alice", job_id, apps[0])

    # Then it is re-sent under the same token until it answers: 200, every decline queued
    assert reply.status == 200, reply.body
    assert reply.body["declinesQueued"] == 3
    assert lost.calls == 4 and len(set(lost.tokens)) == 1
    run_worker(client, aws)
    assert Counter(a["status"] for a in api.applications("alice", job_id)) == Counter({"ACCEPTED": 1, "DECLINED": 3})


@pytest.mark.parametrize("route", ["book", "cancel"])
def test_a_commit_whose_outcome_stays_unknown_is_a_503_with_the_sweep_queued_and_a_repeat_heals_it(
    api: Api, aws: Aws, client, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    monkeypatch.setenv("SWEEP_DELAY_SECONDS", "0")
    # Given a commit whose answer is lost and whose re-sends find it running until the deadline
    job_id = api.create_job("alice")["jobId"]
    apps = [api.apply(f"n{i}", job_id)["applicationId"] for i in range(3)]
    LoseAnswers(lost=1, in_progress=1000).attach()
    body = {"applicationId": apps[0]} if route == "book" else {}

    reply = api.call("POST", f"/jobs/{job_id}/{route}", user="alice", body=body)

    # Then a 503 that says to repeat, never a 500; the job did change, and its sweep is queued
    assert (reply.status, reply.body["code"]) == (503, "OUTCOME_UNKNOWN"), reply.body
    assert reply.headers.get("Retry-After") == "1" and reply.body["details"]["sweepQueued"] is True
    expected = "CLOSED" if route == "book" else "CANCELLED"
    assert api.call("GET", f"/jobs/{job_id}", user="alice").body["status"] == expected
    # and the sweep alone, with no repeat, declines every other application
    run_worker(client, aws)
    statuses = Counter(a["status"] for a in api.applications("alice", job_id))
    assert statuses == (Counter({"ACCEPTED": 1, "DECLINED": 2}) if route == "book" else Counter({"DECLINED": 3}))

    # And the repeat, once DynamoDB answers again, says what happened
    bootstrap.reset()
    repeat = api.call("POST", f"/jobs/{job_id}/{route}", user="alice", body=body)
    assert repeat.status == 200, repeat.body


def test_a_job_posted_whose_answer_is_lost_is_posted_once(api: Api, aws: Aws) -> None:
    LoseAnswers(lost=1, in_progress=1).attach()
    reply = api.call("POST", "/jobs", user="alice", body=job_body())
    assert reply.status == 201, reply.body
    assert [i["jobId"]["S"] for i in _items(aws, "JOB")] == [reply.body["jobId"]]


# ------------------------------------------------------------- own job


def test_a_parent_who_is_also_a_nanny_cannot_apply_to_their_own_job(api: Api, aws: Aws, make_token: Any) -> None:
    job_id = api.create_job("pat")["jobId"]
    both = make_token("pat", ["parents", "nannies"])
    before = aws.snapshot()
    reply = api.call("POST", f"/jobs/{job_id}/applications", token=f"Bearer {both}", body={})
    assert (reply.status, reply.body["code"]) == (403, "OWN_JOB")
    assert aws.snapshot() == before
    # while applying to someone else's job is fine
    other = api.create_job("alice")["jobId"]
    assert api.call("POST", f"/jobs/{other}/applications", token=f"Bearer {both}", body={}).status == 201
