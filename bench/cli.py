"""``python -m bench``: starts a local stack, runs the benchmarks, writes bench/results/.

Parts (``--parts``): 1 booking latency vs applications per job, ours against the
baseline (in-process); 2 the original load profile over HTTP; 3 decline worker
throughput; 4 the knee (rate stepped up). Defaults take a few minutes; ``--smoke``
runs one tiny iteration of each.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.stack import PROJECT_ROOT, Stack, point_at, prepare_environment, start_stack
from tools.localstack import DEFAULT_POLLERS

DEFAULT_OUT = PROJECT_ROOT / "bench" / "results"
BOOK_QUEUE_NAME = "bench-book-declines"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory (default bench/results)")
    p.add_argument("--smoke", action="store_true", help="one tiny iteration of each part (for the tests)")
    p.add_argument("--parts", type=_ints, default=(1, 2, 3, 4), help="which parts to run, e.g. 1,3 (default all)")
    p.add_argument("--keep-workdir", action="store_true", help="keep the stack's log, Locust's plans and logs")
    p.add_argument(
        "--pollers",
        type=int,
        default=DEFAULT_POLLERS,
        help=f"the local stack's queue pollers (default {DEFAULT_POLLERS}, as in make local)",
    )
    p.add_argument(
        "--profile", action="store_true", help="py-spy profiles of the stack's Python processes during part 2"
    )
    g = p.add_argument_group("1. booking latency vs applications per job")
    g.add_argument(
        "--sizes", type=_ints, default=(1, 10, 100, 1000), help="applications per job (default 1,10,100,1000)"
    )
    g.add_argument("--bookings", type=int, default=30, help="bookings per size and implementation (default 30)")
    g.add_argument("--bookings-large", type=int, default=5, help="the same for sizes >= 1000 (default 5)")
    g = p.add_argument_group("2. the original load profile over HTTP")
    g.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    g.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    g.add_argument("--apps-per-job", type=int, default=5, help="applications per booked job (default 5)")
    g.add_argument("--timeout", type=float, default=10.0, help="request timeout in seconds (default 10)")
    g.add_argument("--drain-timeout", type=float, default=60.0, help="seconds to wait for the declines (default 60)")
    g = p.add_argument_group("3. decline worker throughput")
    g.add_argument("--backlog", type=int, default=5000, help="decline messages in the backlog (default 5000)")
    g.add_argument("--worker-concurrency", type=_ints, default=(1, 4), help="poller threads (default 1,4)")
    g.add_argument(
        "--sqs-backlog", type=int, default=500, help="backlog through MiniStack's SQS, 0 to skip (default 500)"
    )
    g = p.add_argument_group("4. knee")
    g.add_argument(
        "--knee-rates",
        type=_floats,
        default=(5, 10, 15, 20, 25, 50, 100, 150, 200),
        help="req/s steps (default 5,10,15,20,25,50,100,150,200)",
    )
    g.add_argument("--knee-step", type=float, default=10.0, help="seconds per step (default 10)")
    g.add_argument("--knee-p99-ms", type=float, default=250.0, help="p99 limit in ms (default 250)")
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes, args.bookings, args.bookings_large = (1, 10), 2, 1
        args.rate, args.duration, args.apps_per_job = 10.0, 2.0, 3
        args.backlog, args.worker_concurrency, args.sqs_backlog = 40, (1,), 20
        args.knee_rates, args.knee_step = (10.0, 20.0), 1.0
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # A SIGTERM unwinds like Ctrl-C, so the stack is stopped on the way out.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    prepare_environment()  # before chalicelib is imported anywhere
    from bench import report

    started = time.monotonic()
    results: dict[str, Any] = {
        "started_at": report.now_utc(),
        "argv": list(sys.argv[1:] if argv is None else argv),
        "smoke": args.smoke,
        "machine": report.machine(),
        "notes": [],
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    say(f"work files in {workdir}")
    failed = False
    try:
        # In-process, the service's metrics print EMF lines to stdout now and then (see bench/README.md).
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            _run_parts(args, results, workdir)
    except Exception as exc:
        failed = True
        results["error"] = "".join(traceback.format_exception(exc))
        say(f"benchmark failed:\n{results['error']}")
    results["elapsed_seconds"] = time.monotonic() - started
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    paths = report.write_all(results, args.out)
    print(paths["md"].read_text(encoding="utf-8"))
    say("results: " + ", ".join(str(p) for p in paths.values() if p.exists()))
    if args.keep_workdir or failed:
        say(f"work files kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    runs = [results.get("http_load"), *(results.get("knee") or {}).get("steps", [])]
    broken = [r["label"] for r in runs if r and not r["invariants"]["ok"]]
    if broken:
        say(f"invariants violated in: {', '.join(broken)}")
    return 1 if failed or broken else 0


def _run_parts(args: argparse.Namespace, results: dict[str, Any], workdir: Path) -> None:
    """Each part (and each knee step) on a stack of its own: none inherits another's data or backlog."""

    @contextlib.contextmanager
    def fresh_stack(name: str) -> Iterator[Stack]:
        stack = start_stack(workdir / f"stack-{name}", pollers=args.pollers)
        say(f"  {name}: local stack up, API {stack.api_url}")
        try:
            yield stack
        except BaseException:
            say(f"the {name} stack's log ends with:\n{stack.log_tail()}")
            raise
        finally:
            stack.stop()

    if 1 in args.parts:
        say("part 1: booking latency vs applications per job (ours vs baseline, in-process)")
        with fresh_stack("part1") as stack:
            # The declines go to a queue of their own, which the stack's poller does not read.
            book_queue = stack.client("sqs").create_queue(QueueName=BOOK_QUEUE_NAME)["QueueUrl"]
            point_at(stack, DECLINES_QUEUE_URL=book_queue)
            from bench import book_latency

            plan = book_latency.Plan(
                sizes=args.sizes,
                bookings=args.bookings,
                bookings_at_1000=args.bookings_large,
                warmup=1 if args.smoke else 3,
            )
            results["book_latency"] = book_latency.run(stack, book_queue, plan, say)
    if 2 in args.parts:
        say(f"part 2: {args.rate:g} req/s for {args.duration:g} s over HTTP")
        from bench import http_load

        profile_dir = str(args.out / "profiles") if args.profile else None
        spec = http_load.LoadSpec(
            args.rate, args.duration, args.apps_per_job, args.timeout, args.drain_timeout, profile_dir=profile_dir
        )
        with fresh_stack("part2") as stack:
            results["http_load"] = http_load.run_constant_rate(stack, spec, workdir / "load", "load", say)
    if 3 in args.parts:
        say(f"part 3: decline worker throughput, backlog {args.backlog}")
        with fresh_stack("part3") as stack:
            point_at(stack)
            from bench import worker_throughput

            plan3 = worker_throughput.Plan(
                backlog=args.backlog,
                concurrency=args.worker_concurrency,
                sqs_backlog=args.sqs_backlog,
                sqs_concurrency=args.worker_concurrency[:1],
            )
            results["worker_throughput"] = worker_throughput.run(stack, plan3, say)
    if 4 in args.parts:
        say(f"part 4: knee, rates {', '.join(f'{r:g}' for r in args.knee_rates)} req/s, {args.knee_step:g} s each")
        from bench import http_load

        results["knee"] = http_load.run_knee(
            fresh_stack,
            args.knee_rates,
            args.knee_step,
            args.apps_per_job,
            args.knee_p99_ms,
            workdir / "knee",
            say,
            timeout_seconds=args.timeout,
            drain_timeout_seconds=args.drain_timeout,
        )


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def say(message: str) -> None:
    with contextlib.suppress(OSError):
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
