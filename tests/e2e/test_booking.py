"""Booking over HTTP: the whole lifecycle, and many parents' clicks racing for one job."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable

import pytest
import requests

from tests.e2e.conftest import PROJECT_ROOT, Api, RunningStack, settled, unique, wait_for

pytestmark = pytest.mark.e2e

DECLINE_TIMEOUT_SECONDS = 20.0


def token_from_command(user: str, role: str) -> str:
    out = subprocess.run(  # noqa: S603 - fixed command
        [sys.executable, "-m", "tools.local.tokens", "--user", user, "--role", role],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_book_a_nanny_declines_everyone_else(stack: RunningStack, as_user: Callable[..., Api]) -> None:
    parent = as_user("parent", token=token_from_command(unique("parent"), "parent"))
    job = parent.create_job()
    assert job["status"] == "OPEN"
    nannies = [as_user("nanny", token=token_from_command(unique("nanny"), "nanny"))]
    nannies += [as_user("nanny") for _ in range(5)]
    applications = [nanny.apply(job["jobId"]) for nanny in nannies]
    assert {a["status"] for a in applications} == {"PENDING"}
    chosen = applications[2]

    booking = parent.ok("POST", f"/jobs/{job['jobId']}/book", json={"applicationId": chosen["applicationId"]})

    assert booking["acceptedApplicationId"] == chosen["applicationId"]
    assert booking["declinesQueued"] == len(applications) - 1
    final = wait_for(settled(parent, job["jobId"]), DECLINE_TIMEOUT_SECONDS, "the declines", stack)
    statuses = {a["applicationId"]: a["status"] for a in final}
    assert len(statuses) == len(applications)
    assert statuses.pop(chosen["applicationId"]) == "ACCEPTED"
    assert set(statuses.values()) == {"DECLINED"}
    closed = parent.ok("GET", f"/jobs/{job['jobId']}")
    assert closed["status"] == "CLOSED"
    assert closed["acceptedApplicationId"] == chosen["applicationId"]
    # Each nanny sees her own outcome; the closed job takes no more applications.
    mine = nannies[2].ok("GET", "/me/applications")["items"]
    assert [(a["applicationId"], a["status"]) for a in mine] == [(chosen["applicationId"], "ACCEPTED")]
    late = as_user("nanny").request("POST", f"/jobs/{job['jobId']}/applications", json={})
    assert late.status_code == 409, late.text


def test_requests_without_a_valid_token_are_refused(stack: RunningStack, as_user: Callable[..., Api]) -> None:
    assert requests.get(stack.api_url + "/jobs", timeout=10).status_code == 401
    assert as_user("parent", token="not-a-jwt").request("GET", "/jobs").status_code == 403


@pytest.mark.parametrize("round_", range(5))
def test_concurrent_bookings_have_exactly_one_winner(
    stack: RunningStack, as_user: Callable[..., Api], round_: int
) -> None:
    parent = as_user("parent")
    job_id = parent.create_job()["jobId"]
    applications = [as_user("nanny").apply(job_id) for _ in range(12)]
    start = threading.Barrier(len(applications))
    results: dict[str, requests.Response] = {}

    def book(application_id: str) -> None:
        caller = Api(stack, parent.token)  # one connection per thread
        start.wait()
        results[application_id] = caller.request("POST", f"/jobs/{job_id}/book", json={"applicationId": application_id})

    threads = [threading.Thread(target=book, args=(a["applicationId"],)) for a in applications]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    codes = Counter(r.status_code for r in results.values())
    assert codes == {200: 1, 409: len(applications) - 1}, {
        k: r.text for k, r in results.items() if r.status_code != 409
    }
    (winner,) = [app_id for app_id, r in results.items() if r.status_code == 200]
    assert results[winner].json()["declinesQueued"] == len(applications) - 1
    final = wait_for(settled(parent, job_id), DECLINE_TIMEOUT_SECONDS, "the declines", stack)
    assert Counter(a["status"] for a in final) == {"ACCEPTED": 1, "DECLINED": len(applications) - 1}
    assert [a["applicationId"] for a in final if a["status"] == "ACCEPTED"] == [winner]
    assert parent.ok("GET", f"/jobs/{job_id}")["acceptedApplicationId"] == winner
