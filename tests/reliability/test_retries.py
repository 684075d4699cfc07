"""Failures after a commit, re-sent creates and a JWKS outage, on the local stack: never a 500, never a duplicate.

The app runs in this process (Chalice's test client, the real authorizer, ``chalicelib.bootstrap``)
against the stack's emulators, so its botocore clients can be hooked; the stack's worker
applies the declines. The Idempotency-Key rounds go over HTTP to the stack's ``chalice local``.

The JWKS outage uses the in-process app pointed at a JWKS URL this test serves: the stack's
``chalice local`` reads the local stage's key file, which other stacks share, so it is not
the one made to lose its keys.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from botocore.exceptions import ReadTimeoutError
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib import bootstrap
from tests.payloads import job_body
from tests.reliability.conftest import (
    FIGURES,
    InProcess,
    Stack,
    nanny_token,
    parent_token,
    run_parallel,
    scaled,
    unique,
)
from tests.reliability.test_faults import _expect_settled, _jobs
from tools.local.devkeys import LocalIssuer

pytestmark = pytest.mark.e2e


def _post(app: InProcess, path: str, token: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    """The in-process app's whole answer (status, headers, body)."""
    all_headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **(headers or {})}
    return app.client.http.post(path, headers=all_headers, body=json.dumps(body))


def _get(app: InProcess, path: str, token: str) -> Any:
    return app.client.http.get(path, headers={"Authorization": f"Bearer {token}"})


def _body(resp: Any) -> Any:
    return json.loads(resp.body) if resp.body else None


# ------------------------------------------------------ failures after the commit


class TimeOut:
    """Every attempt of ``operation`` times out before it is sent (botocore retries it, then gives up)."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.attempts = 0

    def __call__(self, **kwargs: Any) -> None:
        if kwargs["event_name"].endswith(f".{self.operation}"):
            self.attempts += 1
            raise ReadTimeoutError(endpoint_url=f"https://{self.operation}.test")


@pytest.mark.parametrize(
    "service,operation,code",
    [("dynamodb", "Query", "BOOKING_INCOMPLETE"), ("sqs", "SendMessageBatch", "DECLINES_NOT_QUEUED")],
)
def test_a_timeout_after_the_commit_is_a_503_to_retry_and_the_replay_heals_it(
    stack: Stack, in_process: Callable[..., InProcess], service: str, operation: str, code: str
) -> None:
    jobs = _jobs(stack, scaled(3, 12), scaled(6, 12))
    app = in_process()
    client = {"dynamodb": bootstrap.dynamodb_client(), "sqs": bootstrap.sqs_client()}[service]
    bootstrap.declines_queue_url()()  # resolved before the fault: only the call after the commit fails
    fault = TimeOut(operation)
    event = f"before-send.{service}.{operation}"
    client.meta.events.register(event, fault)
    answers: Counter[str] = Counter()
    problems = []
    try:
        for parent, job_id, (chosen, *_) in jobs:
            resp = _post(app, f"/jobs/{job_id}/book", parent, {"applicationId": chosen})
            body = _body(resp) or {}
            answers[f"{resp.status_code} {body.get('code', '')}".strip()] += 1
            if (resp.status_code, body.get("code")) != (503, code) or not resp.headers.get("Retry-After"):
                problems.append(f"{job_id}: {resp.status_code} {body} {dict(resp.headers)}")
            job = _body(_get(app, f"/jobs/{job_id}", parent))
            if (job["status"], job.get("acceptedApplicationId")) != ("CLOSED", chosen):
                problems.append(f"{job_id}: the booking did not stand: {job}")
    finally:
        client.meta.events.unregister(event, fault)

    # The dependency is back: the client repeats the same booking, and the worker finishes.
    healed = 0
    for parent, job_id, (chosen, *_) in jobs:
        resp = _post(app, f"/jobs/{job_id}/book", parent, {"applicationId": chosen})
        body = _body(resp) or {}
        if (resp.status_code, body.get("acceptedApplicationId")) == (200, chosen):
            healed += 1
        else:
            problems.append(f"{job_id}: the replay got {resp.status_code} {body}")

    FIGURES.add("post-commit faults", "faults injected", len(jobs))
    FIGURES.add("post-commit faults", f"{operation} attempts timed out", fault.attempts)
    errors = sum(n for a, n in answers.items() if a.startswith("5") and not a.startswith("503"))
    FIGURES.add("post-commit faults", "500s", errors)
    FIGURES.add("post-commit faults", "503s with Retry-After", answers[f"503 {code}"])
    FIGURES.add("post-commit faults", "healed by the replay", healed)
    FIGURES.note(f"{operation} timing out after the commit: answers {dict(answers)}")
    assert not problems, "\n".join(problems)
    assert fault.attempts >= len(jobs)
    _expect_settled(stack, jobs, "post-commit faults")
    FIGURES.add("post-commit faults", "bookings left with a PENDING application", 0)  # settled, or it failed


class LostCommitAnswer:
    """A transaction reaches the table, its answer is lost, and every re-send finds it in progress."""

    def __init__(self) -> None:
        self.lost = 0
        self.in_progress = 0
        self.armed = False

    def before_call(self, model: Any, **_: Any) -> Any:
        if model.name != "TransactWriteItems" or not self.armed:
            return None
        self.in_progress += 1
        error = {"Code": "TransactionInProgressException", "Message": "in progress"}
        return (SimpleNamespace(status_code=400, headers={}), {"Error": error})

    def after_call(self, model: Any, **_: Any) -> None:
        if model.name == "TransactWriteItems" and not self.armed:
            self.armed = True  # this one committed; its answer is lost, its re-sends run "in progress"
            self.lost += 1
            raise ReadTimeoutError(endpoint_url="https://dynamodb.test")


@pytest.mark.parametrize("fault", ["index read times out", "the commit's answer is lost"])
def test_a_post_commit_fault_with_no_repeat_is_healed_by_the_sweep(
    stack: Stack, in_process: Callable[..., InProcess], fault: str
) -> None:
    jobs = _jobs(stack, scaled(3, 12), scaled(6, 12))
    app = in_process()
    events = bootstrap.dynamodb_client().meta.events
    bootstrap.declines_queue_url()()
    answers: Counter[str] = Counter()
    for parent, job_id, (chosen, *_) in jobs:
        lost = LostCommitAnswer()
        hooks = (
            [("before-send.dynamodb.Query", TimeOut("Query"))]
            if fault == "index read times out"
            else [
                ("before-call.dynamodb.TransactWriteItems", lost.before_call),
                ("after-call.dynamodb.TransactWriteItems", lost.after_call),
            ]
        )
        for event, hook in hooks:
            events.register(event, hook)
        try:
            resp = _post(app, f"/jobs/{job_id}/book", parent, {"applicationId": chosen})
        finally:
            for event, hook in hooks:
                events.unregister(event, hook)
        body = _body(resp) or {}
        answers[f"{resp.status_code} {body.get('code', '')}".strip()] += 1

    # No client repeats anything: the sweep each booking queued first must decline the rest.
    FIGURES.add("post-commit faults", "faults injected", len(jobs))
    FIGURES.add("post-commit faults", "500s", sum(n for a, n in answers.items() if a.startswith("500")))
    FIGURES.note(f"{fault}, no repeat: answers {dict(answers)}")
    expected = "503 BOOKING_INCOMPLETE" if fault == "index read times out" else "503 OUTCOME_UNKNOWN"
    assert answers == Counter({expected: len(jobs)})
    _expect_settled(stack, jobs, "post-commit faults")
    FIGURES.add("post-commit faults", "bookings left with a PENDING application", 0)  # settled, or it failed


# ------------------------------------------------------------- re-sent creates


class ResendOnce:
    """botocore re-sends the first create call of each request after it committed (as after a lost answer)."""

    OPERATIONS = ("PutItem", "TransactWriteItems")

    def __init__(self) -> None:
        self.armed = False
        self.resent = 0

    def __call__(self, attempts: int, caught_exception: Any, operation: Any, **_: Any) -> Any:
        if self.armed and operation.name in self.OPERATIONS and attempts == 1 and caught_exception is None:
            self.armed = False
            self.resent += 1
            return 0  # retry now
        return None


@pytest.mark.parametrize("keyed", [False, True], ids=["no key", "Idempotency-Key"])
def test_a_create_re_sent_after_it_committed_is_one_job(
    stack: Stack, in_process: Callable[..., InProcess], keyed: bool
) -> None:
    app = in_process()
    hook = ResendOnce()
    for operation in ResendOnce.OPERATIONS:
        bootstrap.dynamodb_client().meta.events.register_first(f"needs-retry.dynamodb.{operation}", hook)
    creates = scaled(5, 20)
    problems = []
    duplicates = 0
    for _ in range(creates):
        parent = parent_token()
        hook.armed = True
        headers = {"Idempotency-Key": str(uuid.uuid4())} if keyed else {}
        resp = _post(app, "/jobs", parent, job_body(), headers)
        if resp.status_code != 201:
            problems.append(f"{resp.status_code} {resp.body!r}")
        mine = stack.ok("GET", "/me/jobs", parent)["items"]
        duplicates += max(0, len(mine) - 1)
    FIGURES.add("retried creates", "creates re-sent by botocore after the commit", hook.resent)
    FIGURES.add("retried creates", "duplicate jobs", duplicates)
    assert hook.resent == creates
    assert not problems and duplicates == 0, problems


def test_the_same_idempotency_key_sent_10_times_at_once_creates_one_job(stack: Stack) -> None:
    rounds = scaled(3, 12)
    problems = []
    duplicates = 0
    for round_ in range(rounds):
        parent = parent_token()
        body = job_body()
        headers = {"Idempotency-Key": str(uuid.uuid4()), "Authorization": f"Bearer {parent}"}

        def create(body: dict[str, Any] = body, headers: dict[str, str] = headers) -> Any:
            return stack.session().post(stack.api_url + "/jobs", json=body, headers=headers, timeout=30)

        replies = run_parallel(create, [()] * 10, stack=stack)

        codes = Counter(getattr(r, "status_code", type(r).__name__) for r in replies)
        job_ids = {r.json()["jobId"] for r in replies if getattr(r, "status_code", None) in (200, 201)}
        mine = stack.ok("GET", "/me/jobs", parent)["items"]
        duplicates += max(0, len(mine) - 1)
        if codes != Counter({201: 1, 200: 9}) or len(job_ids) != 1 or [j["jobId"] for j in mine] != list(job_ids):
            problems.append(f"round {round_}: answers {dict(codes)}, {len(job_ids)} job ids, {len(mine)} jobs stored")
    FIGURES.add("retried creates", "Idempotency-Key requests (10 at once per key)", 10 * rounds)
    FIGURES.add("retried creates", "duplicate jobs", duplicates)
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ JWKS outage


class JwksServer:
    """Serves the local stage's JWKS at a URL of its own, or answers 503 while ``up`` is false."""

    def __init__(self) -> None:
        jwks = LocalIssuer.from_config().jwks_file.read_bytes()
        outer = self
        self.up = False
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                status, payload = (200, jwks) if outer.up else (503, b"unavailable")
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    with JwksServer() as server:
        yield server


def _unknown_kid_token(user: str) -> str:
    """A well-formed token signed by a key the JWKS does not hold (a rotation, as far as the app can tell)."""
    issuer = LocalIssuer.from_config()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {
        "cognito:username": user,
        "cognito:groups": ["parents"],
        "iss": issuer.issuer,
        "aud": issuer.audience,
        "token_use": "id",
        "iat": now,
        "exp": now + 600,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": f"rotated-{uuid.uuid4().hex[:8]}"})


def test_a_jwks_outage_refuses_or_admits_but_never_fails(
    stack: Stack, in_process: Callable[..., InProcess], jwks_server: JwksServer
) -> None:
    app = in_process(AUTH_JWKS_FILE="", AUTH_JWKS_URL=jwks_server.url)
    per_phase = scaled(10, 50)
    answers: Counter[str] = Counter()

    def ask(phase: str, token: str) -> int:
        status = _get(app, "/jobs", token).status_code
        answers[f"{phase}: {status}"] += 1
        return status

    # A cold start during the outage: no key was ever loaded, every token is refused (403).
    cold = [ask("cold start, JWKS down", nanny_token()) for _ in range(per_phase)]
    assert set(cold) == {403}, answers

    # The issuer is back: once the back-off has passed, the keys load and tokens are admitted.
    jwks_server.up = True
    deadline = time.monotonic() + 10
    while ask("JWKS back", nanny_token()) != 200:
        assert time.monotonic() < deadline, answers
        time.sleep(0.25)

    # A second outage: the last good keys keep admitting valid tokens; a token of a key they
    # do not hold is refused (an unknown kid is refetched at most once a minute).
    jwks_server.up = False
    warm = [ask("JWKS down, keys kept", nanny_token()) for _ in range(per_phase)]
    rotated = [ask("JWKS down, unknown kid", _unknown_kid_token(unique("p"))) for _ in range(per_phase)]
    assert set(warm) == {200} and set(rotated) == {403}, answers

    errors = sum(n for a, n in answers.items() if a.rsplit(" ", 1)[1].startswith("5"))
    FIGURES.add("jwks outage", "requests during an outage", sum(n for a, n in answers.items() if "down" in a))
    FIGURES.add("jwks outage", "5xx", errors)
    FIGURES.add("jwks outage", "JWKS fetches", jwks_server.requests)
    FIGURES.note(f"JWKS outage answers: {dict(answers)}")
    assert errors == 0, answers
