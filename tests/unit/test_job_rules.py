"""The job's rules are stated once (domain.py): the transitions follow the state machines,
the writes' conditions say what the rules say, and a refusal is explained by the same rule."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from chalicelib.domain import (
    APPLICATION_RULES,
    APPLY,
    BOOK,
    CANCEL_OPEN,
    JOB_RULES,
    ApplicationStatus,
    ConcurrentUpdate,
    Job,
    JobNotOpen,
    JobRule,
    JobStarted,
    JobStatus,
    application_may_move,
    job_may_move,
    refusal,
)
from chalicelib.transitions import application_condition, job_condition, rule_values

STARTS, ENDS = "2030-01-01T10:00:00.000Z", "2030-01-01T12:00:00.000Z"
# Before the start, at it, between start and end, at the end, after it.
TIMES = (
    "2030-01-01T09:00:00.000Z",
    STARTS,
    "2030-01-01T11:00:00.000Z",
    ENDS,
    "2030-01-01T13:00:00.000Z",
)
JOB = Job(
    job_id="01HZZZZZZZZZZZZZZZZZZZZZZZ",
    owner="alice",
    status=JobStatus.OPEN,
    title="Evening",
    starts_at=STARTS,
    ends_at=ENDS,
    created_at="2029-12-01T00:00:00.000Z",
)
_CLAUSE = re.compile(r"^(#status|startsAt|endsAt) (=|>|<=) (:\w+)$")
_ATTRIBUTES = {"#status": "status", "startsAt": "starts_at", "endsAt": "ends_at"}


def _holds(condition: str, values: dict[str, Any], job: Job) -> bool:
    """Evaluates a condition of `status`/time comparisons as DynamoDB would (strings compare as text)."""
    for clause in condition.split(" AND "):
        match = _CLAUSE.match(clause)
        assert match, f"a clause the rules do not produce: {clause!r}"
        attribute, operator, placeholder = match.groups()
        stored, given = str(getattr(job, _ATTRIBUTES[attribute])), values[placeholder]["S"]
        if not {"=": stored == given, ">": stored > given, "<=": stored <= given}[operator]:
            return False
    return True


@pytest.mark.parametrize("rule", JOB_RULES)
def test_every_job_rule_moves_along_an_arrow_of_the_state_machine(rule: JobRule) -> None:
    assert rule.moves_to is None or job_may_move(rule.status, rule.moves_to)


def test_every_application_rule_moves_along_an_arrow_of_the_state_machine() -> None:
    for rule in APPLICATION_RULES:
        assert application_may_move(rule.status, rule.moves_to), rule


@pytest.mark.parametrize("rule", JOB_RULES)
def test_a_write_s_condition_holds_exactly_where_its_rule_allows(rule: JobRule) -> None:
    condition, values = job_condition(rule), rule_values(rule, "")
    for status in JobStatus:
        for now in TIMES:
            job = replace(JOB, status=status)
            values[":now"] = {"S": now}
            assert _holds(condition, values, job) == rule.allows(job, now), (rule, status, now)


def test_an_application_write_s_condition_holds_exactly_where_its_rule_allows() -> None:
    for rule in APPLICATION_RULES:
        condition, values = application_condition(rule), rule_values(rule, TIMES[0])
        for status in ApplicationStatus:
            assert (condition == f"#status = :{status.value.lower()}") == (rule.status is status)
            assert values[condition.split(" = ")[1]] == {"S": rule.status.value}


def test_a_write_adds_its_own_clauses_before_the_rule_s() -> None:
    assert job_condition(BOOK, "#owner = :owner") == "#owner = :owner AND #status = :open AND startsAt > :now"
    assert job_condition(CANCEL_OPEN) == "#status = :open"


@pytest.mark.parametrize(
    ("status", "now", "refused"),
    [
        (JobStatus.OPEN, TIMES[1], JobStarted),  # at its start: too late
        (JobStatus.OPEN, TIMES[0], ConcurrentUpdate),  # the rule holds: something else changed
        (JobStatus.CLOSED, TIMES[0], JobNotOpen),
        (JobStatus.CANCELLED, TIMES[0], JobNotOpen),
        (JobStatus.EXPIRED, TIMES[2], JobNotOpen),
    ],
)
def test_a_refused_booking_or_application_is_explained_by_its_rule(
    status: JobStatus, now: str, refused: type[Exception]
) -> None:
    job = replace(JOB, status=status, accepted_application_id="app" if status is JobStatus.CLOSED else None)
    for rule, what in ((APPLY, "applications"), (BOOK, "bookings")):
        error = refusal(rule, job, now, what)
        assert type(error) is refused
        assert APPLY.allows(job, now) == (refused is ConcurrentUpdate)
        if refused is JobStarted:
            assert error.message == f"The job has started; it takes no more {what}."
    if status is JobStatus.CLOSED:
        assert refusal(BOOK, job, now, "bookings").details == {"acceptedApplicationId": "app"}
