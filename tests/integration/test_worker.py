"""Partial batch failures: only failed records come back, and none is ever acknowledged silently."""

from __future__ import annotations

import pytest

from chalicelib import bootstrap
from chalicelib.declines import DeclineApplication
from chalicelib.domain import DeclineOutcome, format_time, utc_now
from tests.integration.conftest import Api, Aws, sqs_event


def _batch(api: Api, bad: set[int]) -> tuple[dict, list[str]]:
    job = api.create_job("alice")
    apps = [api.apply(f"nanny{i}", job["jobId"])["applicationId"] for i in range(10)]
    messages = [
        {
            "MessageId": f"m{i}",
            "Body": "not json" if i in bad else DeclineApplication(job["jobId"], app).to_json(),
        }
        for i, app in enumerate(apps)
    ]
    return sqs_event(messages), apps


def test_one_bad_record_in_ten_reports_only_its_message_id(api: Api, aws: Aws, client) -> None:
    event, _ = _batch(api, bad={6})
    result = client.lambda_.invoke("decline_worker", event).payload
    assert result == {"batchItemFailures": [{"itemIdentifier": "m6"}]}


def test_a_batch_where_every_record_fails_fails_the_invocation(api: Api, aws: Aws, client) -> None:
    event, _ = _batch(api, bad=set(range(10)))
    with pytest.raises(Exception, match="All records failed"):
        client.lambda_.invoke("decline_worker", event)


def test_without_partial_responses_a_failure_fails_the_whole_invocation(
    api: Api, aws: Aws, client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where ReportBatchItemFailures is not known to be enabled, Lambda would delete
    # the whole batch on a normal return: the handler must raise instead.
    monkeypatch.setenv("DECLINES_PARTIAL_BATCH_RESPONSES", "false")
    bootstrap.reset()
    event, _ = _batch(api, bad={2})
    with pytest.raises(Exception, match="1 of 10 declines failed"):
        client.lambda_.invoke("decline_worker", event)


def test_a_decline_that_changes_nothing_tells_why_without_another_read(api: Api, aws: Aws) -> None:
    # The refused UpdateItem returns the item (ReturnValuesOnConditionCheckFailure=ALL_OLD)
    # on both backends, as on DynamoDB: knowing why costs no GetItem.
    job = api.create_job("alice")
    accepted, other = (api.apply(f"nanny{i}", job["jobId"])["applicationId"] for i in range(2))
    assert api.book("alice", job["jobId"], accepted).status == 200
    store = bootstrap.store()
    now = format_time(utc_now())
    assert store.decline_application(job["jobId"], other, now) is DeclineOutcome.DECLINED
    calls: list[str] = []
    bootstrap.dynamodb_client().meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.append(model.name)
    )

    outcomes = [store.decline_application(job["jobId"], app, now) for app in (other, accepted)]

    assert outcomes == [DeclineOutcome.ALREADY_DECLINED, DeclineOutcome.SKIPPED_ACCEPTED]
    assert calls == ["UpdateItem", "UpdateItem"]


class _Context:
    aws_request_id = "lean-worker-1"
    function_name = "decline-worker"


def test_the_packaged_lean_handler_answers_as_the_chalice_one(api: Api, aws: Aws, client) -> None:
    from chalicelib import lambda_worker

    event, _ = _batch(api, bad={3, 7})
    lean = lambda_worker.handler(event, _Context())
    assert lean == {"batchItemFailures": [{"itemIdentifier": "m3"}, {"itemIdentifier": "m7"}]}
    # The same records again through Chalice: the good ones are already declined, the bad ones still bad.
    assert client.lambda_.invoke("decline_worker", event).payload == lean
    event, _ = _batch(api, bad=set(range(10)))
    with pytest.raises(Exception, match="All records failed"):
        lambda_worker.handler(event, _Context())
