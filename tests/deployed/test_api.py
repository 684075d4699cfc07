"""The deployed stage through API Gateway, with ID tokens of its own user pool."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.deployed.api_client import Answer, call, sign_up
from tests.deployed.stage import FIGURES, Deployment

DECLINES_DEADLINE_SECONDS = 60


@pytest.fixture(scope="module")
def parent(deployment: Deployment) -> tuple[str, str]:
    return sign_up(deployment, "parents")


def _job_body() -> dict[str, str]:
    day = datetime.now(UTC).date() + timedelta(days=2)
    return {"title": "Deployed stage", "startsAt": f"{day}T18:00:00.000Z", "endsAt": f"{day}T22:00:00.000Z"}


def test_without_a_token_api_gateway_answers_401(deployment: Deployment) -> None:
    answer = call(deployment, "GET", "/jobs")
    assert answer.status == 401
    assert answer.body == {"message": "Unauthorized"}


def test_a_token_that_fails_verification_is_denied_with_403(deployment: Deployment, parent: tuple[str, str]) -> None:
    _, token = parent
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"
    for bad in ("not-a-jwt", forged):
        answer = call(deployment, "GET", "/jobs", bad)
        assert answer.status == 403, bad
        assert answer.body == {"Message": "User is not authorized to access this resource"}


def test_the_lifecycle_through_the_deployed_worker(deployment: Deployment, parent: tuple[str, str]) -> None:
    # Given a parent and three nannies of the stage's user pool
    owner, parent_token = parent
    nannies = [sign_up(deployment, "nannies") for _ in range(3)]
    timings: dict[str, list[float]] = {}

    def timed(name: str, answer: Answer) -> Answer:
        timings.setdefault(name, []).append(answer.seconds)
        return answer

    # When the parent posts a job, the nannies apply, and the parent books the first
    created = timed("create job", call(deployment, "POST", "/jobs", parent_token, _job_body()))
    assert created.status == 201, created.body
    job_id = created.body["jobId"]
    assert created.body["ownerName"] == owner
    applications = []
    for username, token in nannies:
        applied = timed("apply", call(deployment, "POST", f"/jobs/{job_id}/applications", token, {"message": "Hi"}))
        assert applied.status == 201, applied.body
        assert applied.body["applicantName"] == username
        applications.append(applied.body["applicationId"])
    choice = {"applicationId": applications[0]}
    booked = timed("book", call(deployment, "POST", f"/jobs/{job_id}/book", parent_token, choice))
    assert booked.status == 200, booked.body
    assert booked.body["declinesQueued"] == 2
    assert booked.body["job"]["status"] == "CLOSED"

    # Then the deployed worker, fed by the subscription, declines the other two
    started = time.monotonic()
    while True:
        listed = timed("list applications", call(deployment, "GET", f"/jobs/{job_id}/applications", parent_token))
        assert listed.status == 200, listed.body
        statuses = {a["applicationId"]: a["status"] for a in listed.body["items"]}
        if list(statuses.values()).count("DECLINED") == 2 or time.monotonic() - started > DECLINES_DEADLINE_SECONDS:
            break
        time.sleep(0.25)
    declines_seconds = time.monotonic() - started
    assert statuses == {applications[0]: "ACCEPTED", applications[1]: "DECLINED", applications[2]: "DECLINED"}

    # And a nanny cannot book, nor apply twice
    other = {"applicationId": applications[1]}
    assert call(deployment, "POST", f"/jobs/{job_id}/book", nannies[1][1], other).status == 403
    again = call(deployment, "POST", f"/jobs/{job_id}/applications", nannies[0][1], {})
    assert again.status == 409
    assert again.body["code"] in ("ALREADY_APPLIED", "JOB_NOT_OPEN")

    for name, seconds in timings.items():
        shown = ", ".join(f"{s * 1000:.0f}" for s in seconds[:4])
        FIGURES.append(f"through API Gateway, {name}: {shown} ms")
    FIGURES.append(f"declines applied by the deployed worker {declines_seconds:.1f} s after the booking answered")
