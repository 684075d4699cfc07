"""The booking path: every page, its AWS calls, lost-message safety, replay and redelivery."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from chalicelib import bootstrap
from chalicelib.declines import DeclineApplication, SqsDeclinePublisher
from chalicelib.domain import format_time, utc_now
from tests.conftest import user_id
from tests.fakes.sqs import FlakySqs
from tests.integration.conftest import Api, Aws, run_worker, sqs_event


def _job_with_applicants(api: Api, n: int, owner: str = "alice") -> tuple[str, list[str]]:
    job = api.create_job(owner)
    return job["jobId"], [api.apply(f"nanny{i}", job["jobId"])["applicationId"] for i in range(n)]


def _statuses(api: Api, owner: str, job_id: str) -> Counter:
    return Counter(a["status"] for a in api.applications(owner, job_id))


class CallCounter:
    def __init__(self) -> None:
        self.calls: Counter = Counter()

    def __call__(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1


@pytest.fixture
def counted(aws: Aws) -> CallCounter:
    counter = CallCounter()
    for client in (bootstrap.dynamodb_client(), bootstrap.sqs_client()):
        client.meta.events.register("before-call.*.*", counter)
    return counter


def test_book_path_makes_two_reads_one_transaction_one_query_and_batched_sends(
    api: Api, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The queue URL comes from settings here, so no lookup is made on the path.
    monkeypatch.setenv("DECLINES_QUEUE_URL", aws.queue_url)
    bootstrap.reset()
    job_id, apps = _job_with_applicants(api, 25)
    counter = CallCounter()
    for client in (bootstrap.dynamodb_client(), bootstrap.sqs_client()):
        client.meta.events.register("before-call.*.*", counter)

    reply = api.book("alice", job_id, apps[0])

    assert reply.status == 200 and reply.body["declinesQueued"] == 24
    # the job and the application in one read, then the nanny's calendar; beside the
    # transaction, the index (keys only). The answer's job is the one the commit read and wrote.
    assert counter.calls == Counter(
        {"TransactGetItems": 1, "GetItem": 1, "TransactWriteItems": 1, "Query": 1, "SendMessageBatch": 3}
    )
    assert counter.calls["SendMessage"] == 0


def test_every_page_of_applications_is_declined(
    api: Api, aws: Aws, client, monkeypatch: pytest.MonkeyPatch, counted: CallCounter
) -> None:
    monkeypatch.setenv("QUERY_PAGE_SIZE", "4")
    bootstrap.reset()
    counter = CallCounter()
    bootstrap.dynamodb_client().meta.events.register("before-call.dynamodb.Query", counter)
    job_id, apps = _job_with_applicants(api, 23)

    reply = api.book("alice", job_id, apps[7])

    assert reply.status == 200 and reply.body["declinesQueued"] == 22
    assert counter.calls["Query"] >= 6  # 24 items in the job's partition, 4 per page
    run_worker(client, aws)
    assert _statuses(api, "alice", job_id) == Counter({"DECLINED": 22, "ACCEPTED": 1})


def _use_flaky_sqs(aws: Aws, script: list[str], attempts: int = 5) -> FlakySqs:
    flaky = FlakySqs(aws.sqs, script)
    # A deadline far off: these tests are about re-sends, not time (a loaded machine can take
    # more than the publisher's 0.5 s over moto; the deadline has tests of its own).
    bootstrap.override(
        publisher=SqsDeclinePublisher(
            flaky, lambda: aws.queue_url, max_attempts=attempts, backoff_seconds=0.001, deadline_seconds=30
        )
    )
    return flaky


def test_failed_entries_are_retried_and_nothing_is_lost(api: Api, aws: Aws, client) -> None:
    job_id, apps = _job_with_applicants(api, 30)
    flaky = _use_flaky_sqs(aws, ["fail-30%"] * 6)

    reply = api.book("alice", job_id, apps[0])

    assert reply.status == 200 and reply.body["declinesQueued"] == 29
    assert flaky.calls > 3  # some batches needed more than one call
    assert aws.queue_depth() == 29
    run_worker(client, aws)
    assert _statuses(api, "alice", job_id) == Counter({"DECLINED": 29, "ACCEPTED": 1})


def test_a_failed_enqueue_is_reported_and_replaying_the_booking_heals_it(api: Api, aws: Aws, client) -> None:
    job_id, apps = _job_with_applicants(api, 12)
    _use_flaky_sqs(aws, ["raise"] * 100, attempts=3)

    reply = api.book("alice", job_id, apps[3])

    # The booking is committed, and the answer says the declines are not all queued
    assert reply.status == 503
    assert reply.body["code"] == "DECLINES_NOT_QUEUED"
    assert reply.body["details"]["declinesNotQueued"] == 11
    job = api.call("GET", f"/jobs/{job_id}", user="alice").body
    assert job["status"] == "CLOSED" and job["acceptedApplicationId"] == apps[3]

    # When the same request is repeated with SQS healthy again, it finishes the work
    bootstrap.reset()
    replay = api.book("alice", job_id, apps[3])
    assert replay.status == 200 and replay.body["declinesQueued"] == 11
    assert replay.body["job"]["acceptedApplicationId"] == apps[3]
    run_worker(client, aws)
    assert _statuses(api, "alice", job_id) == Counter({"DECLINED": 11, "ACCEPTED": 1})

    # and once everything is declined, a replay is still 200 with nothing more to queue
    again = api.book("alice", job_id, apps[3])
    assert again.status == 200 and again.body["declinesQueued"] == 0


def test_a_crash_between_commit_and_enqueue_is_healed_by_replay(api: Api, aws: Aws, client) -> None:
    job_id, apps = _job_with_applicants(api, 5)
    # Only the transaction ran: the process died before querying or sending.
    bootstrap.store().close_job_and_accept(user_id("alice"), job_id, apps[0], format_time(utc_now()))
    assert aws.queue_depth() == 0

    reply = api.book("alice", job_id, apps[0])

    assert reply.status == 200 and reply.body["declinesQueued"] == 4
    run_worker(client, aws)
    assert _statuses(api, "alice", job_id) == Counter({"DECLINED": 4, "ACCEPTED": 1})


def _application_item(aws: Aws, job_id: str, app_id: str) -> dict:
    key = {"PK": {"S": f"JOB#{job_id}"}, "SK": {"S": f"APPLICATION#{app_id}"}}
    return aws.dynamodb.get_item(TableName=aws.table, Key=key)["Item"]


def test_redelivered_declines_change_nothing_and_the_accepted_one_stays(api: Api, aws: Aws, client) -> None:
    job_id, apps = _job_with_applicants(api, 3)
    assert api.book("alice", job_id, apps[0]).status == 200
    messages = aws.receive_all()
    assert len(messages) == 2

    first = client.lambda_.invoke("decline_worker", sqs_event(messages)).payload
    assert first == {"batchItemFailures": []}
    declined = _application_item(aws, job_id, apps[1])
    assert declined["status"]["S"] == "DECLINED"

    # the same messages again (at-least-once delivery), plus one naming the accepted application
    accepted_msg = {"MessageId": "accepted", "Body": DeclineApplication(job_id, apps[0]).to_json()}
    again = client.lambda_.invoke("decline_worker", sqs_event([*messages, accepted_msg])).payload
    assert again == {"batchItemFailures": []}
    assert _application_item(aws, job_id, apps[1]) == declined  # not even updatedAt moved
    assert _application_item(aws, job_id, apps[0])["status"]["S"] == "ACCEPTED"


def test_a_decline_for_an_unknown_application_is_dropped(aws: Aws, client) -> None:
    body = DeclineApplication("01HZZZZZZZZZZZZZZZZZZZZZZZ", "01HZZZZZZZZZZZZZZZZZZZZZZY").to_json()
    result = client.lambda_.invoke("decline_worker", sqs_event([{"MessageId": "m", "Body": body}])).payload
    assert result == {"batchItemFailures": []}
    assert not [i for i in aws.items() if i["type"]["S"] == "APPLICATION"]


def test_booking_the_same_application_twice_answers_200_with_one_acceptance(api: Api, aws: Aws) -> None:
    job_id, apps = _job_with_applicants(api, 4)
    first = api.book("alice", job_id, apps[2])
    second = api.book("alice", job_id, apps[2])
    assert first.status == second.status == 200
    assert second.body["acceptedApplicationId"] == apps[2]
    assert _statuses(api, "alice", job_id)["ACCEPTED"] == 1
