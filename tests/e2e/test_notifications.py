"""On the local stack: the stream heals what a request left behind, and the people concerned get one email each."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from chalicelib.domain import format_time, utc_now
from chalicelib.store import DynamoStore
from tests.e2e.conftest import Api, RunningStack, settled, unique, wait_for
from tools.local.mail import sent_emails

EMAIL_WAIT_SECONDS = 20


def _emails_to(stack: RunningStack, people: list[str]) -> list[dict[str, Any]]:
    addresses = {f"{p}@example.com" for p in people}
    return [e for e in sent_emails(stack.ready["emulator_endpoint"]) if set(e["to"]) & addresses]


def _job_with_nannies(as_user: Callable[..., Api], n: int = 4) -> tuple[Api, str, list[str], list[str]]:
    parent = as_user("parent")
    job_id = parent.create_job()["jobId"]
    nannies = [unique("nanny") for _ in range(n)]
    apps = [as_user("nanny", user=name).apply(job_id)["applicationId"] for name in nannies]
    return parent, job_id, nannies, apps


def test_a_booking_emails_each_nanny_once_even_when_repeated(stack: RunningStack, as_user: Callable[..., Api]) -> None:
    parent, job_id, nannies, apps = _job_with_nannies(as_user)

    parent.ok("POST", f"/jobs/{job_id}/book", json={"applicationId": apps[0]})
    emails = wait_for(
        lambda: (found := _emails_to(stack, nannies)) and len(found) >= 4 and found,
        EMAIL_WAIT_SECONDS,
        "an email to each of the four nannies",
        stack,
    )
    parent.ok("POST", f"/jobs/{job_id}/book", json={"applicationId": apps[0]})  # the same booking again
    time.sleep(3)  # the stream, the worker and the mailer have had time to do anything they would do

    assert Counter(e["to"][0] for e in _emails_to(stack, nannies)) == Counter(f"{n}@example.com" for n in nannies)
    subjects = {e["to"][0]: e["subject"] for e in emails}
    assert subjects[f"{nannies[0]}@example.com"] == "You are booked: Evening sitter"
    assert {subjects[f"{n}@example.com"] for n in nannies[1:]} == {'"Evening sitter" has been booked with someone else'}


def test_a_cancellation_emails_every_applicant(stack: RunningStack, as_user: Callable[..., Api]) -> None:
    parent, job_id, nannies, _ = _job_with_nannies(as_user, 3)

    parent.ok("POST", f"/jobs/{job_id}/cancel", json={})

    emails = wait_for(
        lambda: (found := _emails_to(stack, nannies)) and len(found) >= 3 and found,
        EMAIL_WAIT_SECONDS,
        "an email to each applicant",
        stack,
    )
    assert {e["subject"] for e in emails} == {'"Evening sitter" was cancelled'}


def test_a_commit_whose_request_died_is_healed_by_the_stream(stack: RunningStack, as_user: Callable[..., Api]) -> None:
    """The booking's and the cancellation's transactions alone, as when their Lambda dies right after:
    no index read, no send, no sweep, no repeat and no reconcile."""
    store = DynamoStore(stack.client("dynamodb"), stack.table)
    booked_parent, booked_job, _, booked_apps = _job_with_nannies(as_user)
    cancelled_parent, cancelled_job, _, _ = _job_with_nannies(as_user, 3)

    assert not store.close_job_and_accept(
        _owner(booked_parent), booked_job, booked_apps[0], format_time(utc_now())
    ).replayed
    assert not store.cancel_job(_owner(cancelled_parent), cancelled_job, None, format_time(utc_now())).replayed

    booked = wait_for(settled(booked_parent, booked_job), EMAIL_WAIT_SECONDS, "the booking healed", stack)
    cancelled = wait_for(settled(cancelled_parent, cancelled_job), EMAIL_WAIT_SECONDS, "the cancellation healed", stack)
    assert Counter(a["status"] for a in booked) == Counter(ACCEPTED=1, DECLINED=3)
    assert Counter(a["status"] for a in cancelled) == Counter(DECLINED=3)


def _owner(api: Api) -> str:
    return api.ok("GET", "/me/jobs")["items"][0]["owner"]
