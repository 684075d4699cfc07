"""Parts 2 and 4: bookings over HTTP at a constant arrival rate, driven by Locust.

Each request books a fresh job prepared beforehand (not timed). Locust runs as a
subprocess (``bench/locustfile.py``, open loop: see there). After the load: how long
until no declined application is PENDING any more (read from DynamoDB), then
whether every job ended with exactly one ACCEPTED and the rest DECLINED.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.checks import DrainWatcher, check_invariants, job_states, wait_queues_empty
from bench.dataset import PreparedJob, prepare_jobs
from bench.procs import CpuMeter, Profiler, cpu_seconds, stack_processes
from bench.stack import PROJECT_ROOT, Stack, clean_env
from bench.stats import fmt_ms, latency_summary, percentile
from tools.local.tokens import make_token

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
PARENTS_PER_RUN = 50


@dataclass(frozen=True)
class LoadSpec:
    rate: float
    duration: float
    apps_per_job: int = 5
    timeout_seconds: float = 10.0
    drain_timeout_seconds: float = 60.0
    warmup_requests: int = 20
    profile_dir: str | None = None  # py-spy profiles of the stack's Python processes go here

    @property
    def requests(self) -> int:
        return max(1, round(self.rate * self.duration))


def run_constant_rate(stack: Stack, spec: LoadSpec, workdir: Path, label: str, say: Callable[[str], None]) -> dict:
    setup_db = stack.client("dynamodb")
    started = time.monotonic()
    count = spec.requests
    owners = [f"bench-{label}-parent-{i}" for i in range(min(PARENTS_PER_RUN, count))]
    jobs = prepare_jobs(setup_db, stack.table, count, spec.apps_per_job, owners, label)
    tokens = {owner: make_token(owner, "parent") for owner in owners}
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / f"{label}-results.json"
    out.unlink(missing_ok=True)
    plan = {
        "rate": spec.rate,
        "timeout_seconds": spec.timeout_seconds,
        "out": str(out),
        "targets": [
            {
                "path": f"/jobs/{job.job_id}/book",
                "body": json.dumps({"applicationId": job.accepted}),
                "token": tokens[job.owner],
            }
            for job in jobs
        ],
    }
    plan_path = workdir / f"{label}-plan.json"
    plan_path.write_text(json.dumps(plan))
    say(f"  {label}: {count} jobs x {spec.apps_per_job} applications prepared in {time.monotonic() - started:.1f} s")

    if spec.warmup_requests:
        warm_up(stack, spec.warmup_requests, spec.apps_per_job, f"{label}-warm")
    watcher = DrainWatcher(setup_db, stack.table, jobs)
    processes = {**stack_processes(stack.ready["pid"]), "this process (drain watcher)": os.getpid()}
    meter = CpuMeter(processes)
    profiler = None
    if spec.profile_dir:
        python_procs = {k: v for k, v in processes.items() if "this process" not in k}
        profiler = Profiler(python_procs, Path(spec.profile_dir), spec.duration)
    meter.start()
    if profiler is not None:
        profiler.start()
    phases = {"prepare_seconds": time.monotonic() - started}
    mark = time.monotonic()
    results = _run_locust(stack, spec, plan_path, out, workdir / f"{label}-locust.log", watcher)
    cpu = meter.stop()
    phases["load_seconds"] = time.monotonic() - mark
    cpu["processes"]["load generator (locust, from its start)"] = {"cpu_seconds": results.pop("locust_cpu_seconds")}
    load = summarize(results["results"], results["epoch_start"], spec.rate)
    # Bookings that answered 200, and those whose request failed (a timeout, say) but committed anyway.
    answered = {jobs[i].job_id for i, r in enumerate(results["results"]) if r["status"] == 200}
    unanswered = [j for j in jobs if j.job_id not in answered]
    committed = answered | {j for j, s in job_states(setup_db, stack.table, unanswered).items() if s == "CLOSED"}
    watcher.keep_only(committed)
    last_end = max((r["ended_epoch"] for r in results["results"] if r.get("ended_epoch")), default=time.time())
    mark = time.monotonic()
    drain = watcher.wait(since=last_end, timeout=spec.drain_timeout_seconds)
    all_landed = drain["drained"]
    if unanswered:
        # A request the client gave up on may still have been running on the server: look again.
        late = {j for j, s in job_states(setup_db, stack.table, unanswered).items() if s == "CLOSED"} - committed
        if late:
            drain["late_commits"] = len(late)
            if all_landed:
                again = DrainWatcher(setup_db, stack.table, [j for j in jobs if j.job_id in late], 0)
                all_landed = again.wait(since=time.time(), timeout=spec.drain_timeout_seconds)["drained"]
                drain["late_drained"] = all_landed
            committed |= late
    drain["committed_without_200"] = len(committed - answered)
    phases["drain_wait_seconds"] = time.monotonic() - mark
    # The bookings' delayed sweeps are still to come: the work a booking causes ends when the queue is empty.
    mark = time.monotonic()
    quick = {"read_timeout": 15, "retries": {"total_max_attempts": 1}}
    queues = wait_queues_empty(
        stack.client("sqs", **quick), [stack.ready["queue_url"], stack.ready["dlq_url"]], spec.drain_timeout_seconds
    )
    cpu["through_drain"] = meter.stop()
    cpu["per_booking"] = cpu_per_booking(cpu["through_drain"], len(committed))
    phases["queues_empty_seconds"] = time.monotonic() - mark
    mark = time.monotonic()
    # Declines that had not landed when the wait gave up are counted, not reported as violations.
    invariants = check_invariants(setup_db, stack.table, jobs, committed, allow_pending=not all_landed)
    depths = queues["depths"]
    phases["checks_seconds"] = time.monotonic() - mark
    profile = profiler.finish() if profiler is not None else None
    say(
        f"  {label}: {load['requests']} requests at {load['rate']:.1f}/s, success {load['success_ratio']:.2%}, "
        f"p50 {fmt_ms(load['latency'].get('p50'))}, p99 {fmt_ms(load['latency'].get('p99'))}; "
        f"drain {_fmt_drain(drain)}, {drain.get('pending_when_load_ended')} PENDING at load end; "
        f"invariants {'held' if invariants['ok'] else 'VIOLATED'}; "
        f"CPU {cpu['per_booking']['total_ms']:.1f} ms per booking ("
        + ", ".join(f"{k.split(' (')[0]} {v:.1f}" for k, v in cpu["per_booking"]["processes"].items())
        + ")"
    )
    return {
        "label": label,
        "spec": spec.__dict__,
        **load,
        "drain": drain,
        "invariants": invariants,
        "queues_after": depths,
        "cpu": cpu,
        "profile": profile,
        "phases": phases,
        "raw": [{k: r.get(k) for k in ("sent_s", "ms", "status", "late_ms")} for r in results["results"]],
    }


# The stack's processes (not the load generator, not the bench's own reads).
STACK_ROLES = ("queue pollers", "MiniStack", "chalice local")


def cpu_per_booking(cpu: dict[str, Any], bookings: int) -> dict[str, Any]:
    """CPU milliseconds per committed booking, per stack process and in all, from the load's
    start until the queues were empty (the declines and the sweeps included)."""
    per = {
        name: 1000 * used["cpu_seconds"] / max(1, bookings)
        for name, used in cpu["processes"].items()
        if name.startswith(STACK_ROLES)
    }
    return {"bookings": bookings, "seconds": cpu["seconds"], "processes": per, "total_ms": sum(per.values())}


def warm_up(stack: Stack, count: int, apps_per_job: int, label: str) -> None:
    """A few bookings before the measured ones (not recorded): the API's threads, clients and caches exist."""
    owner = f"bench-{label}-parent"
    jobs = prepare_jobs(stack.client("dynamodb"), stack.table, count, apps_per_job, [owner], label)
    headers = {"Authorization": f"Bearer {make_token(owner, 'parent')}"}

    def book(job: PreparedJob) -> int:
        url = f"{stack.api_url}/jobs/{job.job_id}/book"
        return requests.post(url, json={"applicationId": job.accepted}, headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(book, jobs))
    if any(s != 200 for s in statuses):
        raise RuntimeError(f"warm-up bookings failed: {statuses}")


def _fmt_drain(drain: dict[str, Any]) -> str:
    if not drain.get("drained"):
        return f"NOT drained ({drain.get('still_pending')} pending)"
    return f"{drain['drain_seconds']:.2f} s"


def _run_locust(
    stack: Stack, spec: LoadSpec, plan_path: Path, out: Path, log_path: Path, watcher: DrainWatcher
) -> dict[str, Any]:
    run_time = int(spec.duration + spec.timeout_seconds + 60)
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        "1",
        "--spawn-rate",
        "1",
        "--host",
        stack.api_url,
        "--run-time",
        f"{run_time}s",
        "--stop-timeout",
        "5",
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
    ]
    env = clean_env(BENCH_LOAD_PLAN=str(plan_path))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed command
            cmd, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        watcher.start_background()
        deadline = time.monotonic() + run_time + 30
        # The results file appears right after the last answer: the drain is timed from there.
        while not out.exists():
            if process.poll() is not None and not out.exists():
                raise RuntimeError(f"locust exited ({process.returncode}) without results:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"locust did not finish in time:\n{_tail(log_path)}")
            time.sleep(0.02)
        results = json.loads(out.read_text())
        results["locust_cpu_seconds"] = cpu_seconds(process.pid)
        process.wait(60)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(10)
    return results


def _tail(path: Path, max_chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-max_chars:]
    except OSError:
        return ""


def summarize(results: Sequence[dict[str, Any]], epoch_start: float, target_rate: float) -> dict[str, Any]:
    """The load tester's columns: requests, rate, throughput, success ratio, latency distribution."""
    n = len(results)
    sent = [r["sent_s"] for r in results if r.get("sent_s") is not None]
    ends = [r["ended_epoch"] - epoch_start for r in results if r.get("ended_epoch")]
    ok = sum(1 for r in results if r["status"] == 200)
    attack = (max(sent) - min(sent)) if len(sent) > 1 else 0.0
    span = (max(ends) - min(sent)) if ends and sent else 0.0
    latencies = [r["ms"] for r in results if r.get("ms") is not None]
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    late = [r["late_ms"] for r in results if r.get("late_ms") is not None]
    return {
        "requests": n,
        "target_rate": target_rate,
        "rate": (n - 1) / attack if attack > 0 else float(n),
        "throughput": ok / span if span > 0 else float(ok),
        "success_ratio": ok / n if n else 0.0,
        "status_codes": statuses,
        "latency": latency_summary(latencies),
        "generator_late_ms": {"p99": percentile(late, 99) if late else None, "max": max(late) if late else None},
        "errors": dict(Counter(_error_kind(r["error"]) for r in results if r.get("error")).most_common(5)),
    }


def _error_kind(error: str) -> str:
    """An error without what differs from request to request (URLs, ids)."""
    return re.sub(r"(https?://\S+|[0-9A-HJKMNP-TV-Z]{26})", "…", error)[:160]


def criteria(
    result: dict[str, Any], p99_limit_ms: float, drain_limit_seconds: float, backlog_limit_seconds: float
) -> dict[str, bool]:
    """The load profile's criteria, each met or not, for one constant-rate run."""
    p99 = result["latency"].get("p99")
    drain = result["drain"]
    arrivals = result["spec"]["rate"] * max(0, result["spec"]["apps_per_job"] - 1)
    pending = drain.get("pending_when_load_ended")
    return {
        "success": result["success_ratio"] == 1.0,
        "p99": p99 is not None and p99 <= p99_limit_ms,
        "drain": bool(drain.get("drained")) and drain["drain_seconds"] <= drain_limit_seconds,
        "kept_pace": pending is not None and pending <= arrivals * backlog_limit_seconds,
        "invariants": bool(result["invariants"]["ok"]),
    }


def run_knee(
    stacks: Callable[[str], AbstractContextManager[Stack]],
    rates: Sequence[float],
    step_seconds: float,
    apps_per_job: int,
    p99_limit_ms: float,
    workdir: Path,
    say: Callable[[str], None],
    timeout_seconds: float = 10.0,
    drain_timeout_seconds: float = 60.0,
    drain_limit_seconds: float = 5.0,
    backlog_limit_seconds: float = 2.0,
) -> dict[str, Any]:
    """Steps the rate up until a step misses the load profile's criteria; the highest rate that held.

    A step holds with every request answered 200, p99 within ``p99_limit_ms``, the
    declines drained within ``drain_limit_seconds`` of the last answer, at most
    ``backlog_limit_seconds`` worth of declines PENDING when the load ended, and every
    invariant. Each step runs on a fresh stack (``stacks(name)``), so no step inherits
    the previous one's backlog.
    """
    steps = []
    for rate in rates:
        label = f"knee-{rate:g}"
        spec = LoadSpec(rate, step_seconds, apps_per_job, timeout_seconds, drain_timeout_seconds)
        with stacks(label) as stack:
            result = run_constant_rate(stack, spec, workdir, label, say)
        result["criteria"] = criteria(result, p99_limit_ms, drain_limit_seconds, backlog_limit_seconds)
        held = result["held"] = all(result["criteria"].values())
        result.pop("raw", None)
        steps.append(result)
        if not held:
            break
    held_rates = [s["spec"]["rate"] for s in steps if s["held"]]
    return {
        "p99_limit_ms": p99_limit_ms,
        "drain_limit_seconds": drain_limit_seconds,
        "backlog_limit_seconds": backlog_limit_seconds,
        "step_seconds": step_seconds,
        "steps": steps,
        "highest_rate_held": max(held_rates) if held_rates else None,
        "first_rate_failed": next((s["spec"]["rate"] for s in steps if not s["held"]), None),
    }
