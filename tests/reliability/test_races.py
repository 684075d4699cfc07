"""Races over HTTP against the local stack (MiniStack's transactions are atomic; moto's are not).

The promise: a job is booked at most once, every other applicant is declined, nothing
is lost and nobody gets in after the job closed.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tests.reliability.conftest import (
    FIGURES,
    LONG,
    Stack,
    answer_code,
    applications,
    nanny_token,
    parent_token,
    run_parallel,
    scaled,
    unique,
)

pytestmark = pytest.mark.e2e

SEED = random.randrange(1 << 30) if LONG else 20240601
PACE = 10  # rounds between waits for the worker to empty the queue


def _wrong_final_states(
    stack: Stack, expected: dict[str, tuple[str, set[str]]]
) -> list[tuple[str, dict[str, str], list[str]]]:
    """Once the worker has settled them: the jobs whose applications are not exactly the
    expected ones with the winner ACCEPTED and every other DECLINED (job, statuses, accepted)."""
    settled = stack.wait_settled(expected, "races")
    wrong = []
    for job_id, (winner, apps) in expected.items():
        statuses = settled[job_id]
        accepted = [a for a, s in statuses.items() if s == "ACCEPTED"]
        if set(statuses) != apps or accepted != [winner] or Counter(statuses.values())["DECLINED"] != len(apps) - 1:
            wrong.append((job_id, statuses, accepted))
    return wrong


def test_concurrent_bookings_of_one_job_have_exactly_one_winner(stack: Stack) -> None:
    races = scaled(20, 200)
    rng = random.Random(SEED)
    problems: list[str] = []
    expected: dict[str, tuple[str, set[str]]] = {}  # job -> (winner, every application)
    codes: Counter[str] = Counter()
    for race in range(races):
        if race % PACE == PACE - 1:
            stack.wait_queue_empty()  # let the worker catch up: the queue stays short
        parent = parent_token()
        job_id = stack.create_job(parent)["jobId"]
        apps = [a for _, a in applications(stack, job_id, rng.randint(10, 20))]

        replies = run_parallel(
            stack.send, [("POST", f"/jobs/{job_id}/book", parent, {"applicationId": a}) for a in apps], stack=stack
        )

        codes.update(answer_code(r) for r in replies)
        winners = [a for a, r in zip(apps, replies, strict=True) if getattr(r, "status_code", None) == 200]
        FIGURES.add("races", "booking races")
        FIGURES.add("races", "booking requests", len(apps))
        if len(winners) != 1:
            FIGURES.add("races", "double bookings" if winners else "races without a winner")
            problems.append(f"race {race}: {len(winners)} winners: {[answer_code(r) for r in replies]}")
            continue
        (winner,) = winners
        body = replies[apps.index(winner)].json()
        if (body["acceptedApplicationId"], body["declinesQueued"], body["job"]["status"]) != (
            winner,
            len(apps) - 1,
            "CLOSED",
        ):
            problems.append(f"race {race}: the winner's answer is wrong: {body}")
        for a, r in zip(apps, replies, strict=True):
            if a == winner:
                continue
            if isinstance(r, BaseException) or r.status_code != 409:
                problems.append(f"race {race}: a loser got {answer_code(r)}")
            elif r.json().get("details", {}).get("acceptedApplicationId", winner) != winner:
                problems.append(f"race {race}: a loser was told another winner: {r.json()}")
        expected[job_id] = (winner, set(apps))

    for job_id, statuses, accepted in _wrong_final_states(stack, expected):
        FIGURES.add("races", "double bookings" if len(accepted) > 1 else "wrong final states")
        problems.append(f"job {job_id}: winner {expected[job_id][0]}, stored {statuses}")
    for job_id, (winner, _) in expected.items():
        job = stack.job_item(job_id) or {}
        if job.get("status", {}).get("S") != "CLOSED" or job.get("acceptedApplicationId", {}).get("S") != winner:
            problems.append(f"job {job_id}: stored job {job}")
    FIGURES.add("races", "double bookings", 0)
    FIGURES.note(f"booking race answers: {dict(codes)}")
    assert not problems, "\n".join(problems[:20])


def test_applications_racing_a_booking_are_refused_or_declined(stack: Stack) -> None:
    rounds = scaled(10, 100)
    late = scaled(10, 16)
    problems: list[str] = []
    expected: dict[str, tuple[str, set[str]]] = {}
    outcomes: Counter[str] = Counter()
    for round_ in range(rounds):
        if round_ % PACE == PACE - 1:
            stack.wait_queue_empty()
        parent = parent_token()
        job_id = stack.create_job(parent)["jobId"]
        chosen, *early = [a for _, a in applications(stack, job_id, 3)]
        nannies = [unique("late") for _ in range(late)]

        calls = [("POST", f"/jobs/{job_id}/book", parent, {"applicationId": chosen})]
        calls += [("POST", f"/jobs/{job_id}/applications", nanny_token(n), {}) for n in nannies]

        replies = run_parallel(stack.send, calls, stack=stack)

        booking, applies = replies[0], replies[1:]
        retries = 0
        while (
            retries < 10
            and getattr(booking, "status_code", None) == 409
            and booking.json()["code"] == "CONCURRENT_UPDATE"
        ):
            retries += 1  # the documented answer to a conflict: try again
            booking = stack.book(parent, job_id, chosen)
        FIGURES.add("races", "apply-vs-book booking retries", retries)
        if getattr(booking, "status_code", None) != 200:
            problems.append(f"round {round_}: the booking got {answer_code(booking)}")
            continue
        landed: set[str] = set()
        for nanny, r in zip(nannies, applies, strict=True):
            outcome = answer_code(r)
            outcomes[outcome] += 1
            if outcome == "201":
                landed.add(r.json()["applicationId"])
            elif outcome in ("409 JOB_NOT_OPEN", "409 CONCURRENT_UPDATE"):
                if stack.guard_exists(job_id, nanny):
                    problems.append(f"round {round_}: {nanny} was refused ({outcome}) but her guard item was written")
            else:
                problems.append(f"round {round_}: an application got {outcome}")
        FIGURES.add("races", "apply-vs-book rounds")
        FIGURES.add("races", "late applications accepted (201)", len(landed))
        FIGURES.add("races", "late applications refused (409)", len(applies) - len(landed))
        expected[job_id] = (chosen, {chosen, *early, *landed})

    settled = stack.wait_settled(expected, "races")
    for job_id, (chosen, apps) in expected.items():
        statuses = settled[job_id]
        if set(statuses) != apps:
            problems.append(f"job {job_id}: stored {sorted(statuses)}, answered 201 for {sorted(apps)}")
        if statuses.get(chosen) != "ACCEPTED" or Counter(statuses.values())["DECLINED"] != len(statuses) - 1:
            problems.append(f"job {job_id}: {statuses}")
    FIGURES.add("races", "late applications left PENDING", 0)
    FIGURES.note(f"late application answers: {dict(outcomes)}")
    assert not problems, "\n".join(problems[:20])


def test_the_same_booking_sent_many_times_at_once_is_one_booking(stack: Stack) -> None:
    rounds = scaled(5, 50)
    copies = scaled(8, 12)
    problems: list[str] = []
    expected: dict[str, tuple[str, set[str]]] = {}
    for round_ in range(rounds):
        parent = parent_token()
        job_id = stack.create_job(parent)["jobId"]
        apps = [a for _, a in applications(stack, job_id, 12)]
        chosen = apps[round_ % len(apps)]

        request = ("POST", f"/jobs/{job_id}/book", parent, {"applicationId": chosen})

        replies = run_parallel(stack.send, [request] * copies, stack=stack)

        # Every copy re-queues what is still PENDING: up to copies x 11 messages a round.
        stack.wait_queue_empty()
        FIGURES.add("races", "replay rounds")
        FIGURES.add("races", "replay requests", copies)
        for r in replies:
            if isinstance(r, BaseException) or r.status_code != 200:
                FIGURES.add("races", "replays not answered 200")
                problems.append(f"round {round_}: a copy got {answer_code(r)}")
            elif r.json()["acceptedApplicationId"] != chosen or r.json()["job"]["status"] != "CLOSED":
                problems.append(f"round {round_}: {r.json()}")
        expected[job_id] = (chosen, set(apps))

    for job_id, statuses, _ in _wrong_final_states(stack, expected):
        problems.append(f"job {job_id}: {statuses}")
    FIGURES.add("races", "replays not answered 200", 0)
    assert not problems, "\n".join(problems[:20])


def test_one_nanny_applying_many_times_at_once_applies_once(stack: Stack) -> None:
    rounds = scaled(5, 30)
    problems: list[str] = []
    for round_ in range(rounds):
        job_id = stack.create_job(parent_token())["jobId"]
        nanny = unique("eager")
        token = nanny_token(nanny)

        replies = run_parallel(stack.send, [("POST", f"/jobs/{job_id}/applications", token, {})] * 10, stack=stack)

        codes = Counter(answer_code(r) for r in replies)
        FIGURES.add("races", "duplicate-apply rounds")
        mine = [
            i
            for i in stack.job_partition(job_id)
            if i["type"]["S"] == "APPLICATION" and i["applicantName"]["S"] == nanny
        ]
        if codes["201"] != 1 or len(mine) != 1 or set(codes) - {"201", "409 ALREADY_APPLIED", "409 CONCURRENT_UPDATE"}:
            FIGURES.add("races", "duplicate applications")
            problems.append(f"round {round_}: answers {dict(codes)}, {len(mine)} applications stored")
    FIGURES.add("races", "duplicate applications", 0)
    assert not problems, "\n".join(problems)
