"""Under a lagging index, on local stacks of their own: the delayed sweep leaves no application PENDING.

Each stack runs ``chalice local`` with ``LOCAL_INDEX_LAG_SECONDS`` (0.5 s, then 2 s):
its index queries hide items written within the lag (``tools/local/lagging_index.py``), as a
GSI on AWS may. The booking's first pass reads the ``jobApplications`` index, so it
misses the applications written just before it; the sweep, queued with every booking
and run by the stack's worker after ``SWEEP_DELAY_SECONDS``, reads the job's partition
in the base table and declines them. No reconcile runs here.

The lag is checked first, so that the races cannot pass for want of it: right after an
apply, the applicant's ``/me/applications`` (an index) misses the new application while
the job's ``/applications`` (the base table) has it.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import local_stack
from tests.reliability.conftest import (
    FIGURES,
    Stack,
    answer_code,
    applications,
    nanny_token,
    parent_token,
    run_parallel,
    scaled,
    unique,
)
from tools.local.lagging_index import ENV_VAR
from tools.shared import stage_environment

pytestmark = pytest.mark.e2e

LAGS = (0.5, 2.0)
SWEEP_DELAY_SECONDS = float(stage_environment("local")["SWEEP_DELAY_SECONDS"])
PROBES = scaled(6, 20)  # applications checked against the index, per stack
ROUNDS = scaled(8, 40)  # bookings racing applications, per stack
EARLY = 3  # applications before the race (the first one is booked)
LATE = scaled(8, 12)  # applications racing the booking
AREA = "index lag"


@pytest.fixture(scope="module", params=LAGS, ids=lambda lag: f"lag-{lag:g}s")
def lagging(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[float, Stack]]:
    """A stack whose ``chalice local`` lags ``lag`` seconds behind on index queries."""
    lag = request.param
    env = {**os.environ, ENV_VAR: f"{lag:g}"}
    with local_stack(tmp_path_factory.mktemp(f"lag-{lag:g}s"), env=env) as running:
        stack = Stack.of(running)
        assert f"index queries lag {float(lag)} s behind writes" in stack.log_path.read_text(errors="replace")
        FIGURES.add(AREA, "lag runs")
        yield lag, stack


def _ids(items: list[dict[str, Any]]) -> set[str]:
    return {i["applicationId"] for i in items}


def test_an_index_query_right_after_an_apply_misses_what_the_base_table_has(lagging: tuple[float, Stack]) -> None:
    lag, stack = lagging
    parent = parent_token()
    job_id = stack.create_job(parent)["jobId"]
    hidden = 0
    last: tuple[str, str] = ("", "")
    for _ in range(PROBES):
        nanny = nanny_token()
        application_id = stack.apply(nanny, job_id)["applicationId"]
        mine = stack.ok("GET", "/me/applications", nanny)["items"]  # the applicantApplications index
        of_job = stack.ok("GET", f"/jobs/{job_id}/applications", parent, params={"limit": 100})["items"]
        assert application_id in _ids(of_job), "the base table must have it at once"
        hidden += application_id not in _ids(mine)
        last = (nanny, application_id)
    FIGURES.add(AREA, "index probes", PROBES)
    FIGURES.add(AREA, "index probes that missed a new application", hidden)
    assert hidden >= 1, f"no probe of {PROBES} saw the {lag:g} s lag: the races below would prove nothing"

    # Once the lag has passed the index shows it: it lagged, it did not lose it.
    time.sleep(lag + 0.2)
    nanny, application_id = last
    assert application_id in _ids(stack.ok("GET", "/me/applications", nanny)["items"])


def test_applications_the_booking_did_not_see_are_declined_by_the_sweep(lagging: tuple[float, Stack]) -> None:
    lag, stack = lagging
    problems: list[str] = []
    expected: dict[str, tuple[str, set[str]]] = {}  # job -> (booked application, every application stored)
    outcomes: Counter[str] = Counter()
    missed_by_booking = 0
    last_booking = time.monotonic()
    for round_ in range(ROUNDS):
        parent = parent_token()
        job_id = stack.create_job(parent)["jobId"]
        chosen, *early = [a for _, a in applications(stack, job_id, EARLY)]
        nannies = [unique("late") for _ in range(LATE)]

        calls = [("POST", f"/jobs/{job_id}/book", parent, {"applicationId": chosen})]
        calls += [("POST", f"/jobs/{job_id}/applications", nanny_token(n), {}) for n in nannies]
        replies = run_parallel(stack.send, calls, stack=stack)

        booking, applies = replies[0], replies[1:]
        for _ in range(10):
            if getattr(booking, "status_code", None) != 409 or booking.json()["code"] != "CONCURRENT_UPDATE":
                break
            booking = stack.book(parent, job_id, chosen)  # the documented answer to a conflict
        last_booking = time.monotonic()
        if getattr(booking, "status_code", None) != 200:
            problems.append(f"round {round_}: the booking got {answer_code(booking)}")
            continue
        landed = set()
        for r in applies:
            outcome = answer_code(r)
            outcomes[outcome] += 1
            if outcome == "201":
                landed.add(r.json()["applicationId"])
            elif outcome not in ("409 JOB_NOT_OPEN", "409 CONCURRENT_UPDATE"):
                problems.append(f"round {round_}: an application got {outcome}")
        apps = {chosen, *early, *landed}
        # Every stored application committed before the close; the booking queued a decline
        # for those its index query read PENDING, and the sweep is left with the rest.
        missed_by_booking += max(0, len(apps) - 1 - booking.json()["declinesQueued"])
        expected[job_id] = (chosen, apps)
        FIGURES.add(AREA, "bookings racing applications")
        FIGURES.add(AREA, "late applications accepted (201)", len(landed))

    # Past the sweep window: every sweep is due, and the worker has emptied the queue (delayed messages included).
    time.sleep(max(0.0, last_booking + SWEEP_DELAY_SECONDS - time.monotonic()))
    stack.wait_queue_empty()

    pending_left = 0
    for job_id, (chosen, apps) in expected.items():
        job = stack.job_item(job_id) or {}
        statuses = stack.statuses(job_id)
        pending_left += Counter(statuses.values())["PENDING"]
        if job.get("status", {}).get("S") != "CLOSED" or job.get("acceptedApplicationId", {}).get("S") != chosen:
            problems.append(f"job {job_id}: stored job {job}")
        if set(statuses) != apps:
            problems.append(f"job {job_id}: stored {sorted(statuses)}, answered 201 for {sorted(apps)}")
        accepted = [a for a, s in statuses.items() if s == "ACCEPTED"]
        if accepted != [chosen] or Counter(statuses.values())["DECLINED"] != len(statuses) - 1:
            problems.append(f"job {job_id}: booked {chosen}, stored {statuses}")
    FIGURES.add(AREA, "applications hidden from the index", missed_by_booking)
    FIGURES.add(AREA, "PENDING left after the sweep", pending_left)
    FIGURES.add(AREA, "dead letters", stack.depth(stack.dlq_url))
    FIGURES.note(f"index lag {lag:g} s: late application answers {dict(outcomes)}")
    assert pending_left == 0 and not problems, "\n".join(problems[:20])
    assert stack.depth(stack.dlq_url) == 0
    assert missed_by_booking > 0, "every booking saw every application: the lag was not exercised"
