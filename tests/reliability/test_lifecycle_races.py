"""Cancels racing bookings, and withdrawals racing bookings, over HTTP against the local stack.

The promise: of any mix of cancels and bookings on one job at most one booking wins; a
cancel either wins on the OPEN job (no booking then) or cancels the booking that won before
it (CANCELLED, its application CANCELLED); the losers get 409 JOB_NOT_OPEN. Of a withdrawal
and a booking of the same application the booking can only come first: the withdrawal then
backs the nanny out of it (the job OPEN again). The worker never declines a WITHDRAWN or
CANCELLED application and leaves nothing PENDING.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from tests.reliability.conftest import (
    FIGURES,
    LONG,
    Stack,
    answer_code,
    applications,
    parent_token,
    run_parallel,
    scaled,
)

pytestmark = pytest.mark.e2e

SEED = random.randrange(1 << 30) if LONG else 20240602
PACE = 10  # rounds between waits for the worker to empty the queue
AREA = "lifecycle races"


def _job(stack: Stack, job_id: str) -> dict[str, str]:
    item = stack.job_item(job_id) or {}
    return {k: v["S"] for k, v in item.items() if "S" in v}


def test_cancels_racing_bookings_have_exactly_one_kind_of_winner(stack: Stack) -> None:
    races = scaled(50, 200)
    rng = random.Random(SEED)
    problems: list[str] = []
    codes: Counter[str] = Counter()
    # job -> (the booked application or None, every one, whether a cancel won)
    expected: dict[str, tuple[str | None, set[str], bool]] = {}
    for race in range(races):
        if race % PACE == PACE - 1:
            stack.wait_queue_empty()
        parent = parent_token()
        job_id = stack.create_job(parent)["jobId"]
        apps = [a for _, a in applications(stack, job_id, rng.randint(2, 4))]
        bookings = [(f"/jobs/{job_id}/book", parent, {"applicationId": a}) for a in apps]
        cancels = [(f"/jobs/{job_id}/cancel", parent, {"reason": f"race {race}"})] * rng.randint(1, 3)
        calls = bookings + cancels
        rng.shuffle(calls)

        replies = run_parallel(stack.post, calls, stack=stack)

        FIGURES.add(AREA, "cancel-vs-book races")
        FIGURES.add(AREA, "cancel-vs-book requests", len(calls))
        booked = [c[2]["applicationId"] for c, r in zip(calls, replies, strict=True) if c in bookings and _ok(r)]
        cancelled = sum(1 for c, r in zip(calls, replies, strict=True) if c in cancels and _ok(r))
        codes.update(
            f"{'book' if c in bookings else 'cancel'} {answer_code(r)}" for c, r in zip(calls, replies, strict=True)
        )
        if len(booked) > 1:
            FIGURES.add(AREA, "double bookings")
            problems.append(f"race {race}: {len(booked)} bookings won")
        elif not booked and not cancelled:
            FIGURES.add(AREA, "races without a winner")
            problems.append(f"race {race}: no winner: {[answer_code(r) for r in replies]}")
        for c, r in zip(calls, replies, strict=True):
            won = (c in bookings and booked == [c[2]["applicationId"]]) or (c in cancels and cancelled)
            if not won and answer_code(r) not in ("409 JOB_NOT_OPEN", "409 CONCURRENT_UPDATE"):
                problems.append(f"race {race}: a loser got {answer_code(r)}")
        expected[job_id] = (booked[0] if booked else None, set(apps), bool(cancelled))

    settled = stack.wait_settled(expected, AREA)
    for job_id, (winner, apps, was_cancelled) in expected.items():
        statuses, job = settled[job_id], _job(stack, job_id)
        if winner is not None and was_cancelled:
            # booked, then the booking cancelled
            right = job.get("status") == "CANCELLED" and job.get("acceptedApplicationId") == winner
            right = right and statuses == {a: "CANCELLED" if a == winner else "DECLINED" for a in apps}
        elif winner is not None:
            right = job.get("status") == "CLOSED" and job.get("acceptedApplicationId") == winner
            right = right and statuses == {a: "ACCEPTED" if a == winner else "DECLINED" for a in apps}
        else:
            right = job.get("status") == "CANCELLED" and "acceptedApplicationId" not in job
            right = right and statuses == dict.fromkeys(apps, "DECLINED")
        if not right:
            FIGURES.add(AREA, "wrong final states")
            problems.append(f"job {job_id}: winner {winner}, stored {job.get('status')} {statuses}")
    outcomes = Counter(("booked" if w else "") + ("cancelled" if c else "") for w, _, c in expected.values())
    FIGURES.add(AREA, "won by a booking", outcomes["booked"])
    FIGURES.add(AREA, "won by a cancel", outcomes["cancelled"])
    FIGURES.add(AREA, "booked, then the booking cancelled", outcomes["bookedcancelled"])
    for name in ("double bookings", "races without a winner", "wrong final states"):
        FIGURES.add(AREA, name, 0)
    FIGURES.note(f"cancel-vs-book answers: {dict(sorted(codes.items()))}")
    assert not problems, "\n".join(problems[:20])


def test_a_withdrawal_racing_the_booking_of_the_same_application_has_one_winner(stack: Stack) -> None:
    races = scaled(50, 200)
    problems: list[str] = []
    codes: Counter[str] = Counter()
    expected: dict[str, dict[str, str]] = {}  # job -> every application's final status
    for race in range(races):
        if race % PACE == PACE - 1:
            stack.wait_queue_empty()
        parent = parent_token()
        job_id = stack.create_job(parent)["jobId"]
        (nanny, raced), (_, other), (_, third) = applications(stack, job_id, 3)
        calls = [
            (f"/jobs/{job_id}/book", parent, {"applicationId": raced}),
            (f"/jobs/{job_id}/applications/{raced}/withdraw", nanny, {}),
        ]
        if race % 2:
            calls.reverse()

        replies = run_parallel(stack.post, calls, stack=stack)

        FIGURES.add(AREA, "withdraw-vs-book races")
        by_kind = {("book" if c[0].endswith("/book") else "withdraw"): r for c, r in zip(calls, replies, strict=True)}
        codes.update(f"{kind} {answer_code(r)}" for kind, r in by_kind.items())
        booked, withdrawn = _ok(by_kind["book"]), _ok(by_kind["withdraw"])
        if not booked and not withdrawn:
            FIGURES.add(AREA, "withdraw-vs-book with neither winning")
            problems.append(
                f"race {race}: book {answer_code(by_kind['book'])}, withdraw {answer_code(by_kind['withdraw'])}"
            )
            continue
        if booked and withdrawn:
            # booked first, then the nanny backed out: the job is OPEN again, the others declined
            FIGURES.add(AREA, "booked, then the nanny backed out")
            job = _job(stack, job_id)
            if job.get("status") != "OPEN" or "acceptedApplicationId" in job:
                problems.append(f"race {race}: backed out, but the job is {job}")
            expected[job_id] = {raced: "WITHDRAWN", other: "DECLINED", third: "DECLINED"}
            continue
        loser = by_kind["withdraw" if booked else "book"]
        if answer_code(loser) not in ("409 APPLICATION_NOT_PENDING", "409 CONCURRENT_UPDATE"):
            problems.append(f"race {race}: the loser got {answer_code(loser)}")
        if withdrawn:
            # the parent books someone else: the worker must leave the withdrawn one alone
            follow = stack.call("POST", f"/jobs/{job_id}/book", parent, json={"applicationId": other})
            if follow.status_code != 200:
                problems.append(f"race {race}: booking another after a withdrawal got {answer_code(follow)}")
                continue
        FIGURES.add(AREA, "won by the booking" if booked else "won by the withdrawal")
        if booked:
            expected[job_id] = {raced: "ACCEPTED", other: "DECLINED", third: "DECLINED"}
        else:
            expected[job_id] = {raced: "WITHDRAWN", other: "ACCEPTED", third: "DECLINED"}

    settled = stack.wait_settled(expected, AREA)
    for job_id, want in expected.items():
        if settled[job_id] != want:
            raced_withdrawn = "WITHDRAWN" in want.values() and "WITHDRAWN" not in settled[job_id].values()
            FIGURES.add(AREA, "withdrawn applications declined" if raced_withdrawn else "wrong final states")
            problems.append(f"job {job_id}: wanted {want}, stored {settled[job_id]}")
    for name in ("withdraw-vs-book with neither winning", "withdrawn applications declined"):
        FIGURES.add(AREA, name, 0)
    FIGURES.note(f"withdraw-vs-book answers: {dict(sorted(codes.items()))}")
    assert not problems, "\n".join(problems[:20])


def _ok(resp: Any) -> bool:
    return getattr(resp, "status_code", None) == 200
