"""The rest of a job's life through HTTP: a parent cancels, a nanny withdraws, a past job closes itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib import bootstrap
from chalicelib.declines import DeclineApplication
from chalicelib.domain import Application, ApplicationStatus, JobStarted, format_time, new_id, utc_now
from tests.conftest import user_id
from tests.integration.conftest import Api, Aws, run_worker, sqs_event
from tests.integration.test_observability import _emf


def _statuses(api: Api, owner: str, job_id: str) -> dict[str, str]:
    return {a["applicationId"]: a["status"] for a in api.applications(owner, job_id)}


def _open_ids(api: Api) -> list[str]:
    return [j["jobId"] for j in api.call("GET", "/jobs?limit=100", user="nina", role="nanny").body["items"]]


def _cancel(api: Api, owner: str, job_id: str, body: Any = None) -> Any:
    return api.call("POST", f"/jobs/{job_id}/cancel", user=owner, body=body)


def _withdraw(api: Api, nanny: str, job_id: str, app_id: str, role: str = "nanny") -> Any:
    return api.call("POST", f"/jobs/{job_id}/applications/{app_id}/withdraw", user=nanny, role=role)


# ------------------------------------------------------------------ cancelling


def test_a_cancelled_job_declines_every_application_and_leaves_the_listing(api: Api, aws: Aws, client) -> None:
    # Given an open job with three applications
    job = api.create_job("alice")
    apps = [api.apply(f"n{i}", job["jobId"])["applicationId"] for i in range(3)]
    assert job["jobId"] in _open_ids(api)

    # When its owner cancels it
    reply = _cancel(api, "alice", job["jobId"], {"reason": "  Plans changed.  "})

    # Then it is CANCELLED, with its reason, out of the listing, and every application is declined
    assert reply.status == 200, reply.body
    assert (reply.body["status"], reply.body["cancelReason"]) == ("CANCELLED", "Plans changed.")
    assert "acceptedApplicationId" not in reply.body and reply.body["cancelledAt"]
    assert aws.queue_depth() == 3  # the declines; the sweep is delayed
    assert job["jobId"] not in _open_ids(api)
    assert run_worker(client, aws) == 3
    assert _statuses(api, "alice", job["jobId"]) == dict.fromkeys(apps, "DECLINED")
    assert api.call("GET", f"/jobs/{job['jobId']}", user="n0", role="nanny").body == reply.body
    mine = api.call("GET", "/me/jobs", user="alice").body["items"]
    assert [(j["jobId"], j["status"]) for j in mine] == [(job["jobId"], "CANCELLED")]
    assert not [i for i in aws.items() if i["SK"]["S"] == "LISTING"]

    # And nothing can be booked or applied for any more, with nothing changed
    before = aws.snapshot()
    booked = api.book("alice", job["jobId"], apps[0])
    assert (booked.status, booked.body["code"]) == (409, "JOB_NOT_OPEN")
    applied = api.call("POST", f"/jobs/{job['jobId']}/applications", user="zoe", role="nanny", body={})
    assert (applied.status, applied.body["code"]) == (409, "JOB_NOT_OPEN")
    assert aws.snapshot() == before

    # And cancelling again answers 200 with the job as it was cancelled the first time
    again = _cancel(api, "alice", job["jobId"], {"reason": "another reason"})
    assert (again.status, again.body) == (200, reply.body)


def test_a_cancel_that_committed_but_queued_nothing_is_healed_by_repeating_it(api: Api, aws: Aws, client) -> None:
    job_id = api.create_job("alice")["jobId"]
    apps = [api.apply(f"n{i}", job_id)["applicationId"] for i in range(4)]
    # the process died between the commit and the enqueue
    assert not bootstrap.store().cancel_job(user_id("alice"), job_id, None, format_time(utc_now())).replayed
    assert aws.queue_depth() == 0

    reply = _cancel(api, "alice", job_id)

    assert reply.status == 200 and reply.body["status"] == "CANCELLED"
    assert aws.queue_depth() == 4
    run_worker(client, aws)
    assert _statuses(api, "alice", job_id) == dict.fromkeys(apps, "DECLINED")


def test_a_started_booked_job_cannot_be_cancelled_and_a_cancelled_one_cannot_be_booked(api: Api, aws: Aws) -> None:
    booked, cancelled = api.create_job("alice")["jobId"], api.create_job("alice")["jobId"]
    app_booked, app_cancelled = (
        api.apply("nina", booked)["applicationId"],
        api.apply("nina", cancelled)["applicationId"],
    )
    assert api.book("alice", booked, app_booked).status == 200
    assert _cancel(api, "alice", cancelled).status == 200
    _move_start(aws, booked, datetime.now(UTC) - timedelta(minutes=1))
    before = aws.snapshot()

    refused = _cancel(api, "alice", booked)
    assert (refused.status, refused.body["code"]) == (409, "JOB_STARTED")
    refused = api.book("alice", cancelled, app_cancelled)
    assert (refused.status, refused.body["code"]) == (409, "JOB_NOT_OPEN")
    assert aws.snapshot() == before


def test_the_sweep_declines_what_a_cancel_s_index_read_missed(api: Api, aws: Aws, client, monkeypatch) -> None:
    monkeypatch.setenv("SWEEP_DELAY_SECONDS", "0")
    bootstrap.reset()
    job_id = api.create_job("alice")["jobId"]
    apps = [api.apply(f"n{i}", job_id)["applicationId"] for i in range(3)]
    # the index lagged: the cancel's first pass saw no application at all
    store = bootstrap.store()
    monkeypatch.setattr(store, "indexed_application_ids", lambda job_id: [])

    assert _cancel(api, "alice", job_id).status == 200

    assert aws.queue_depth() == 1  # the sweep alone
    run_worker(client, aws)
    assert _statuses(api, "alice", job_id) == dict.fromkeys(apps, "DECLINED")


# ---------------------------------------------------------------- withdrawing


def test_a_withdrawn_application_stays_withdrawn_and_cannot_be_booked(api: Api, aws: Aws, client) -> None:
    job_id = api.create_job("alice")["jobId"]
    leaving = api.apply("nina", job_id, message="hi")
    staying = api.apply("olga", job_id)

    reply = _withdraw(api, "nina", job_id, leaving["applicationId"])

    assert reply.status == 200, reply.body
    assert reply.body["status"] == "WITHDRAWN" and reply.body["message"] == "hi"
    assert reply.body["updatedAt"] > leaving["updatedAt"] or reply.body["updatedAt"] >= leaving["createdAt"]
    # repeating it answers the same
    assert _withdraw(api, "nina", job_id, leaving["applicationId"]).body == reply.body
    # she sees it, and so does the parent
    for user, role in (("nina", "nanny"), ("alice", "parent")):
        seen = api.call("GET", f"/jobs/{job_id}/applications/{leaving['applicationId']}", user=user, role=role)
        assert (seen.status, seen.body) == (200, reply.body)
    mine = api.call("GET", "/me/applications", user="nina", role="nanny").body["items"]
    assert [a["status"] for a in mine] == ["WITHDRAWN"]

    # Refusals change nothing: booking it, applying again, withdrawing someone else's
    before = aws.snapshot()
    booked = api.book("alice", job_id, leaving["applicationId"])
    assert (booked.status, booked.body["code"]) == (409, "APPLICATION_NOT_PENDING")
    again = api.call("POST", f"/jobs/{job_id}/applications", user="nina", role="nanny", body={})
    assert (again.status, again.body["code"]) == (409, "ALREADY_APPLIED")
    other = _withdraw(api, "nina", job_id, staying["applicationId"])
    assert (other.status, other.body["code"]) == (403, "NOT_APPLICANT")
    assert aws.snapshot() == before

    # Booking the other one: the index (keys only) still lists the withdrawn application,
    # so its decline is queued; the worker leaves it WITHDRAWN
    booking = api.book("alice", job_id, staying["applicationId"])
    assert booking.status == 200 and booking.body["declinesQueued"] == 1
    # and so does a decline sent for it by mistake
    aws.sqs.send_message(
        QueueUrl=aws.queue_url, MessageBody=DeclineApplication(job_id, leaving["applicationId"]).to_json()
    )
    run_worker(client, aws)
    assert _statuses(api, "alice", job_id) == {
        leaving["applicationId"]: "WITHDRAWN",
        staying["applicationId"]: "ACCEPTED",
    }


def test_a_declined_application_cannot_be_withdrawn(api: Api, aws: Aws, client) -> None:
    job_id = api.create_job("alice")["jobId"]
    accepted, declined = api.apply("nina", job_id)["applicationId"], api.apply("olga", job_id)["applicationId"]
    assert api.book("alice", job_id, accepted).status == 200
    run_worker(client, aws)
    before = aws.snapshot()
    reply = _withdraw(api, "olga", job_id, declined)
    assert (reply.status, reply.body["code"]) == (409, "APPLICATION_NOT_PENDING")
    assert aws.snapshot() == before


def test_the_worker_skips_a_withdrawn_application(api: Api, aws: Aws, client) -> None:
    job_id = api.create_job("alice")["jobId"]
    app_id = api.apply("nina", job_id)["applicationId"]
    assert _withdraw(api, "nina", job_id, app_id).status == 200
    event = sqs_event([{"Body": DeclineApplication(job_id, app_id).to_json()}])
    assert client.lambda_.invoke("decline_worker", event).payload == {"batchItemFailures": []}
    assert _statuses(api, "alice", job_id) == {app_id: "WITHDRAWN"}


# ------------------------------------------------------------------ past jobs


def _move_start(aws: Aws, job_id: str, starts_at: datetime) -> None:
    """As if the job had been posted long ago: its start is now ``starts_at`` (job and listing entry)."""
    for sk in ("JOB", "LISTING"):
        aws.dynamodb.update_item(
            TableName=aws.table,
            Key={"PK": {"S": f"JOB#{job_id}"}, "SK": {"S": sk}},
            UpdateExpression="SET startsAt = :s",
            ExpressionAttributeValues={":s": {"S": format_time(starts_at)}},
        )


def test_a_job_past_its_start_takes_nothing_and_leaves_the_listing(api: Api, aws: Aws) -> None:
    past, future = api.create_job("alice")["jobId"], api.create_job("alice")["jobId"]
    app_id = api.apply("nina", past)["applicationId"]
    listing = next(i for i in aws.items() if i["SK"]["S"] == "LISTING" and i["jobId"]["S"] == past)
    starts = datetime.fromisoformat(listing["startsAt"]["S"])
    assert int(listing["expiresAt"]["N"]) == int(starts.timestamp())  # TTL drops it at the start
    _move_start(aws, past, datetime.now(UTC) - timedelta(minutes=1))
    before = aws.snapshot()

    # no longer listed, though nothing was written at its start
    assert past not in _open_ids(api) and future in _open_ids(api)
    applied = api.call("POST", f"/jobs/{past}/applications", user="olga", role="nanny", body={})
    assert (applied.status, applied.body["code"]) == (409, "JOB_STARTED")
    booked = api.book("alice", past, app_id)
    assert (booked.status, booked.body["code"]) == (409, "JOB_STARTED")
    assert aws.snapshot() == before
    # its owner still sees it, OPEN, and can cancel it to decline its applications
    mine = {j["jobId"]: j["status"] for j in api.call("GET", "/me/jobs", user="alice").body["items"]}
    assert mine == {past: "OPEN", future: "OPEN"}
    assert _cancel(api, "alice", past).body["status"] == "CANCELLED"


def test_the_writes_themselves_refuse_a_started_job(api: Api, aws: Aws) -> None:
    # Given a job read while it was open, whose start passes before the write
    job_id = api.create_job("alice")["jobId"]
    app_id = api.apply("nina", job_id)["applicationId"]
    store = bootstrap.store()
    seen_open = store.get_job(job_id)
    late = format_time(datetime.fromisoformat(seen_open.starts_at) + timedelta(milliseconds=1))
    before = aws.snapshot()

    with pytest.raises(JobStarted):
        store.add_application(seen_open, Application(new_id(), job_id, "olga", ApplicationStatus.PENDING, late, late))
    with pytest.raises(JobStarted):
        store.close_job_and_accept(user_id("alice"), job_id, app_id, late)
    assert aws.snapshot() == before


# ---------------------------------------------------------- reading and counts


def test_reading_one_application(api: Api, aws: Aws) -> None:
    job_id = api.create_job("alice")["jobId"]
    app = api.apply("nina", job_id)
    path = f"/jobs/{job_id}/applications/{app['applicationId']}"
    assert api.call("GET", path, user="alice").body == app
    assert api.call("GET", path, user="nina", role="nanny").body == app
    for user, role, code in (("olga", "nanny", "NOT_APPLICANT"), ("bob", "parent", "NOT_APPLICANT")):
        reply = api.call("GET", path, user=user, role=role)
        assert (reply.status, reply.body["code"]) == (403, code)
    unknown = api.call("GET", f"/jobs/{job_id}/applications/{new_id()}", user="alice")
    assert (unknown.status, unknown.body["code"]) == (404, "APPLICATION_NOT_FOUND")
    no_job = api.call("GET", f"/jobs/{new_id()}/applications/{app['applicationId']}", user="alice")
    assert (no_job.status, no_job.body["code"]) == (404, "JOB_NOT_FOUND")
    extra = api.call("GET", path + "?x=1", user="alice")
    assert (extra.status, extra.body["code"]) == (400, "INVALID_QUERY")


def test_cancellations_and_withdrawals_are_counted_in_emf(api: Api, aws: Aws, capsys) -> None:
    job_id = api.create_job("alice")["jobId"]
    apps = [api.apply(f"n{i}", job_id)["applicationId"] for i in range(3)]
    capsys.readouterr()
    _withdraw(api, "n0", job_id, apps[0])
    _withdraw(api, "n0", job_id, apps[0])  # a replay counts nothing
    assert _emf(capsys.readouterr().out) == {"ApplicationsWithdrawn": 1}
    _cancel(api, "alice", job_id)
    # the index holds keys only: the withdrawn application's decline is queued too (and skipped)
    assert _emf(capsys.readouterr().out) == {"JobsCancelled": 1, "DeclinesQueued": 3}
