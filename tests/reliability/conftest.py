"""The reliability suite: one local stack for the session, the run's scale, its figures, and helpers.

``RELIABILITY_SCALE=long`` (``make reliability``) runs the full counts; the default is a
bounded version that fits in ``make test``. Every test adds what it did and what went
wrong to ``FIGURES``, printed at the end of the run (and kept in pytest's cache under
``reliability/figures``).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from chalicelib import bootstrap
from tests.e2e.conftest import RunningStack, local_stack
from tests.payloads import job_body
from tools.local.devkeys import LocalIssuer
from tools.local.stack import DUMMY_AWS
from tools.local.stack_process import StackProcess
from tools.local.tokens import make_token
from tools.shared import stage_environment

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LONG = os.environ.get("RELIABILITY_SCALE", "").strip().lower() == "long"
DRAIN_TIMEOUT_SECONDS = 90.0 if LONG else 45.0
# RELIABILITY_OPENAPI=path checks another copy of the spec (e.g. a fix, before it is applied).
SPEC_PATH = Path(os.environ.get("RELIABILITY_OPENAPI") or PROJECT_ROOT / "openapi.yaml")
SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())


def scaled(bounded: int, long: int) -> int:
    """The bounded count in ``make test``, the long one with RELIABILITY_SCALE=long."""
    return long if LONG else bounded


# ------------------------------------------------------------------- figures


class Figures:
    """Counters per area ("races", "faults", ...), printed when the session ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        self.notes: list[str] = []

    def add(self, area: str, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[area][name] += n

    def note(self, text: str) -> None:
        with self._lock:
            self.notes.append(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scale": "long" if LONG else "bounded",
            "counts": {a: dict(c) for a, c in sorted(self.counts.items())},
            "notes": self.notes,
        }

    def lines(self) -> list[str]:
        out = [f"scale: {'long' if LONG else 'bounded'} (RELIABILITY_SCALE={os.environ.get('RELIABILITY_SCALE', '')})"]
        for area, counts in sorted(self.counts.items()):
            out.append(f"{area}: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
        out += [f"note: {n}" for n in self.notes]
        return out


FIGURES = Figures()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not FIGURES.counts and not FIGURES.notes:
        return
    terminalreporter.section("reliability figures")
    for line in FIGURES.lines():
        terminalreporter.write_line(line)
    cache = getattr(config, "cache", None)  # absent with -p no:cacheprovider
    if cache is not None:
        cache.set("reliability/figures", FIGURES.as_dict())


# --------------------------------------------------------------------- stack


@dataclass
class Stack(StackProcess):
    """The running local stack, and ground truth read straight from its table and queues."""

    dynamodb: Any = None
    sqs: Any = None

    def __post_init__(self) -> None:
        config = {"retries": {"mode": "standard", "max_attempts": 5}, "max_pool_connections": 30}
        self.dynamodb = self.client("dynamodb", **config)
        self.sqs = self.client("sqs", **config)

    @classmethod
    def of(cls, running: RunningStack) -> Stack:
        return cls(running.process, running.log_path, running.ready, running.companions)

    def endpoint_env(self) -> dict[str, str]:
        """What boto3 (and tools.ops) need to talk to this stack's emulators."""
        return {
            **DUMMY_AWS,
            "AWS_ENDPOINT_URL_DYNAMODB": self.ready["dynamodb_endpoint"],
            "AWS_ENDPOINT_URL_SQS": self.ready["sqs_endpoint"],
        }

    # ------------------------------------------------------------- HTTP

    def session(self) -> requests.Session:
        """One HTTP session per thread (kept connected: see ``run_parallel``)."""
        return _thread_session()

    def warm(self) -> None:
        """Opens this thread's keep-alive connection with a request the gateway answers at once."""
        warm = _THREAD.__dict__.setdefault("warm", set())  # API URLs: a test may run a stack of its own
        if self.api_url in warm:
            return
        for attempt in range(10):
            try:
                self.session().get(self.api_url + "/", timeout=10)
                warm.add(self.api_url)
                return
            except requests.ConnectionError:
                time.sleep(0.05 * (attempt + 1))

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if token is not None:
            headers.setdefault("Authorization", f"Bearer {token}")
        return self.session().request(method, self.api_url + path, headers=headers, timeout=30, **kwargs)

    def ok(self, method: str, path: str, token: str, status: int = 200, **kwargs: Any) -> Any:
        resp = self.call(method, path, token, **kwargs)
        assert resp.status_code == status, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp.json()

    def send(self, method: str, path: str, token: str, body: Any) -> requests.Response:
        """``call`` with a JSON body, its arguments in the order ``run_parallel``'s tuples give them."""
        return self.call(method, path, token, json=body)

    def post(self, path: str, token: str, body: Any) -> requests.Response:
        return self.send("POST", path, token, body)

    def book(self, token: str, job_id: str, application_id: str) -> requests.Response:
        return self.post(f"/jobs/{job_id}/book", token, {"applicationId": application_id})

    def create_job(self, token: str, **fields: Any) -> dict[str, Any]:
        return self.ok("POST", "/jobs", token, 201, json=job_body(**fields))

    def apply(self, token: str, job_id: str) -> dict[str, Any]:
        return self.ok("POST", f"/jobs/{job_id}/applications", token, 201, json={"message": "Happy to help."})

    # ----------------------------------------------------- ground truth

    def scan_count(self) -> int:
        total, params = 0, {"TableName": self.table, "Select": "COUNT"}
        while True:
            resp = self.dynamodb.scan(**params)
            total += resp["Count"]
            if "LastEvaluatedKey" not in resp:
                return total
            params["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def job_partition(self, job_id: str) -> list[dict[str, Any]]:
        """The job and its applications, as stored (read consistently; guards and the listing left out)."""
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "PK = :pk",
            "ConsistentRead": True,
            "ExpressionAttributeValues": {":pk": {"S": f"JOB#{job_id}"}},
        }
        while True:
            resp = self.dynamodb.query(**params)
            items += [i for i in resp["Items"] if i.get("type", {}).get("S") in ("JOB", "APPLICATION")]
            if "LastEvaluatedKey" not in resp:
                return items
            params["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def statuses(self, job_id: str) -> dict[str, str]:
        items = self.job_partition(job_id)
        return {i["applicationId"]["S"]: i["status"]["S"] for i in items if i["type"]["S"] == "APPLICATION"}

    def job_item(self, job_id: str) -> dict[str, Any] | None:
        items = [i for i in self.job_partition(job_id) if i["type"]["S"] == "JOB"]
        return items[0] if items else None

    def guard_exists(self, job_id: str, user: str) -> bool:
        key = {"PK": {"S": f"JOB#{job_id}"}, "SK": {"S": f"APPLICANT#{user}"}}
        resp = self.dynamodb.get_item(TableName=self.table, Key=key, ConsistentRead=True)
        return "Item" in resp

    def depth(self, queue_url: str) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(v) for v in attrs.values())

    def snapshot(self, job_ids: Iterable[str] = ()) -> tuple[int, int, int, list[str]]:
        """What a refused request must leave alone: item count, both queues' depth, the given jobs' items."""
        items = sorted(json.dumps(i, sort_keys=True) for j in job_ids for i in self.job_partition(j))
        return self.scan_count(), self.depth(self.queue_url), self.depth(self.dlq_url), items

    def wait_queue_empty(self, queue_url: str | None = None, timeout: float = DRAIN_TIMEOUT_SECONDS) -> None:
        url = queue_url or self.queue_url
        if self.depth(url) == 0:
            return
        deadline = time.monotonic() + timeout
        while True:
            time.sleep(0.2)
            if self.depth(url) == 0:
                time.sleep(0.2)  # and it stays so: a failed record comes back after the worker's retry delay
                if self.depth(url) == 0:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"{url} still holds {self.depth(url)} messages after {timeout:.0f} s\n{self.log_tail()}")

    def wait_settled(
        self, job_ids: Iterable[str], area: str = "declines", timeout: float = DRAIN_TIMEOUT_SECONDS
    ) -> dict[str, dict[str, str]]:
        """Every job's application statuses, once none is PENDING and the declines queue is empty.

        Fails with what is still PENDING after ``timeout`` (counted under ``area`` as declines lost).
        """
        remaining = set(job_ids)
        settled: dict[str, dict[str, str]] = {}
        deadline = time.monotonic() + timeout
        while True:
            for job_id in sorted(remaining):
                statuses = self.statuses(job_id)
                if "PENDING" not in statuses.values():
                    settled[job_id] = statuses
                    remaining.discard(job_id)
            if not remaining and self.depth(self.queue_url) == 0:
                FIGURES.add(area, "declines lost", 0)
                return settled
            if time.monotonic() > deadline:
                pending = {j: [a for a, s in self.statuses(j).items() if s == "PENDING"] for j in remaining}
                FIGURES.add(area, "declines lost", sum(len(v) for v in pending.values()))
                pytest.fail(
                    f"declines lost: still PENDING after {timeout:.0f} s: {pending}; "
                    f"queue depth {self.depth(self.queue_url)}\n{self.log_tail()}"
                )
            time.sleep(0.2)

    # ----------------------------------------------------- private queues

    def private_queue(self, purpose: str, visibility_seconds: int = 30) -> tuple[str, str]:
        """A declines queue + DLQ of this test's own, with the stage's redrive policy (its URL, its DLQ's URL).

        The stack's worker polls only the stage's queue, so a test can run (and crash) its own worker here.
        """
        stage_policy = json.loads(
            self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"])["Attributes"][
                "RedrivePolicy"
            ]
        )
        name = f"rel-{purpose}-{uuid.uuid4().hex[:8]}"
        dlq_url = self.sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        policy = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": int(stage_policy["maxReceiveCount"])}
        url = self.sqs.create_queue(
            QueueName=name,
            Attributes={"VisibilityTimeout": str(visibility_seconds), "RedrivePolicy": json.dumps(policy)},
        )["QueueUrl"]
        return url, dlq_url

    def delete_queues(self, *urls: str) -> None:
        for url in urls:
            with contextlib.suppress(Exception):
                self.sqs.delete_queue(QueueUrl=url)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Without the stream's poller: these tests watch the request path heal itself (its fast path,
    # a repeat, `make reconcile`), which the stream would otherwise do first. The stream's own
    # healing is tested in tests/integration/test_stream.py and tests/e2e/test_notifications.py.
    with local_stack(tmp_path_factory.mktemp("reliability-stack"), args=["--no-stream"]) as running:
        yield Stack.of(running)


@pytest.fixture(autouse=True)
def _quiet_queue(request: pytest.FixtureRequest) -> None:
    """Each test starts with the declines queue empty: what an earlier one queued is not its business."""
    if "stack" in request.fixturenames:
        request.getfixturevalue("stack").wait_queue_empty()


# -------------------------------------------------------------------- helpers


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def parent_token(user: str | None = None) -> str:
    return make_token(user or unique("parent"), "parent")


def nanny_token(user: str | None = None) -> str:
    return make_token(user or unique("nanny"), "nanny")


def answer_code(resp: Any) -> str:
    """An answer as "<status> <code>" (or the exception returned in its place), to count and report."""
    if isinstance(resp, BaseException):
        return f"exception {type(resp).__name__}: {resp}"
    try:
        return f"{resp.status_code} {resp.json().get('code', '')}".strip()
    except ValueError:
        return f"{resp.status_code} (not JSON)"


def applications(stack: Stack, job_id: str, count: int) -> list[tuple[str, str]]:
    """``count`` nannies apply, concurrently: (their token, their application id)."""
    tokens = [nanny_token() for _ in range(count)]
    results = run_parallel(lambda t: stack.apply(t, job_id), [(t,) for t in tokens], barrier=False, stack=stack)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return [(t, r["applicationId"]) for t, r in zip(tokens, results, strict=True)]


def run_parallel(
    fn: Callable[..., Any], args: list[tuple[Any, ...]], barrier: bool = True, stack: Stack | None = None
) -> list[Any]:
    """Runs ``fn(*a)`` for every ``a`` on a thread of its own, all released at once; results in order.

    The threads come from one pool whose HTTP sessions stay connected between calls, and
    each connects (``stack.warm``) before the start: ``chalice local`` listens with a
    backlog of 5, and a burst of new connections would be reset by the kernel before the
    app sees a request. An exception in a thread is returned in its place.
    """
    gate = threading.Barrier(len(args)) if barrier and args else None

    def run(a: tuple[Any, ...]) -> Any:
        try:
            if stack is not None:
                stack.warm()
            if gate is not None:
                gate.wait(60)
            return fn(*a)
        except Exception as exc:
            return exc

    assert gate is None or len(args) <= POOL_SIZE, "more racers than threads: they would wait for each other forever"
    return list(_pool().map(run, args))


POOL_SIZE = 24
_POOL: list[ThreadPoolExecutor] = []
_POOL_LOCK = threading.Lock()
_THREAD = threading.local()


def _pool() -> ThreadPoolExecutor:
    with _POOL_LOCK:
        if not _POOL:
            _POOL.append(ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="racer"))
        return _POOL[0]


def _thread_session() -> requests.Session:
    session = getattr(_THREAD, "session", None)
    if session is None:
        session = _THREAD.session = requests.Session()
    return session


def stage_env(stack: Stack, **extra: str) -> dict[str, str]:
    """The environment the app gets in the local stage, pointed at ``stack``'s emulators."""
    env = stage_environment("local")
    jwks = LocalIssuer.from_config().jwks_file
    env.update(stack.endpoint_env())
    env["AUTH_JWKS_FILE"] = str(jwks)
    env.update(extra)
    return env


@dataclass
class InProcess:
    """The app in this process (Chalice's test client, authorizer included), wired to the stack's table and queues."""

    stack: Stack
    client: Any

    def call(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        payload = json.dumps(body) if body is not None else None
        resp = getattr(self.client.http, method.lower())(path, headers=headers, body=payload)
        return resp.status_code, (json.loads(resp.body) if resp.body else None)


@pytest.fixture
def in_process(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., InProcess]]:
    """Wires ``chalicelib.bootstrap`` to the stack's emulators; call it (with env overrides) to get the app."""
    from chalice.test import Client

    from app import app

    clients: list[Any] = []

    def make(**env: str) -> InProcess:
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        for name, value in stage_env(stack, ENQUEUE_BACKOFF_MS="5", **env).items():
            monkeypatch.setenv(name, value)
        bootstrap.reset()
        client = Client(app, stage_name="reliability", project_dir=str(PROJECT_ROOT))
        client.__enter__()
        clients.append(client)
        return InProcess(stack, client)

    try:
        yield make
    finally:
        for client in clients:
            client.__exit__(None, None, None)
        bootstrap.reset()
