"""A job's whole life over HTTP on the local stack: a booking cancelled, a nanny backing out,
a nanny booked elsewhere at that time, and jobs expiring and completing by the scheduled
function the local stack runs every few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import Api, RunningStack, wait_for

pytestmark = pytest.mark.e2e

DECLINE_TIMEOUT_SECONDS = 20.0


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _post_job(parent: Api, start: datetime, hours: float = 3.0, end: datetime | None = None) -> str:
    body = {"title": "Life", "startsAt": _iso(start), "endsAt": _iso(end or start + timedelta(hours=hours))}
    return parent.ok("POST", "/jobs", 201, json=body)["jobId"]


def _statuses(parent: Api, job_id: str) -> dict[str, tuple[str, str | None]]:
    return {a["applicationId"]: (a["status"], a.get("reason")) for a in parent.applications(job_id)}


def test_a_booked_job_cancelled_by_its_parent(stack: RunningStack, as_user: Callable[..., Api]) -> None:
    parent, nina, olga = as_user("parent"), as_user("nanny"), as_user("nanny")
    job_id = _post_job(parent, datetime.now(UTC) + timedelta(days=2))
    booked, other = nina.apply(job_id)["applicationId"], olga.apply(job_id)["applicationId"]
    parent.ok("POST", f"/jobs/{job_id}/book", json={"applicationId": booked})

    job = parent.ok("POST", f"/jobs/{job_id}/cancel", json={"reason": "Plans changed."})

    assert job["status"] == "CANCELLED"
    final = wait_for(
        lambda: (s := _statuses(parent, job_id))[other][0] == "DECLINED" and s,
        DECLINE_TIMEOUT_SECONDS,
        "the decline",
        stack,
    )
    assert final == {booked: ("CANCELLED", "BOOKING_CANCELLED"), other: ("DECLINED", "JOB_BOOKED")}


def test_a_nanny_backs_out_and_the_parent_books_another(stack: RunningStack, as_user: Callable[..., Api]) -> None:
    parent, nina, olga = as_user("parent"), as_user("nanny"), as_user("nanny")
    job_id = _post_job(parent, datetime.now(UTC) + timedelta(days=2))
    first, second = nina.apply(job_id)["applicationId"], olga.apply(job_id)["applicationId"]
    parent.ok("POST", f"/jobs/{job_id}/book", json={"applicationId": first})
    wait_for(lambda: _statuses(parent, job_id)[second][0] == "DECLINED", DECLINE_TIMEOUT_SECONDS, "the decline", stack)

    withdrawn = nina.ok("POST", f"/jobs/{job_id}/applications/{first}/withdraw", json={})

    assert withdrawn["status"] == "WITHDRAWN"
    reopened = parent.ok("GET", f"/jobs/{job_id}")
    assert reopened["status"] == "OPEN" and "acceptedApplicationId" not in reopened
    again = olga.apply(job_id)["applicationId"]
    booking = parent.ok("POST", f"/jobs/{job_id}/book", json={"applicationId": again})
    assert booking["job"]["status"] == "CLOSED" and booking["acceptedApplicationId"] == again


def test_a_nanny_booked_at_an_overlapping_time_is_unavailable(stack: RunningStack, as_user: Callable[..., Api]) -> None:
    alice, bob, nina = as_user("parent"), as_user("parent"), as_user("nanny")
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=5)
    first, second = _post_job(alice, start, 4), _post_job(bob, start + timedelta(hours=2), 4)
    a1, a2 = nina.apply(first)["applicationId"], nina.apply(second)["applicationId"]
    alice.ok("POST", f"/jobs/{first}/book", json={"applicationId": a1})

    refused = bob.request("POST", f"/jobs/{second}/book", json={"applicationId": a2})

    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "NANNY_UNAVAILABLE" and refused.json()["details"]["jobId"] == first
    assert bob.ok("GET", f"/jobs/{second}")["status"] == "OPEN"


def test_a_job_starting_in_20_s_expires_with_its_applications_declined(
    stack: RunningStack, as_user: Callable[..., Api]
) -> None:
    parent = as_user("parent")
    start = datetime.now(UTC) + timedelta(seconds=20)
    job_id = _post_job(parent, start, 2)
    apps = [as_user("nanny").apply(job_id)["applicationId"] for _ in range(3)]

    def expired() -> dict[str, Any] | None:
        job = parent.ok("GET", f"/jobs/{job_id}")
        statuses = _statuses(parent, job_id)
        done = job["status"] == "EXPIRED" and all(s == ("DECLINED", "JOB_EXPIRED") for s in statuses.values())
        return job if done else None

    wait_for(lambda: datetime.now(UTC) >= start, 30, "the start", stack, interval=0.5)
    job = wait_for(expired, 60, "the expiry", stack, interval=0.5)
    took = (datetime.fromisoformat(job["expiredAt"]) - start).total_seconds()
    assert 0 <= took < 60, took
    print(f"expired {took:.1f} s after its start")
    assert len(_statuses(parent, job_id)) == len(apps)
    mine = {j["jobId"]: j["status"] for j in parent.ok("GET", "/me/jobs")["items"]}
    assert mine[job_id] == "EXPIRED"


def test_a_booked_job_whose_end_passed_completes(stack: RunningStack, as_user: Callable[..., Api]) -> None:
    parent, nina = as_user("parent"), as_user("nanny")
    start = datetime.now(UTC) + timedelta(seconds=6)
    job_id = _post_job(parent, start, end=start + timedelta(seconds=4))
    app_id = nina.apply(job_id)["applicationId"]
    parent.ok("POST", f"/jobs/{job_id}/book", json={"applicationId": app_id})
    ends = start + timedelta(seconds=4)

    job = wait_for(
        lambda: (j := parent.ok("GET", f"/jobs/{job_id}"))["status"] == "COMPLETED" and j,
        60,
        "the completion",
        stack,
        interval=0.5,
    )

    assert datetime.fromisoformat(job["completedAt"]) >= ends
    print(f"completed {(datetime.fromisoformat(job['completedAt']) - ends).total_seconds():.1f} s after its end")
    assert time.time() - ends.timestamp() < 60
    assert job["acceptedApplicationId"] == app_id
