"""After the booking, through HTTP: a parent cancels a booked job, the booked nanny backs out,
no nanny is booked twice at one time, and the scheduled settling expires and completes jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib import bootstrap
from chalicelib.domain import JobStarted, format_time, utc_now
from chalicelib.store import DynamoStore
from chalicelib.transitions import BOOKING_READ_BUDGET_SECONDS
from tests.conftest import user_id
from tests.integration.conftest import Api, Aws, run_worker

_BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=3)


def _at(hours: float) -> str:
    return format_time(_BASE + timedelta(hours=hours))


def _job(api: Api, owner: str, start: float, end: float) -> str:
    return api.create_job(owner, startsAt=_at(start), endsAt=_at(end))["jobId"]


def _apps(api: Api, owner: str, job_id: str) -> dict[str, dict[str, Any]]:
    return {a["applicationId"]: a for a in api.applications(owner, job_id)}


def _cancel(api: Api, owner: str, job_id: str) -> Any:
    return api.call("POST", f"/jobs/{job_id}/cancel", user=owner, body={})


def _withdraw(api: Api, nanny: str, job_id: str, app_id: str) -> Any:
    return api.call("POST", f"/jobs/{job_id}/applications/{app_id}/withdraw", user=nanny, role="nanny")


def _calendar(aws: Aws, nanny: str) -> set[str]:
    item = next((i for i in aws.items() if i["PK"]["S"] == f"NANNY#{user_id(nanny)}"), None)
    return {k.removeprefix("B#") for k in (item or {}) if k.startswith("B#")}


def _open_ids(api: Api) -> list[str]:
    return [j["jobId"] for j in api.call("GET", "/jobs?limit=100", user="zed", role="nanny").body["items"]]


# ------------------------------------------------------------ cancel a booking


def test_a_parent_cancels_a_booked_job_before_it_starts(api: Api, aws: Aws, client) -> None:
    # Given a booked job whose other applicant was declined
    job_id = _job(api, "alice", 0, 4)
    nina, olga = api.apply("nina", job_id)["applicationId"], api.apply("olga", job_id)["applicationId"]
    assert api.book("alice", job_id, nina).status == 200
    run_worker(client, aws)
    assert _calendar(aws, "nina") == {job_id}

    # When its parent cancels it
    reply = _cancel(api, "alice", job_id)

    # Then the job is CANCELLED, the booking CANCELLED with its reason, the nanny's time free
    assert reply.status == 200, reply.body
    assert reply.body["status"] == "CANCELLED" and reply.body["cancelledAt"]
    apps = _apps(api, "alice", job_id)
    assert (apps[nina]["status"], apps[nina]["reason"]) == ("CANCELLED", "BOOKING_CANCELLED")
    assert (apps[olga]["status"], apps[olga]["reason"]) == ("DECLINED", "JOB_BOOKED")
    assert _calendar(aws, "nina") == set()
    mine = api.call("GET", "/me/applications", user="nina", role="nanny").body["items"]
    assert [(a["status"], a["reason"]) for a in mine] == [("CANCELLED", "BOOKING_CANCELLED")]

    # And repeating it answers the same, changing nothing; nor can the nanny withdraw now
    before = aws.snapshot()
    again = _cancel(api, "alice", job_id)
    assert (again.status, again.body["status"]) == (200, "CANCELLED")
    late = _withdraw(api, "nina", job_id, nina)
    assert (late.status, late.body["code"], late.body["details"]["status"]) == (
        409,
        "APPLICATION_NOT_PENDING",
        "CANCELLED",
    )
    assert aws.snapshot()[0] == before[0]

    # And she can be booked at that time elsewhere
    other = _job(api, "bob", 1, 3)
    assert api.book("bob", other, api.apply("nina", other)["applicationId"]).status == 200


# ------------------------------------------------------------ backing out


def test_a_booked_nanny_backs_out_and_the_parent_books_another(api: Api, aws: Aws, client) -> None:
    # Given a booked job: nina booked, olga declined because of it
    job_id = _job(api, "alice", 0, 4)
    nina, olga = api.apply("nina", job_id)["applicationId"], api.apply("olga", job_id)["applicationId"]
    assert api.book("alice", job_id, nina).status == 200
    run_worker(client, aws)
    assert job_id not in _open_ids(api)

    # When nina backs out
    reply = _withdraw(api, "nina", job_id, nina)

    # Then her application is WITHDRAWN, the job OPEN again, listed, and her time free
    assert (reply.status, reply.body["status"]) == (200, "WITHDRAWN"), reply.body
    job = api.call("GET", f"/jobs/{job_id}", user="alice").body
    assert job["status"] == "OPEN" and "acceptedApplicationId" not in job and "closedAt" not in job
    assert job_id in _open_ids(api)
    assert _calendar(aws, "nina") == set()
    assert (_withdraw(api, "nina", job_id, nina).status, reply.body["status"]) == (200, "WITHDRAWN")

    # And olga, declined because of that booking, applies again and is booked
    assert _apps(api, "alice", job_id)[olga]["status"] == "DECLINED"
    again = api.apply("olga", job_id)["applicationId"]
    twice = api.call("POST", f"/jobs/{job_id}/applications", user="olga", role="nanny", body={})
    assert (twice.status, twice.body["code"]) == (409, "ALREADY_APPLIED")
    refused = api.book("alice", job_id, nina)
    assert (refused.status, refused.body["code"]) == (409, "APPLICATION_NOT_PENDING")
    booked = api.book("alice", job_id, again)
    assert booked.status == 200 and booked.body["job"]["acceptedApplicationId"] == again
    assert _calendar(aws, "olga") == {job_id}
    run_worker(client, aws)
    statuses = {a: s["status"] for a, s in _apps(api, "alice", job_id).items()}
    assert statuses == {nina: "WITHDRAWN", olga: "DECLINED", again: "ACCEPTED"}


def test_a_booked_nanny_cannot_back_out_once_the_job_started(api: Api, aws: Aws) -> None:
    job_id = _job(api, "alice", 0, 4)
    nina = api.apply("nina", job_id)["applicationId"]
    assert api.book("alice", job_id, nina).status == 200
    store = bootstrap.store()
    late = format_time(_BASE + timedelta(minutes=1))
    before = aws.snapshot()
    with pytest.raises(JobStarted):
        store.withdraw_application(user_id("nina"), job_id, nina, late)
    assert aws.snapshot() == before


# -------------------------------------------------------- one nanny, one place


def test_a_nanny_booked_at_an_overlapping_time_is_unavailable(api: Api, aws: Aws) -> None:
    # Given nina booked 0-4 h by alice
    first = _job(api, "alice", 0, 4)
    assert api.book("alice", first, api.apply("nina", first)["applicationId"]).status == 200
    overlapping, touching = _job(api, "bob", 3, 5), _job(api, "carol", 4, 6)
    app_overlapping = api.apply("nina", overlapping)["applicationId"]
    app_touching = api.apply("nina", touching)["applicationId"]
    before = aws.snapshot()

    # When bob books her from 3 h: refused, naming the other job, nothing changed
    refused = api.book("bob", overlapping, app_overlapping)
    assert (refused.status, refused.body["code"]) == (409, "NANNY_UNAVAILABLE"), refused.body
    assert refused.body["details"]["jobId"] == first
    assert aws.snapshot() == before

    # And carol books her from 4 h, when the first one ends: [startsAt, endsAt) do not overlap
    assert api.book("carol", touching, app_touching).status == 200
    assert _calendar(aws, "nina") == {first, touching}

    # And once alice cancels, bob can book her
    assert _cancel(api, "alice", first).status == 200
    assert api.book("bob", overlapping, app_overlapping).status == 409  # still overlaps carol's 4-6 h
    assert _cancel(api, "carol", touching).status == 200
    assert api.book("bob", overlapping, app_overlapping).status == 200


# ------------------------------------------------------ expiry and completion


def test_settling_expires_a_started_open_job_and_declines_its_applications(api: Api, aws: Aws, client) -> None:
    job_id = _job(api, "alice", 0, 4)
    apps = [api.apply(f"n{i}", job_id)["applicationId"] for i in range(3)]
    later = _job(api, "alice", 10, 12)
    service = bootstrap.service()

    # Before its start nothing is due
    assert service.settle_due_jobs(now=_at(-1)).expired == 0

    # After it: EXPIRED, out of the listing, its applications declined with JOB_EXPIRED
    report = service.settle_due_jobs(now=_at(0.5))
    assert (report.expired, report.declines_queued, report.failed) == (1, 3, 0)
    job = api.call("GET", f"/jobs/{job_id}", user="alice").body
    assert (job["status"], job["expiredAt"]) == ("EXPIRED", _at(0.5))
    run_worker(client, aws)
    assert {(a["status"], a["reason"]) for a in _apps(api, "alice", job_id).values()} == {("DECLINED", "JOB_EXPIRED")}
    assert len(apps) == 3
    mine = {j["jobId"]: j["status"] for j in api.call("GET", "/me/jobs", user="alice").body["items"]}
    assert mine == {job_id: "EXPIRED", later: "OPEN"}

    # A second run changes nothing
    before = aws.snapshot()
    assert service.settle_due_jobs(now=_at(0.6)) == type(report)()
    assert aws.snapshot() == before


def test_an_expiry_interrupted_before_its_declines_is_finished_by_the_next_run(api: Api, aws: Aws, client) -> None:
    job_id = _job(api, "alice", 0, 4)
    apps = [api.apply(f"n{i}", job_id)["applicationId"] for i in range(2)]
    # the run died right after the job's write
    assert bootstrap.store().expire_job(job_id, _at(0.5)) is True
    assert aws.queue_depth() == 0

    report = bootstrap.service().settle_due_jobs(now=_at(0.6))

    assert (report.expired, report.declines_queued) == (0, 2)
    run_worker(client, aws)
    assert {a: s["status"] for a, s in _apps(api, "alice", job_id).items()} == dict.fromkeys(apps, "DECLINED")
    assert not [i for i in aws.items() if i.get("jobId", {}).get("S") == job_id and "GSI4PK" in i]


def test_settling_completes_a_booked_job_once_it_ended(api: Api, aws: Aws) -> None:
    job_id = _job(api, "alice", 0, 4)
    nina = api.apply("nina", job_id)["applicationId"]
    assert api.book("alice", job_id, nina).status == 200
    service = bootstrap.service()

    # Started but not ended: nothing (a booked job does not expire)
    assert service.settle_due_jobs(now=_at(1)) == type(service.settle_due_jobs(now=_at(1)))()
    assert api.call("GET", f"/jobs/{job_id}", user="alice").body["status"] == "CLOSED"

    report = service.settle_due_jobs(now=_at(4))

    assert report.completed == 1
    job = api.call("GET", f"/jobs/{job_id}", user="alice").body
    assert (job["status"], job["completedAt"], job["acceptedApplicationId"]) == ("COMPLETED", _at(4), nina)
    assert _calendar(aws, "nina") == set()
    assert service.settle_due_jobs(now=_at(5)).completed == 0
    late = _cancel(api, "alice", job_id)
    assert (late.status, late.body["code"]) == (409, "JOB_NOT_OPEN")


def test_the_scheduled_function_runs_the_settling(api: Api, aws: Aws, client) -> None:
    # A job whose start has just passed (moved in the table: the API refuses a past start)
    job_id = _job(api, "alice", 0, 4)
    api.apply("nina", job_id)
    past = format_time(utc_now() - timedelta(seconds=5))
    for sk, extra in (("JOB", ", GSI4SK = :s"), ("LISTING", "")):
        aws.dynamodb.update_item(
            TableName=aws.table,
            Key={"PK": {"S": f"JOB#{job_id}"}, "SK": {"S": sk}},
            UpdateExpression="SET startsAt = :s" + extra,
            ExpressionAttributeValues={":s": {"S": past}},
        )

    event = client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=[], region="us-east-1"
    )
    result = client.lambda_.invoke("settle_due_jobs", event).payload

    assert result == {"expired": 1, "completed": 0, "failed": 0}
    assert api.call("GET", f"/jobs/{job_id}", user="alice").body["status"] == "EXPIRED"


def test_a_booking_whose_reads_were_too_slow_answers_503_and_writes_nothing(api: Api, aws: Aws) -> None:
    # Given reads that took longer than the booking's budget (the API must answer within 10 s)
    job_id = _job(api, "alice", 0, 4)
    app_id = api.apply("nina", job_id)["applicationId"]
    ticks = iter([0.0, BOOKING_READ_BUDGET_SECONDS + 0.1])
    bootstrap.override(store=DynamoStore(bootstrap.dynamodb_client(), aws.table, monotonic=lambda: next(ticks)))
    before = aws.snapshot()

    reply = api.book("alice", job_id, app_id)

    # Then a 503 the client repeats, and nothing was written
    assert (reply.status, reply.body["code"]) == (503, "SERVICE_UNAVAILABLE"), reply.body
    assert aws.snapshot() == before
    bootstrap.override(store=DynamoStore(bootstrap.dynamodb_client(), aws.table))
    assert api.book("alice", job_id, app_id).status == 200
