"""Part 1: booking latency against the number of applications per job, ours against the baseline.

Both run in this process, against the local stack's MiniStack (DynamoDB and SQS), with
the same boto3 clients (the ones ``chalicelib.bootstrap`` creates), interleaved
booking by booking. Every booking gets a fresh job prepared beforehand. The
declines go to a queue of their own that nothing consumes; it is emptied after
each booking (not timed), so every booking starts on an empty queue, as it would
on SQS, where a send does not depend on how deep the queue is.

``run_model`` does the same with ``bench.latency_model`` attached to the clients
(AWS's published latencies instead of the emulator's), next to the design's floor,
and for a few enqueue concurrencies besides the configured one.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench import latency_model
from bench.baseline import OriginalBaseline
from bench.dataset import prepare_jobs
from bench.stack import Stack
from bench.stats import CallCounter, CallTimer, latency_summary
from chalicelib import bootstrap
from chalicelib.config import get_settings
from chalicelib.declines import SQS_BATCH_LIMIT, DeclineApplication
from chalicelib.domain import Caller, Role, new_id
from chalicelib.observability import flush_metrics
from tools.local.tokens import local_user_id

IMPLEMENTATIONS = ("ours", "baseline")
WARMUP_APPLICATIONS = 10


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...] = (1, 5, 10, 100, 1000)
    bookings: int = 30
    bookings_at_1000: int = 5  # for every size of 1000 and more
    warmup: int = 3
    # On the model, ours alone at 1000 and more (the baseline's 1000 sends in turn take ~20 s a booking
    # there; bench.aws_model draws it instead).
    model_bookings_at_1000: int = 20

    def bookings_for(self, size: int) -> int:
        return self.bookings_at_1000 if size >= 1000 else self.bookings


def expected_calls(impl: str, size: int, query_pages: int = 1) -> dict[str, int]:
    """What each implementation should call for a job of ``size`` applications (one is accepted)."""
    declines = size - 1
    if impl == "ours":
        # the declines and the booking's delayed sweep of the job, ten entries per call
        # the job and the application in one read, then the nanny's calendar (docs/job-life.md);
        # beside the transaction, the index (keys only)
        calls = {"TransactGetItems": 1, "GetItem": 1, "TransactWriteItems": 1, "Query": query_pages}
        calls["SendMessageBatch"] = math.ceil((declines + 1) / SQS_BATCH_LIMIT)
        return calls
    calls = {"Query": 1, "TransactWriteItems": 1}
    if declines:
        calls["SendMessage"] = declines
    return calls


def run(stack: Stack, queue_url: str, plan: Plan, say: Callable[[str], None]) -> dict[str, Any]:
    """Both implementations on the emulator, as they are."""
    sizes = _measure(stack, queue_url, plan, say, model=None, implementations=IMPLEMENTATIONS, label="emulator")
    costs = sqs_call_costs(bootstrap.sqs_client(), queue_url, stack.client("sqs"), 3 if plan.bookings < 10 else 30)
    say(
        f"  SQS emulator, empty queue: SendMessage p50 {costs['SendMessage']['p50']:.1f} ms, "
        f"SendMessageBatch of 10 p50 {costs['SendMessageBatch']['p50']:.1f} ms, "
        f"4 of those at once p50 {costs['4 x SendMessageBatch at once']['p50']:.1f} ms"
    )
    return {"plan": plan.__dict__ | {"sizes": list(plan.sizes)}, "sizes": sizes, "sqs_call_costs": costs}


def run_model(
    stack: Stack,
    queue_url: str,
    plan: Plan,
    say: Callable[[str], None],
    other_concurrencies: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Both implementations with the AWS latency model on their clients, next to the design's floor;
    then ours alone at each of ``other_concurrencies`` (the publisher's batches in flight at once)."""
    configured = get_settings().enqueue_concurrency
    sizes = _measure(stack, queue_url, plan, say, model=latency_model.LatencyModel(), implementations=IMPLEMENTATIONS)
    for entry in sizes:
        entry["design_floor"] = latency_model.design_floor_ms(entry["applications"])
        entry["any_design_floor"] = latency_model.any_design_floor_ms()
        entry["model_expects_ours"] = latency_model.expected_booking_ms(entry["applications"], configured)
        entry["ours_to_design_floor_p50"] = entry["ours"]["latency"]["p50"] / entry["design_floor"]["p50"]
    by_concurrency: dict[str, Any] = {}
    for concurrency in [c for c in other_concurrencies if c != configured]:
        with _enqueue_concurrency(concurrency):
            found = _measure(
                stack,
                queue_url,
                plan,
                say,
                model=latency_model.LatencyModel(seed=concurrency),
                implementations=("ours",),
                label=f"model, concurrency {concurrency}",
            )
        by_concurrency[str(concurrency)] = [
            {
                "applications": e["applications"],
                "latency": e["ours"]["latency"],
                "cpu_ms": e["ours"]["cpu_ms"],
                "model_expects": latency_model.expected_booking_ms(e["applications"], concurrency),
                "design_floor": latency_model.design_floor_ms(e["applications"]),
            }
            for e in found
        ]
    return {
        "plan": plan.__dict__ | {"sizes": list(plan.sizes)},
        "configured_concurrency": configured,
        "max_pool_connections": bootstrap.client_config().max_pool_connections,
        "sources": latency_model.sources(),
        "sizes": sizes,
        "by_concurrency": by_concurrency,
    }


@contextlib.contextmanager
def _enqueue_concurrency(concurrency: int) -> Iterator[None]:
    """The publisher rebuilt with another ENQUEUE_CONCURRENCY for a while."""
    before = os.environ.get("ENQUEUE_CONCURRENCY")
    os.environ["ENQUEUE_CONCURRENCY"] = str(concurrency)
    bootstrap.reset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("ENQUEUE_CONCURRENCY", None)
        else:
            os.environ["ENQUEUE_CONCURRENCY"] = before
        bootstrap.reset()


def _measure(
    stack: Stack,
    queue_url: str,
    plan: Plan,
    say: Callable[[str], None],
    *,
    model: latency_model.LatencyModel | None,
    implementations: tuple[str, ...],
    label: str = "model",
) -> list[dict[str, Any]]:
    setup_db, setup_sqs = stack.client("dynamodb"), stack.client("sqs")
    if model is not None:
        bootstrap.reset()  # fresh clients: the model stays on them only
    dynamodb, sqs = bootstrap.dynamodb_client(), bootstrap.sqs_client()
    service = bootstrap.service()
    baseline = OriginalBaseline(dynamodb, sqs, stack.table, queue_url)
    counter = CallCounter().attach(dynamodb, sqs)
    timer = CallTimer().attach(dynamodb, sqs)
    if model is not None:
        model.attach(dynamodb, sqs)  # last: its answer to an SQS send ends the before-call handlers
    owners = [f"bench-p1-parent-{i}" for i in range(10)]
    # With the model, sends never reach the emulator: there is no queue to empty.
    settle = (lambda: None) if model is not None else (lambda: empty_queue(setup_sqs, queue_url))

    def book(impl: str, owner: str, job_id: str, application_id: str) -> int:
        if impl == "ours":
            caller = Caller(user_id=local_user_id(owner), username=owner, roles=frozenset({Role.PARENT}))
            return service.book(caller, job_id, application_id).declines_queued
        return baseline.book(owner, job_id, application_id)

    # Warm-up: clients, connection pools and the publisher's threads exist before timing.
    tag = "e" if model is None else f"m{id(model) % 10000}"
    warm = prepare_jobs(setup_db, stack.table, 2 * plan.warmup, WARMUP_APPLICATIONS, owners, f"p1-warm-{tag}")
    for i, job in enumerate(warm):
        book(implementations[i % len(implementations)], job.owner, job.job_id, job.accepted)
        flush_metrics()
        settle()
    counter.take()
    timer.take()

    sizes: list[dict[str, Any]] = []
    for size in plan.sizes:
        count, impls = plan.bookings_for(size), implementations
        if model is not None and size >= 1000:
            count, impls = plan.model_bookings_at_1000, ("ours",)
        started = time.monotonic()
        jobs = prepare_jobs(setup_db, stack.table, len(impls) * count, size, owners, f"p1-{tag}-n{size}")
        say(f"  {label}, N={size}: {len(jobs)} jobs prepared in {time.monotonic() - started:.1f} s; booking...")
        samples: dict[str, list[dict[str, Any]]] = {impl: [] for impl in impls}
        for i in range(count):
            # Alternate which one goes first, so neither always follows the other.
            order = impls if i % 2 == 0 else impls[::-1]
            for k, impl in enumerate(order):
                job = jobs[len(impls) * i + k]
                counter.take()
                timer.take()
                cpu0 = time.process_time()
                t0 = time.perf_counter()
                queued = book(impl, job.owner, job.job_id, job.accepted)
                elapsed_ms = (time.perf_counter() - t0) * 1000
                cpu_ms = (time.process_time() - cpu0) * 1000
                calls, call_ms = counter.take(), timer.take()
                flush_metrics()
                settle()
                samples[impl].append(
                    {"ms": elapsed_ms, "cpu_ms": cpu_ms, "queued": queued, "calls": calls, "call_ms": call_ms}
                )
        sizes.append(_summarize(size, samples))
        ours = sizes[-1]["ours"]
        text = f"  {label}, N={size}: ours p50 {ours['latency']['p50']:.1f} ms (CPU {ours['cpu_ms']:.1f} ms)"
        if "baseline" in sizes[-1]:
            base = sizes[-1]["baseline"]
            text += (
                f", baseline p50 {base['latency']['p50']:.1f} ms (x{sizes[-1]['ratio_p50']:.1f}); "
                f"calls {ours['calls_total_per_booking']} vs {base['calls_total_per_booking']}"
            )
        say(text)
    return sizes


def sqs_call_costs(sqs: Any, queue_url: str, setup_sqs: Any, calls: int) -> dict[str, Any]:
    """What the emulator takes, on a near-empty queue, for one SendMessage, one SendMessageBatch of 10,
    and four such batches sent at once (as the publisher does): the wall time of each."""
    body = DeclineApplication(new_id(), new_id()).to_json()
    entries = [{"Id": str(i), "MessageBody": body} for i in range(SQS_BATCH_LIMIT)]

    def batch(_: int = 0) -> None:
        sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)

    ops = {
        "SendMessage": lambda: sqs.send_message(QueueUrl=queue_url, MessageBody=body),
        "SendMessageBatch": batch,
        "4 x SendMessageBatch at once": lambda: list(pool.map(batch, range(4))),
    }
    samples: dict[str, list[float]] = {op: [] for op in ops}
    with ThreadPoolExecutor(4) as pool:
        for i in range(calls):
            for op in ops if i % 2 == 0 else reversed(ops):
                t0 = time.perf_counter()
                ops[op]()
                samples[op].append((time.perf_counter() - t0) * 1000)
            if i % 2 == 1:
                empty_queue(setup_sqs, queue_url)
    empty_queue(setup_sqs, queue_url)
    return {op: latency_summary(ms) for op, ms in samples.items()}


def empty_queue(sqs: Any, queue_url: str) -> None:
    """Deletes and recreates the queue (same name, same URL): SQS allows one PurgeQueue a minute."""
    sqs.delete_queue(QueueUrl=queue_url)
    created = sqs.create_queue(QueueName=queue_url.rsplit("/", 1)[-1])["QueueUrl"]
    if created != queue_url:
        raise RuntimeError(f"recreated queue has another URL: {created}")


def _summarize(size: int, samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {"applications": size}
    for impl, runs in samples.items():
        latencies = [r["ms"] for r in runs]
        call_sets = Counter(tuple(sorted(r["calls"].items())) for r in runs)
        typical = dict(call_sets.most_common(1)[0][0]) if call_sets else {}
        time_in_calls: Counter[str] = Counter()
        for r in runs:
            time_in_calls.update(r["call_ms"])
        pages = typical.get("Query", 1) if impl == "ours" else 1
        expected = expected_calls(impl, size, pages)
        out[impl] = {
            "bookings": len(runs),
            "latency": latency_summary(latencies),
            "latencies_ms": latencies,
            "calls_per_booking": typical,
            "calls_total_per_booking": sum(typical.values()),
            "calls_vary": len(call_sets) > 1,
            "calls_expected": expected,
            "calls_as_expected": all(dict(c) == expected for c in call_sets),
            "declines_queued_ok": all(r["queued"] == size - 1 for r in runs),
            "mean_ms_in_calls": {op: ms / len(runs) for op, ms in sorted(time_in_calls.items())},
            # This process's CPU during the booking: the client's own cost, which the latency model leaves out.
            "cpu_ms": statistics.median(r["cpu_ms"] for r in runs) if runs else math.nan,
        }
    if "baseline" in out:
        for q in ("p50", "p95", "p99"):
            out[f"ratio_{q}"] = out["baseline"]["latency"][q] / out["ours"]["latency"][q]
    return out
