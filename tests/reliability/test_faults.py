"""Injected faults on the local stack (MiniStack's DynamoDB and SQS): whatever fails, no decline is lost.

The booking side runs in this process (Chalice's test client, the real authorizer and
``chalicelib.bootstrap``) against the stack's emulators, so its AWS clients can be
wrapped or hooked; the stack's own worker applies the declines it queues. The worker
side runs the app's SQS handler on queues of the test's own (the stack only polls the
stage's queue), in this process or in a process the test kills.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import jwt
import pytest

from chalicelib import bootstrap
from chalicelib.declines import DeclineApplication
from chalicelib.domain import format_time, utc_now
from tests.fakes.sqs import RandomlyFlakySqs
from tests.fakes.store import RecordingStore
from tests.reliability.conftest import (
    FIGURES,
    PROJECT_ROOT,
    InProcess,
    Stack,
    nanny_token,
    parent_token,
    run_parallel,
    scaled,
    stage_env,
)
from tools.local.worker import QueuePoller

pytestmark = pytest.mark.e2e


# ------------------------------------------------------------------ helpers


def _jobs(stack: Stack, count: int, applicants: int) -> list[tuple[str, str, list[str]]]:
    """``count`` jobs over HTTP, each with ``applicants`` applications: (owner's token, job id, application ids)."""
    made = []
    for _ in range(count):
        parent = parent_token()
        job_id = stack.create_job(parent)["jobId"]
        apps = run_parallel(
            lambda t, j=job_id: stack.apply(t, j)["applicationId"],
            [(nanny_token(),) for _ in range(applicants)],
            barrier=False,
            stack=stack,
        )
        for a in apps:
            if isinstance(a, BaseException):
                raise a
        made.append((parent, job_id, apps))
    return made


def _expect_settled(stack: Stack, jobs: list[tuple[str, str, list[str]]], area: str) -> None:
    """After the drain, the first application of every job is ACCEPTED and every other one DECLINED."""
    settled = stack.wait_settled([j for _, j, _ in jobs], area)
    wrong = []
    for _, job_id, (chosen, *others) in jobs:
        expected = {chosen: "ACCEPTED", **dict.fromkeys(others, "DECLINED")}
        if settled[job_id] != expected:
            wrong.append(f"{job_id}: {settled[job_id]}")
    FIGURES.add(area, "jobs in a wrong final state", len(wrong))
    assert not wrong, "\n".join(wrong)


def _ops(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m tools.ops ... --stage local`` pointed at the stack's emulators."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(stack.endpoint_env())
    return subprocess.run(  # noqa: S603 - fixed command
        [sys.executable, "-m", "tools.ops", *args, "--stage", "local"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def parent_user(token: str) -> str:
    """The user id (sub) the token speaks for."""
    return jwt.decode(token, options={"verify_signature": False})["sub"]


def _peek_all(stack: Stack, queue_url: str) -> list[str]:
    """Every message body in the queue, each put back (visible) afterwards."""
    seen: dict[str, dict[str, Any]] = {}
    while got := stack.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60).get(
        "Messages", []
    ):
        seen.update((m["MessageId"], m) for m in got)
    for m in seen.values():
        stack.sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    return [m["Body"] for m in seen.values()]


def _book(app: InProcess, token: str, job_id: str, application_id: str) -> tuple[int, Any]:
    return app.call("POST", f"/jobs/{job_id}/book", token, {"applicationId": application_id})


def _check_booking_answer(status: int, body: Any, chosen: str, others: list[str], replay: bool = False) -> str | None:
    """The answer must say what happened: booked, and how many declines were (not) queued.

    A first booking finds every other application PENDING, so its counts add up to all of
    them. A replay re-queues only what its index query still reads PENDING: what the
    worker has declined since is not counted again, so its counts add up to at most that
    (the final states, checked after the drain, are what must add up).
    """

    def adds_up(count: int) -> bool:
        return 0 <= count <= len(others) if replay else count == len(others)

    if status == 200:
        if (body["acceptedApplicationId"], body["job"]["status"]) != (chosen, "CLOSED") or not adds_up(
            body["declinesQueued"]
        ):
            return f"200 that does not add up: {body}"
        return None
    if status == 503 and body.get("code") == "DECLINES_NOT_QUEUED":
        details = body.get("details") or {}
        if details.get("acceptedApplicationId") != chosen:
            return f"503 that does not name the booking: {body}"
        if not adds_up(details.get("declinesQueued", -1) + details.get("declinesNotQueued", -1)):
            return f"503 whose counts do not add up to {'at most ' if replay else ''}{len(others)}: {body}"
        if details["declinesNotQueued"] < 1 and details.get("sweepQueued") is not False:
            return f"503 with nothing left unqueued: {body}"
        return None
    return f"unexpected answer {status} {body}"


# ----------------------------------------------------- enqueue side (booking)


@pytest.mark.parametrize(
    "fault",
    ["30% of entries Failed", "30% of calls raise", "SQS down, healed by replay", "SQS down, healed by reconcile"],
)
def test_declines_survive_send_message_batch_failures(
    stack: Stack, in_process: Callable[..., InProcess], fault: str
) -> None:
    jobs = _jobs(stack, scaled(6, 20), scaled(14, 24))
    app = in_process()
    flaky = RandomlyFlakySqs(bootstrap.sqs_client(), random.Random(len(fault)))
    if fault.startswith("30% of entries"):
        flaky.entry_failure = 0.3
    elif fault.startswith("30% of calls"):
        flaky.call_failure = 0.3
    else:
        flaky.call_failure = 1.0
    bootstrap.override(sqs_client=flaky)
    answers: Counter[str] = Counter()
    problems = []
    unhealed = []

    for parent, job_id, (chosen, *others) in jobs:
        status, body = _book(app, parent, job_id, chosen)
        answers[f"{status} {body.get('code', '') if isinstance(body, dict) else ''}".strip()] += 1
        if problem := _check_booking_answer(status, body, chosen, others):
            problems.append(f"{job_id}: {problem}")
        if status == 503:
            # The booking stands, whatever the queue did.
            job = stack.ok("GET", f"/jobs/{job_id}", parent)
            if (job["status"], job.get("acceptedApplicationId")) != ("CLOSED", chosen):
                problems.append(f"{job_id}: after a 503 the job is {job}")
            unhealed.append((parent, job_id, chosen, others))
        if fault.startswith("30%"):
            # A client repeats the same booking until it is answered 200.
            for _ in range(10):
                if status == 200:
                    break
                status, body = _book(app, parent, job_id, chosen)
                answers[f"replay {status}"] += 1
                if problem := _check_booking_answer(status, body, chosen, others, replay=True):
                    problems.append(f"{job_id} replay: {problem}")
            if status != 200:
                problems.append(f"{job_id}: still not 200 after 10 replays")

    if fault.startswith("SQS down"):
        assert len(unhealed) == len(jobs), answers
        flaky.call_failure = 0.0  # SQS is back
        if fault.endswith("replay"):
            for parent, job_id, chosen, others in unhealed:
                status, body = _book(app, parent, job_id, chosen)
                if (status, body.get("declinesQueued")) != (200, len(others)):
                    problems.append(f"{job_id}: the replay got {status} {body}")
        else:
            result = _ops(stack, "reconcile")
            assert result.returncode == 0, result.stdout + result.stderr
            for _, job_id, _, others in unhealed:
                if f"job {job_id}: queued {len(others)} declines" not in result.stdout:
                    problems.append(f"{job_id}: reconcile did not queue its {len(others)} declines:\n{result.stdout}")

    for name, n in flaky.injected.items():
        FIGURES.add("faults", name, n)
        FIGURES.add("faults", "faults injected (total)", n)
    FIGURES.add("faults", "bookings answered 503 DECLINES_NOT_QUEUED", len(unhealed))
    FIGURES.note(f"{fault}: answers {dict(answers)}")
    assert not problems, "\n".join(problems)
    assert sum(flaky.injected.values()) > 0
    _expect_settled(stack, jobs, "faults")


def test_a_crash_between_commit_and_enqueue_is_healed_by_replay_and_by_reconcile(
    stack: Stack, in_process: Callable[..., InProcess]
) -> None:
    jobs = _jobs(stack, scaled(4, 20), scaled(8, 16))
    in_process()
    before = stack.depth(stack.queue_url)

    # The booking's transaction commits, then the process dies: nothing is queued.
    for parent, job_id, (chosen, *_) in jobs:
        assert (
            not bootstrap.store()
            .close_job_and_accept(parent_user(parent), job_id, chosen, format_time(utc_now()))
            .replayed
        )
    FIGURES.add("faults", "crashes between commit and enqueue", len(jobs))
    FIGURES.add("faults", "faults injected (total)", len(jobs))
    assert stack.depth(stack.queue_url) == before
    for parent, job_id, (chosen, *_) in jobs:
        job = stack.ok("GET", f"/jobs/{job_id}", parent)
        assert (job["status"], job["acceptedApplicationId"]) == ("CLOSED", chosen)
        assert set(stack.statuses(job_id).values()) == {"ACCEPTED", "PENDING"}

    # Half the clients repeat their booking over HTTP; reconcile sweeps up the rest.
    half = len(jobs) // 2
    for parent, job_id, (chosen, *others) in jobs[:half]:
        body = stack.ok("POST", f"/jobs/{job_id}/book", parent, json={"applicationId": chosen})
        assert (body["acceptedApplicationId"], body["declinesQueued"]) == (chosen, len(others))
    result = _ops(stack, "reconcile")
    assert result.returncode == 0, result.stdout + result.stderr
    for _, job_id, (_, *others) in jobs[half:]:
        assert f"job {job_id}: queued {len(others)} declines" in result.stdout, result.stdout

    _expect_settled(stack, jobs, "faults")
    again = _ops(stack, "reconcile")
    assert ", 0 with PENDING leftovers, 0 healed, 0 declines queued, 0 failures" in again.stdout, again.stdout


# ------------------------------------------------------- worker side (declines)


def _throttled(message: str = "injected") -> tuple[Any, dict[str, Any]]:
    body = {
        "Error": {"Code": "ProvisionedThroughputExceededException", "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }
    return SimpleNamespace(status_code=400, headers={}), body


def _book_into(app: InProcess, jobs: list[tuple[str, str, list[str]]]) -> None:
    for parent, job_id, (chosen, *others) in jobs:
        status, body = _book(app, parent, job_id, chosen)
        assert (status, body["declinesQueued"]) == (200, len(others)), body


def _drain(poller: QueuePoller, stack: Stack, queue_url: str, timeout: float = 120.0) -> int:
    """Polls until the queue is empty (failed records come back at once: retry delay 0); the batches run."""
    deadline = time.monotonic() + timeout
    batches = 0
    while stack.depth(queue_url):
        if poller.poll_once() is not None:
            batches += 1
        assert time.monotonic() < deadline, f"{queue_url} did not drain"
    return batches


@pytest.fixture
def private_queue(stack: Stack) -> Iterator[Callable[..., tuple[str, str]]]:
    made: list[str] = []

    def make(purpose: str, visibility_seconds: int = 30) -> tuple[str, str]:
        url, dlq = stack.private_queue(purpose, visibility_seconds)
        made.extend([url, dlq])
        return url, dlq

    yield make
    stack.delete_queues(*made)


@pytest.mark.parametrize("partial_responses", ["true", "false"])
def test_a_worker_throttled_one_time_in_five_applies_every_decline_once(
    stack: Stack,
    in_process: Callable[..., InProcess],
    private_queue: Callable[..., tuple[str, str]],
    partial_responses: str,
) -> None:
    from app import decline_worker

    queue_url, dlq_url = private_queue("throttle")
    jobs = _jobs(stack, scaled(3, 20), scaled(15, 25))
    app = in_process(DECLINES_QUEUE_URL=queue_url, DECLINES_PARTIAL_BATCH_RESPONSES=partial_responses)
    _book_into(app, jobs)
    store = RecordingStore(bootstrap.store())
    bootstrap.override(store=store)
    rng = random.Random(7)
    throttled = Counter()
    throttling = [True]

    def throttle(model: Any, **_: Any) -> tuple[Any, dict[str, Any]] | None:
        if throttling[0] and rng.random() < 0.2:
            throttled["UpdateItem throttled"] += 1
            return _throttled()
        return None

    bootstrap.dynamodb_client().meta.events.register("before-call.dynamodb.UpdateItem", throttle)
    # Failed records come back at once (retry delay 0; the stack's worker waits 1 s).
    poller = QueuePoller(
        stack.sqs, queue_url, decline_worker, function_name="decline-worker-test", wait_seconds=0, retry_delay_seconds=0
    )

    _drain(poller, stack, queue_url)

    # Each decline was applied, or is in the DLQ after 5 failed receives: none dropped silently.
    others = {a for _, _, (_, *rest) in jobs for a in rest}
    applied = {a for a in others if store.outcomes[a]["declined"]}
    dead = [json.loads(body) for body in _peek_all(stack, dlq_url)]
    # A booking's delayed SweepJob can be dead-lettered too (with partial responses off, one
    # throttled record fails its whole batch); every decline still has its own message.
    dead_ids = {m["applicationId"] for m in dead if m.get("kind") == "DeclineApplication"}
    assert others - applied <= dead_ids, f"dropped: {others - applied - dead_ids}"
    FIGURES.add("faults", "UpdateItem throttled", throttled["UpdateItem throttled"])
    FIGURES.add("faults", "faults injected (total)", throttled["UpdateItem throttled"])
    FIGURES.add(
        "faults", f"declines dead-lettered under throttling (partial responses {partial_responses})", len(dead_ids)
    )
    FIGURES.add(
        "faults",
        f"sweeps dead-lettered under throttling (partial responses {partial_responses})",
        sum(m.get("kind") == "SweepJob" for m in dead),
    )

    # The operator redrives the DLQ once the throttling is over; the worker finishes.
    throttling[0] = False
    if stack.depth(dlq_url):
        result = _ops(stack, "redrive", "--queue", queue_url.rsplit("/", 1)[1])
        assert result.returncode == 0, result.stdout + result.stderr
        _drain(poller, stack, queue_url)

    assert throttled["UpdateItem throttled"] > 0
    twice = {a: dict(c) for a, c in store.outcomes.items() if c["declined"] != 1}
    assert not twice, f"declines not applied exactly once: {twice}"
    assert stack.depth(dlq_url) == 0
    _expect_settled(stack, jobs, "faults")


class WorkerProcess:
    """``tests.reliability.crash_worker`` as a child process: its JSON lines, and a way to kill it."""

    def __init__(self, stack: Stack, queue_url: str, crash: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(stage_env(stack))
        cmd = [sys.executable, "-m", "tests.reliability.crash_worker", queue_url]
        if crash:
            cmd += ["--crash", crash]
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(  # noqa: S603 - fixed command
            cmd,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            start_new_session=True,
        )
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if "event" in event:  # the app's own JSON log lines (a sweep's warning, say) go to stdout too
                self.events.append(event)

    def wait_for(self, kind: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events if e["event"] == kind]
            if found:
                return found[0]
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"the worker process never reported {kind!r}; its stderr:\n{self.stderr_text()}")

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")[-4000:]

    def outcomes(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "outcome"]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._reader.join(5)
        self.stderr.close()


@pytest.mark.parametrize("crash_point", ["received", "mid-batch"])
def test_a_worker_killed_mid_batch_loses_no_decline(
    stack: Stack,
    in_process: Callable[..., InProcess],
    private_queue: Callable[..., tuple[str, str]],
    crash_point: str,
) -> None:
    # A short visibility timeout stands in for Lambda's: the killed batch comes back in seconds.
    queue_url, dlq_url = private_queue("crash", visibility_seconds=3)
    jobs = _jobs(stack, 2, 8)
    _book_into(in_process(DECLINES_QUEUE_URL=queue_url), jobs)
    others = {a for _, _, (_, *rest) in jobs for a in rest}
    # One decline per other application, and one (delayed) sweep per booking.
    queued = len(others) + len(jobs)
    assert stack.depth(queue_url) == queued

    crashed = WorkerProcess(stack, queue_url, crash=crash_point)
    try:
        point = crashed.wait_for("crash-point")
    finally:
        crashed.stop(signal.SIGKILL)
    FIGURES.add("faults", "worker processes killed mid-batch")
    FIGURES.add("faults", "faults injected (total)")
    applied_before = [e["applicationId"] for e in crashed.outcomes() if e["outcome"] == "declined"]
    # Each record handled before the kill declined at least one application: a decline its
    # own, a sweep (visible once its delay is over) every one of its job still PENDING.
    assert len(applied_before) >= point["handled"]
    assert stack.depth(queue_url) == queued, "the killed worker deleted messages"

    restarted = WorkerProcess(stack, queue_url)
    try:
        restarted.wait_for("ready")
        settle_deadline = time.monotonic() + 60
        while stack.depth(queue_url) or any(s == "PENDING" for _, j, _ in jobs for s in stack.statuses(j).values()):
            assert time.monotonic() < settle_deadline, f"not settled; worker stderr:\n{restarted.stderr_text()}"
            time.sleep(0.2)
    finally:
        restarted.stop()

    declined = Counter(
        e["applicationId"] for e in crashed.outcomes() + restarted.outcomes() if e["outcome"] == "declined"
    )
    assert set(declined) == others and set(declined.values()) == {1}, declined
    # What the killed worker had applied came back and was a harmless no-op.
    again = {e["applicationId"] for e in restarted.outcomes() if e["outcome"] == "already_declined"}
    assert set(applied_before) <= again
    assert stack.depth(dlq_url) == 0
    _expect_settled(stack, jobs, "faults")


def test_a_poison_message_is_dead_lettered_after_5_receives_and_redrive_brings_messages_back(
    stack: Stack, in_process: Callable[..., InProcess]
) -> None:
    sqs = stack.sqs
    max_receives = int(
        json.loads(
            sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["RedrivePolicy"])["Attributes"][
                "RedrivePolicy"
            ]
        )["maxReceiveCount"]
    )
    assert max_receives == 5
    dlq_before = stack.depth(stack.dlq_url)
    poison = f"not json {uuid.uuid4()}"
    # A valid decline that an earlier outage left in the DLQ, for a booking whose process then died.
    ((parent, job_id, (chosen, other)),) = _jobs(stack, 1, 2)
    in_process()
    bootstrap.store().close_job_and_accept(parent_user(parent), job_id, chosen, format_time(utc_now()))
    sqs.send_message(QueueUrl=stack.dlq_url, MessageBody=DeclineApplication(job_id, other).to_json())
    sqs.send_message(QueueUrl=stack.queue_url, MessageBody=poison)
    FIGURES.add("faults", "poison messages")
    FIGURES.add("faults", "faults injected (total)")

    def poison_in_dlq() -> dict[str, Any] | None:
        got = sqs.receive_message(
            QueueUrl=stack.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])
        found = None
        for m in got:  # look, and put back at once
            sqs.change_message_visibility(QueueUrl=stack.dlq_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
            if m["Body"] == poison:
                found = m
        return found

    deadline = time.monotonic() + 40
    while (message := poison_in_dlq()) is None:
        assert time.monotonic() < deadline, stack.log_tail()
    # The worker's receives, then this test's look.
    assert int(message["Attributes"]["ApproximateReceiveCount"]) == max_receives + 1
    assert stack.statuses(job_id)[other] == "PENDING"

    result = _ops(stack, "redrive")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{dlq_before + 2} messages moved back" in result.stdout, result.stdout

    # The valid decline is applied; the poison fails again and goes back to the DLQ: nothing lost, nothing stuck.
    assert stack.wait_settled([job_id], "faults")[job_id] == {chosen: "ACCEPTED", other: "DECLINED"}
    deadline = time.monotonic() + 40
    while (message := poison_in_dlq()) is None:
        assert time.monotonic() < deadline, stack.log_tail()
    assert stack.depth(stack.queue_url) == 0
    # Clean up the DLQ for the tests that follow.
    while got := sqs.receive_message(QueueUrl=stack.dlq_url, MaxNumberOfMessages=10).get("Messages", []):
        for m in got:
            sqs.delete_message(QueueUrl=stack.dlq_url, ReceiptHandle=m["ReceiptHandle"])
