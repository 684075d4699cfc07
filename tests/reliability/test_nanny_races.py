"""No nanny booked twice at once, and a booking's cancel racing its nanny's withdrawal, over
HTTP against the local stack (MiniStack: moto's transactions are not atomic under races).

The promises: of several parents booking the same nanny for overlapping jobs at the same
moment exactly one succeeds, every time, and her calendar holds that one job; of a parent
cancelling a booked job and its nanny backing out at the same moment exactly one changes the
booking (the application ends CANCELLED or WITHDRAWN, never both, never neither).
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tests.reliability.conftest import (
    FIGURES,
    LONG,
    Stack,
    answer_code,
    nanny_token,
    parent_token,
    run_parallel,
    scaled,
)

pytestmark = pytest.mark.e2e

SEED = random.randrange(1 << 30) if LONG else 20261204
AREA = "nanny races"


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _calendar(stack: Stack, applicant: str) -> set[str]:
    key = {"PK": {"S": f"NANNY#{applicant}"}, "SK": {"S": "CALENDAR"}}
    item = stack.dynamodb.get_item(TableName=stack.table, Key=key, ConsistentRead=True).get("Item") or {}
    return {k.removeprefix("B#") for k in item if k.startswith("B#")}


def _applicant(stack: Stack, job_id: str, application_id: str) -> str:
    item = next(i for i in stack.job_partition(job_id) if i.get("applicationId", {}).get("S") == application_id)
    return item["applicant"]["S"]


def test_parents_booking_one_nanny_for_overlapping_jobs_at_once_get_exactly_one(stack: Stack) -> None:
    races = scaled(30, 200)
    rng = random.Random(SEED)
    problems: list[str] = []
    codes: Counter[str] = Counter()
    for race in range(races):
        nanny = nanny_token()
        base = datetime.now(UTC).replace(microsecond=0) + timedelta(days=rng.randint(3, 300), hours=race % 24)
        parents = [parent_token() for _ in range(rng.randint(3, 6))]
        # Every pair overlaps: starts within one hour of each other, each two hours long.
        jobs = []
        for parent in parents:
            start = base + timedelta(minutes=rng.randint(0, 59))
            job_id = stack.create_job(parent, startsAt=_iso(start), endsAt=_iso(start + timedelta(hours=2)))["jobId"]
            jobs.append((parent, job_id, stack.apply(nanny, job_id)["applicationId"]))
        calls = [(f"/jobs/{job_id}/book", parent, {"applicationId": app}) for parent, job_id, app in jobs]

        replies = run_parallel(stack.post, calls, stack=stack)

        FIGURES.add(AREA, "overlap races")
        FIGURES.add(AREA, "overlap bookings sent", len(calls))
        codes.update(answer_code(r) for r in replies)
        won = [job_id for (_, job_id, _), r in zip(jobs, replies, strict=True) if answer_code(r) == "200"]
        if len(won) != 1:
            FIGURES.add(AREA, "races without exactly one booking")
            problems.append(f"race {race}: {len(won)} bookings won: {[answer_code(r) for r in replies]}")
            continue
        for (_, job_id, _), r in zip(jobs, replies, strict=True):
            if job_id in won:
                continue
            if answer_code(r) == "409 NANNY_UNAVAILABLE":
                if r.json()["details"]["jobId"] != won[0]:
                    problems.append(f"race {race}: refused naming {r.json()['details']['jobId']}, not {won[0]}")
            elif answer_code(r) != "409 CONCURRENT_UPDATE":
                problems.append(f"race {race}: a loser got {answer_code(r)}")
        statuses = Counter(stack.job_item(job_id)["status"]["S"] for _, job_id, _ in jobs)
        calendar = _calendar(stack, _applicant(stack, jobs[0][1], jobs[0][2]))
        if statuses != Counter({"CLOSED": 1, "OPEN": len(jobs) - 1}) or calendar != set(won):
            FIGURES.add(AREA, "wrong final states")
            problems.append(f"race {race}: jobs {dict(statuses)}, calendar {calendar}, won {won}")
    for name in ("races without exactly one booking", "wrong final states"):
        FIGURES.add(AREA, name, 0)
    FIGURES.note(f"overlap race answers: {dict(sorted(codes.items()))}")
    assert not problems, "\n".join(problems[:20])


def test_a_cancel_racing_the_booked_nanny_s_withdrawal_has_one_winner(stack: Stack) -> None:
    races = scaled(30, 200)
    problems: list[str] = []
    codes: Counter[str] = Counter()
    for race in range(races):
        parent, nanny = parent_token(), nanny_token()
        job_id = stack.create_job(parent)["jobId"]
        app_id = stack.apply(nanny, job_id)["applicationId"]
        stack.ok("POST", f"/jobs/{job_id}/book", parent, json={"applicationId": app_id})
        calls = [
            (f"/jobs/{job_id}/cancel", parent, {}),
            (f"/jobs/{job_id}/applications/{app_id}/withdraw", nanny, {}),
        ]
        if race % 2:
            calls.reverse()

        replies = run_parallel(stack.post, calls, stack=stack)

        FIGURES.add(AREA, "cancel-vs-withdraw races")
        kinds = ["cancel" if c[0].endswith("/cancel") else "withdraw" for c in calls]
        by_kind = dict(zip(kinds, replies, strict=True))
        codes.update(f"{kind} {answer_code(r)}" for kind, r in by_kind.items())
        app = stack.statuses(job_id)[app_id]
        job = stack.job_item(job_id)["status"]["S"]
        cancel, withdraw = answer_code(by_kind["cancel"]), answer_code(by_kind["withdraw"])
        if app == "CANCELLED" and job == "CANCELLED" and withdraw.startswith("409"):
            FIGURES.add(AREA, "won by the cancel")
        elif app == "WITHDRAWN" and withdraw == "200" and cancel.startswith("409") and job == "OPEN":
            FIGURES.add(AREA, "won by the withdrawal")
        elif app == "WITHDRAWN" and withdraw == "200" and cancel == "200" and job == "CANCELLED":
            # the withdrawal first, then the cancel of the job it reopened: the booking changed once
            FIGURES.add(AREA, "won by the withdrawal, then the open job cancelled")
        else:
            FIGURES.add(AREA, "cancel-vs-withdraw with both or neither changing the booking")
            problems.append(f"race {race}: cancel {cancel}, withdraw {withdraw}, application {app}, job {job}")
        calendar = _calendar(stack, _applicant(stack, job_id, app_id))
        if calendar:
            problems.append(f"race {race}: the nanny's calendar still holds {calendar}")
    FIGURES.add(AREA, "cancel-vs-withdraw with both or neither changing the booking", 0)
    FIGURES.note(f"cancel-vs-withdraw answers: {dict(sorted(codes.items()))}")
    assert not problems, "\n".join(problems[:20])
