"""Fuzzing every operation of openapi.yaml over HTTP with schemathesis: no 5xx, no answer the spec does not allow.

Cases come from the spec (valid ones, and invalid ones that must be refused), sent with
real tokens; some valid ones are steered onto real data (existing jobs and applications,
start times in the bookable window) so that they get past the 404s and 400s a random
value earns, and the 2xx answers are checked against the spec too.

"Schema-valid but refused" is reported by kind: rules the schema cannot express (a start
time in the past, an opaque signed ``nextToken``) are expected; the text rules it does not
state (control characters, blank titles) are a gap in the spec, pinned down by
``test_spec.py::test_the_spec_states_the_apps_text_rules``.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.reliability.conftest import FIGURES, LONG, SPEC, SPEC_PATH, Stack, nanny_token, parent_token, scaled, unique

# A broken or missing install must fail this module, not quietly switch the fuzzing off.
try:
    import schemathesis
except ImportError as exc:
    raise ImportError(f"schemathesis does not import ({exc}): pip install -r requirements-dev.txt") from exc
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi import checks as openapi_checks

pytestmark = pytest.mark.e2e

OPERATIONS = [op["operationId"] for item in SPEC["paths"].values() for m, op in item.items() if m in ("get", "post")]
EXAMPLES = scaled(40, 400)  # per operation and mode (valid, invalid)

# Checks that must never fail; positive_data_acceptance is judged apart (see _refusal_kind).
STRICT_CHECKS = [
    not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
]


@pytest.fixture(scope="module")
def fuzz_world(stack: Stack) -> dict[str, Any]:
    """A parent's jobs (open, and one booked), another parent's job, and their applications."""
    owner = unique("fuzz-owner")
    token = parent_token(owner)
    jobs, apps = [], []
    for _ in range(4):
        job_id = stack.create_job(token)["jobId"]
        jobs.append(job_id)
        apps += [stack.apply(nanny_token(), job_id)["applicationId"] for _ in range(3)]
    stack.ok("POST", f"/jobs/{jobs[0]}/book", token, json={"applicationId": apps[0]})
    other = stack.create_job(parent_token())["jobId"]
    apps.append(stack.apply(nanny_token(), other)["applicationId"])
    return {
        "owner": owner,
        "token": token,
        "jobs": [*jobs, other],
        "apps": apps,
        "created": [],
        "idempotency_keys": set(),  # keys with which the owner created a job
    }


def _steer(case: Any, operation_id: str, world: dict[str, Any], rng: random.Random) -> None:
    """Moves a valid case onto real data, keeping it valid."""
    if case.path_parameters and "jobId" in case.path_parameters:
        case.path_parameters["jobId"] = rng.choice(world["jobs"])
    if isinstance(case.body, dict):
        if operation_id == "createJob":
            start = datetime.now(UTC) + timedelta(hours=rng.randint(1, 700 * 24), seconds=rng.randint(0, 3599))
            end = start + timedelta(minutes=rng.randint(1, 31 * 24 * 60))
            case.body["startsAt"] = start.isoformat()
            case.body["endsAt"] = end.isoformat()
        elif operation_id == "bookNanny":
            case.body["applicationId"] = rng.choice(world["apps"])
    if case.query and "nextToken" in case.query:
        del case.query["nextToken"]


def _refusal_kind(operation_id: str, status: int, body: Any, key_used_before: bool = False) -> str | None:
    """Why a schema-valid request was refused, if the reason is one the spec knows of; None otherwise.

    ``key_used_before``: the request's Idempotency-Key already created a job of this parent.
    """
    if not isinstance(body, dict):
        return None
    code, field = body.get("code"), (body.get("details") or {}).get("field")
    if (status, code, operation_id, key_used_before) == (422, "IDEMPOTENCY_KEY_REUSED", "createJob", True):
        # The generator repeats short keys: the same key with another body is refused, as documented.
        return "Idempotency-Key reused with another body (state, not expressible in the schema)"
    if status != 400:
        return None
    message = body.get("message", "")
    if code == "INVALID_NEXT_TOKEN":
        return "opaque nextToken (signed, not expressible in the schema)"
    if operation_id == "createJob" and code == "INVALID_BODY" and field in ("startsAt", "endsAt"):
        return "relative start/end rules (in the descriptions, not expressible in the schema)"
    if code == "INVALID_BODY" and ("control characters" in message or "must not be empty" in message):
        return "text rules the spec does not state (see test_spec.py)"
    return None


def _idempotency_key(case: Any) -> str | None:
    for name, value in (case.headers or {}).items():
        if name.lower() == "idempotency-key":
            return str(value)
    return None


def _curl(case: Any) -> str:
    try:
        return case.as_curl_command()[:600]
    except Exception:  # pragma: no cover - reporting only
        return repr(case)[:600]


class Tally:
    """What one operation's fuzzing saw."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.refusals: Counter[str] = Counter()
        self.failures: dict[str, list[str]] = {}

    def fail(self, check: str, text: str) -> None:
        self.failures.setdefault(check, []).append(text)


def _fuzz(operation: Any, operation_id: str, mode: Any, world: dict[str, Any], tally: Tally) -> None:
    nannies = [nanny_token() for _ in range(5)]

    @given(case=operation.as_strategy(generation_mode=mode), steer=st.booleans(), seed=st.integers(0, 2**32))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not LONG,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )
    def run(case: Any, steer: bool, seed: int) -> None:
        rng = random.Random(seed)
        if mode is GenerationMode.POSITIVE and steer:
            _steer(case, operation_id, world, rng)
        wants_nanny = operation_id == "applyToJob"
        if rng.random() < 0.15:
            wants_nanny = not wants_nanny  # the wrong role now and then: a documented 403
        token = rng.choice(nannies) if wants_nanny else world["token"]
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
        response = case.call(timeout=30)
        tally.statuses[response.status_code] += 1
        try:
            body = response.json()
        except ValueError:
            body = None
        key = _idempotency_key(case)
        key_used_before = key is not None and key in world["idempotency_keys"]
        if operation_id == "createJob" and response.status_code in (200, 201):
            if response.status_code == 201:
                world["created"].append(body["jobId"])
            if key is not None:
                world["idempotency_keys"].add(key)
        for check in STRICT_CHECKS:
            try:
                case.validate_response(response, checks=[check])
            except BaseException as exc:  # schemathesis raises failure groups
                tally.fail(
                    check.__name__,
                    f"{response.status_code} {response.text[:200]}\n    {_curl(case)}\n    {str(exc)[:300]}",
                )
        try:
            case.validate_response(response, checks=[openapi_checks.positive_data_acceptance])
        except BaseException:
            kind = _refusal_kind(operation_id, response.status_code, body, key_used_before)
            if kind is None:
                tally.fail(
                    "positive_data_acceptance", f"{response.status_code} {response.text[:200]}\n    {_curl(case)}"
                )
            else:
                tally.refusals[kind] += 1

    run()


@pytest.mark.parametrize("operation_id", OPERATIONS)
def test_fuzzing_finds_no_server_error_and_no_answer_outside_the_spec(
    stack: Stack, fuzz_world: dict[str, Any], operation_id: str
) -> None:
    schema = schemathesis.openapi.from_path(str(SPEC_PATH))
    schema.config.update(base_url=stack.api_url)
    operation = schema.find_operation_by_id(operation_id)
    tally = Tally()

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        _fuzz(operation, operation_id, mode, fuzz_world, tally)

    cases = sum(tally.statuses.values())
    FIGURES.add("fuzz", "cases", cases)
    FIGURES.add("fuzz", "5xx", sum(n for s, n in tally.statuses.items() if s >= 500))
    FIGURES.add("fuzz", "answers outside the spec", sum(len(v) for v in tally.failures.values()))
    for kind, n in tally.refusals.items():
        FIGURES.add("fuzz", f"schema-valid, refused: {kind}", n)
    FIGURES.note(f"fuzz {operation_id}: statuses {dict(sorted(tally.statuses.items()))}")
    report = "\n".join(f"{name} ({len(found)}):\n  " + "\n  ".join(found[:3]) for name, found in tally.failures.items())
    assert not tally.failures, f"{operation_id}: {cases} cases, failures:\n{report}"


def test_fuzzing_left_every_job_consistent(stack: Stack, fuzz_world: dict[str, Any]) -> None:
    """Whatever the fuzzer booked, each job ends with one ACCEPTED and the rest DECLINED, or all PENDING.

    A job the fuzzer cancelled (where the spec has that route) ends with none ACCEPTED and none PENDING.
    """
    jobs = fuzz_world["jobs"] + fuzz_world["created"]
    settled_statuses = ("CLOSED", "CANCELLED")
    done = [j for j in jobs if (stack.job_item(j) or {}).get("status", {}).get("S") in settled_statuses]
    settled = stack.wait_settled(done, "fuzz")
    wrong = []
    for job_id in jobs:
        job = stack.job_item(job_id)
        statuses = stack.statuses(job_id)
        if job["status"]["S"] == "CANCELLED":
            if {"ACCEPTED", "PENDING"} & set(settled[job_id].values()):
                wrong.append(f"cancelled job {job_id}: {settled[job_id]}")
        elif job["status"]["S"] == "CLOSED":
            accepted = [a for a, s in settled[job_id].items() if s == "ACCEPTED"]
            if accepted != [job["acceptedApplicationId"]["S"]] or "PENDING" in settled[job_id].values():
                wrong.append(f"{job_id}: {job['acceptedApplicationId']} {settled[job_id]}")
        elif set(statuses.values()) - {"PENDING"}:
            wrong.append(f"open job {job_id}: {statuses}")
    FIGURES.add("fuzz", "jobs checked after fuzzing", len(jobs))
    assert not wrong, "\n".join(wrong)
