"""Domain events on the bus and the emails they lead to: one per person and outcome, however often delivered."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from chalicelib import bootstrap
from chalicelib.events import SCHEMA_VERSION, DomainEvent
from tests.conftest import user_id
from tests.integration.conftest import Api, Aws, run_worker, sqs_event
from tests.integration.test_booking import CallCounter
from tests.integration.test_stream import FailAll
from tools.local.stream import StreamPoller


def sent_emails(aws: Aws) -> list[dict[str, Any]]:
    """What SES accepted from this stage's sender: to, subject, body."""
    sender = aws.outputs["MailSender"]
    if aws.backend == "moto":
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        messages = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages
        return [
            {"to": m.destinations["ToAddresses"], "subject": m.subject, "body": m.body}
            for m in messages
            if m.source == sender
        ]
    from tools.local.mail import sent_emails as ministack_emails

    endpoint = aws.dynamodb.meta.endpoint_url
    return [e for e in ministack_emails(endpoint, sender=sender)]


def notifications(aws: Aws) -> list[dict[str, Any]]:
    """Receives (and leaves invisible) what the bus's rule delivered to the mailer's queue."""
    url = aws.outputs["NotificationsQueueUrl"]
    found: list[dict[str, Any]] = []
    while True:
        resp = aws.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageSystemAttributeNames=["All"]
        )
        batch = resp.get("Messages") or []
        if not batch:
            return found
        found.extend(batch)


def run_mailer(
    api: Api, aws: Aws, messages: list[dict[str, Any]] | None = None, *, delete: bool = True
) -> dict[str, Any]:
    """Hands the mailer's queue to the mail function, ten at a time, deleting what it settled."""
    url = aws.outputs["NotificationsQueueUrl"]
    messages = notifications(aws) if messages is None else messages
    failed_total = 0
    for i in range(0, len(messages), 10):
        batch = messages[i : i + 10]
        result = api._client.lambda_.invoke("mail_worker", sqs_event(batch)).payload
        failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
        failed_total += len(failed)
        done = [
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
            for n, m in enumerate(batch)
            if m["MessageId"] not in failed
        ]
        if done and delete:
            aws.sqs.delete_message_batch(QueueUrl=url, Entries=done)
    return {"handled": len(messages), "failed": failed_total}


def settle(api: Api, aws: Aws, stream: StreamPoller) -> None:
    """Everything after the requests: the stream, the declines, the stream again, the emails."""
    stream.drain()
    run_worker(api._client, aws)
    stream.drain()
    run_mailer(api, aws)


def _booked_job(api: Api, n: int = 4) -> tuple[str, list[str]]:
    job = api.create_job("alice", title="Friday evening")
    apps = [api.apply(f"nanny{i}", job["jobId"])["applicationId"] for i in range(n)]
    return job["jobId"], apps


def test_a_booking_emails_the_accepted_nanny_and_each_declined_one_once(
    api: Api, aws: Aws, stream: StreamPoller
) -> None:
    job_id, apps = _booked_job(api)
    settle(api, aws, stream)
    before = len(sent_emails(aws))  # the parent heard of each application
    assert before == 4

    assert api.book("alice", job_id, apps[0]).status == 200
    settle(api, aws, stream)
    assert api.book("alice", job_id, apps[0]).status == 200  # the same booking again
    settle(api, aws, stream)

    emails = sent_emails(aws)[before:]
    to = Counter(e["to"][0] for e in emails)
    assert to == Counter({f"nanny{i}@example.com": 1 for i in range(4)})
    accepted = next(e for e in emails if e["to"] == ["nanny0@example.com"])
    assert accepted["subject"] == "You are booked: Friday evening"
    assert accepted["body"].startswith("Hello nanny0,")  # the display name the item keeps
    assert job_id in accepted["body"] and apps[0] in accepted["body"]
    declined = next(e for e in emails if e["to"] == ["nanny1@example.com"])
    assert declined["subject"] == '"Friday evening" has been booked with someone else'


def test_a_batch_of_emails_reads_its_jobs_and_applications_in_one_call(
    api: Api, aws: Aws, stream: StreamPoller
) -> None:
    job_id, apps = _booked_job(api)
    settle(api, aws, stream)
    assert api.book("alice", job_id, apps[0]).status == 200
    stream.drain()
    run_worker(api._client, aws)
    stream.drain()
    delivered = notifications(aws)
    assert len(delivered) == 5  # the job booked (no email), one accepted, three declined: one batch
    calls = CallCounter()
    bootstrap.dynamodb_client().meta.events.register("before-call.*.*", calls)

    assert run_mailer(api, aws, delivered)["failed"] == 0

    # One read of the job and the four applications, not two reads per email.
    assert calls.calls["BatchGetItem"] == 1 and calls.calls["GetItem"] == 0
    assert Counter(e["to"][0] for e in sent_emails(aws)[4:]) == Counter({f"nanny{i}@example.com": 1 for i in range(4)})


def test_when_the_batch_read_fails_each_email_reads_its_own(api: Api, aws: Aws, stream: StreamPoller) -> None:
    job_id, apps = _booked_job(api, 3)
    settle(api, aws, stream)
    assert api.book("alice", job_id, apps[0]).status == 200
    stream.drain()
    run_worker(api._client, aws)
    stream.drain()
    failing = FailAll({"BatchGetItem"})
    bootstrap.dynamodb_client().meta.events.register("before-call.*.*", failing)

    assert run_mailer(api, aws)["failed"] == 0

    assert failing.seen["BatchGetItem"] >= 1
    assert sorted(e["to"][0] for e in sent_emails(aws)[3:]) == [f"nanny{i}@example.com" for i in range(3)]


def test_a_cancellation_emails_every_applicant(api: Api, aws: Aws, stream: StreamPoller) -> None:
    job_id, _ = _booked_job(api, 3)
    settle(api, aws, stream)
    before = len(sent_emails(aws))

    assert api.call("POST", f"/jobs/{job_id}/cancel", user="alice", body={}).status == 200
    settle(api, aws, stream)

    emails = sent_emails(aws)[before:]
    assert sorted(e["to"][0] for e in emails) == [f"nanny{i}@example.com" for i in range(3)]
    assert {e["subject"] for e in emails} == {'"Friday evening" was cancelled'}


def test_redelivered_records_and_events_send_nothing_twice(api: Api, aws: Aws, stream: StreamPoller) -> None:
    job_id, apps = _booked_job(api, 2)
    api.book("alice", job_id, apps[0])
    settle(api, aws, stream)
    before = len(sent_emails(aws))

    # The whole stream again (Lambda retrying, a second reader): the same events, the same ids.
    again = StreamPoller(
        aws.streams, aws.outputs["TableStreamArn"], stream._handler, function_name="table_stream", sleep=lambda _: None
    )
    again.drain()
    run_worker(api._client, aws)
    delivered = notifications(aws)
    outcomes = [run_mailer(api, aws, delivered, delete=False), run_mailer(api, aws, delivered)]  # twice over

    assert outcomes[0]["handled"] > 0 and not any(o["failed"] for o in outcomes)
    assert len(sent_emails(aws)) == before


def test_events_follow_the_schema_with_ids_stable_across_redeliveries(api: Api, aws: Aws, stream: StreamPoller) -> None:
    job_id, apps = _booked_job(api, 2)
    api.book("alice", job_id, apps[0])
    stream.drain()
    first = notifications(aws)
    StreamPoller(
        aws.streams, aws.outputs["TableStreamArn"], stream._handler, function_name="table_stream", sleep=lambda _: None
    ).drain()
    second = notifications(aws)

    details = [json.loads(m["Body"]) for m in first]
    assert {d["source"] for d in details} == {"babysitting.booking"}
    kinds = Counter(d["detail-type"] for d in details)
    assert kinds == Counter(JobPosted=1, ApplicationSubmitted=2, JobBooked=1, ApplicationAccepted=1)
    for d in details:
        event = DomainEvent.from_detail(d["detail"])  # validates, eventId included
        assert d["detail"]["schemaVersion"] == SCHEMA_VERSION
        assert event.job_id == job_id
        assert event.owner is not None
        assert "@" not in json.dumps(d["detail"])  # no address travels on the bus
    accepted = next(d["detail"] for d in details if d["detail-type"] == "ApplicationAccepted")
    assert accepted["applicationId"] == apps[0]
    assert accepted["status"] == {"from": "PENDING", "to": "ACCEPTED"}
    # The people by their stable identity (the token's sub), never by name or address.
    assert accepted["people"] == {"owner": user_id("alice"), "applicant": user_id("nanny0")}
    assert sorted(json.loads(m["Body"])["detail"]["eventId"] for m in second) == sorted(
        d["detail"]["eventId"] for d in details
    )


def test_a_failed_send_is_retried_and_sent_once(api: Api, aws: Aws, stream: StreamPoller) -> None:
    job = api.create_job("alice")
    api.apply("nanny0", job["jobId"])
    stream.drain()
    delivered = notifications(aws)
    assert len(delivered) == 2  # JobPosted, ApplicationSubmitted
    ses = bootstrap.mailer()._sender._ses
    failing = FailAll({"SendEmail"}, code="TooManyRequestsException")
    ses.meta.events.register("before-call.*.*", failing)
    try:
        first = run_mailer(api, aws, delivered)
    finally:
        ses.meta.events.unregister("before-call.*.*", failing)
    assert first["failed"] == 1 and sent_emails(aws) == []

    second = run_mailer(api, aws, delivered)  # the same messages, as SQS redelivers them

    assert second["failed"] == 0
    assert [e["to"] for e in sent_emails(aws)] == [["alice@example.com"]]


def test_nobody_without_an_address_is_emailed(api: Api, aws: Aws, stream: StreamPoller, make_token: Any) -> None:
    token = make_token("noaddress", ["parents"], email=None)
    reply = api.call("POST", "/jobs", token=f"Bearer {token}", body={**_job_fields()})
    assert reply.status == 201
    api.apply("nanny0", reply.body["jobId"])
    settle(api, aws, stream)
    assert sent_emails(aws) == []


def _job_fields() -> dict[str, Any]:
    from tests.payloads import job_body

    return job_body()


def test_a_receipt_is_claimed_once_taken_over_when_its_holder_died_and_final_once_sent(aws: Aws) -> None:
    from chalicelib.mail import ClaimState

    store = bootstrap.store()
    assert store.claim_mail("e1", "applicant", lease_seconds=60) is ClaimState.CLAIMED
    assert store.claim_mail("e1", "applicant", lease_seconds=60) is ClaimState.IN_FLIGHT  # another delivery
    assert store.claim_mail("e1", "owner", lease_seconds=60) is ClaimState.CLAIMED  # per recipient
    # A holder that died between claim and send: its lease is over, the next delivery takes it.
    assert store.claim_mail("e2", "applicant", lease_seconds=-5) is ClaimState.CLAIMED
    assert store.claim_mail("e2", "applicant", lease_seconds=60) is ClaimState.CLAIMED
    store.mark_mail_sent("e1", "applicant")
    assert store.claim_mail("e1", "applicant", lease_seconds=-5) is ClaimState.SENT
    store.release_mail("e1", "applicant")  # a sent receipt is never given back
    assert store.claim_mail("e1", "applicant", lease_seconds=60) is ClaimState.SENT
