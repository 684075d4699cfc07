"""``python -m bench``: starts a local stack, runs the benchmarks, writes bench/results/.

Parts (``--parts``): 1 booking latency vs applications per job, ours against the
baseline (in-process), on the emulator and on a model of AWS's latencies; 2 the
original load profile over HTTP; 3 decline worker throughput; 4 the knee (rate
stepped up); 5 cold start of each function from the packaged zip; 6 the cost of a
booking (consumed capacity, measured); 7 the article's Express workflow on the
emulator's Step Functions beside our API. A machine yardstick is timed in every run.
Then the figures are put on AWS's terms (bench/aws_analysis.py): end to end per
design, cost per 1,000 bookings, the API function's memory. ``--smoke`` runs one
tiny iteration of each.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.stack import PROJECT_ROOT, Stack, point_at, prepare_environment, start_stack
from tools.local.stack import DEFAULT_BATCHING_WINDOW_SECONDS, DEFAULT_POLLERS

DEFAULT_OUT = PROJECT_ROOT / "bench" / "results"
DEFAULT_PARTS = (1, 2, 3, 5, 6, 7)
BOOK_QUEUE_NAME = "bench-book-declines"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory (default bench/results)")
    p.add_argument("--smoke", action="store_true", help="one tiny iteration of each part (for the tests)")
    p.add_argument(
        "--parts",
        type=_ints,
        default=DEFAULT_PARTS,
        help="which parts to run, e.g. 1,6 (default 1,2,3,5,6,7; the knee, 4, takes ~6 minutes more)",
    )
    p.add_argument("--estimate", action="store_true", help="say how long the run would take on this machine, and stop")
    p.add_argument(
        "--history",
        type=Path,
        default=None,
        help="append the run's summary to this JSON-lines file (default OUT/history.jsonl; smoke runs never)",
    )
    p.add_argument("--keep-workdir", action="store_true", help="keep the stack's log, Locust's plans and logs")
    p.add_argument(
        "--pollers",
        type=int,
        default=DEFAULT_POLLERS,
        help=f"the local stack's queue pollers (default {DEFAULT_POLLERS}, as in make local)",
    )
    p.add_argument(
        "--batching-window",
        type=float,
        default=DEFAULT_BATCHING_WINDOW_SECONDS,
        help=f"the pollers' batching window in seconds (default {DEFAULT_BATCHING_WINDOW_SECONDS:g}, as in make local)",
    )
    p.add_argument(
        "--profile", action="store_true", help="py-spy profiles of the stack's Python processes during part 2"
    )
    g = p.add_argument_group("1. booking latency vs applications per job")
    g.add_argument(
        "--sizes", type=_ints, default=(1, 5, 10, 100, 1000), help="applications per job (default 1,5,10,100,1000)"
    )
    g.add_argument("--bookings", type=int, default=30, help="bookings per size and implementation (default 30)")
    g.add_argument("--bookings-large", type=int, default=5, help="the same for sizes >= 1000 (default 5)")
    g.add_argument(
        "--model-bookings-large",
        type=int,
        default=20,
        help="on the latency model, ours at sizes >= 1000 (default 20; the baseline is drawn there)",
    )
    g.add_argument(
        "--model-concurrency",
        type=_ints,
        default=(),
        help="with the latency model, ours also at these ENQUEUE_CONCURRENCY values, e.g. 4,20 (default none; "
        "each is one more pass of every size)",
    )
    g = p.add_argument_group("2. the original load profile over HTTP")
    g.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    g.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    g.add_argument("--apps-per-job", type=int, default=5, help="applications per booked job (default 5)")
    g.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="consecutive runs, each on a fresh stack (default 3; the first is charted)",
    )
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
        default=(25, 50, 75, 100, 125, 150, 200),
        help="req/s steps (default 25,50,75,100,125,150,200)",
    )
    g.add_argument("--knee-step", type=float, default=30.0, help="seconds per step (default 30)")
    g.add_argument("--knee-p99-ms", type=float, default=250.0, help="p99 limit in ms (default 250)")
    g.add_argument(
        "--knee-drain-s", type=float, default=5.0, help="drain limit after the last answer, in s (default 5)"
    )
    g.add_argument(
        "--knee-backlog-s",
        type=float,
        default=2.0,
        help="declines PENDING when the load ends, at most this many seconds of arrivals (default 2)",
    )
    g = p.add_argument_group("5. cold start")
    g.add_argument("--cold-runs", type=int, default=5, help="fresh interpreters per function (default 5)")
    g.add_argument("--cold-stage", default="dev", help="the stage packaged for it (default dev)")
    g = p.add_argument_group("7. the article's Express workflow beside our API, on the emulator")
    g.add_argument(
        "--express-bookings", type=int, default=20, help="bookings through each, 5 applications a job (default 20)"
    )
    g = p.add_argument_group("6. the cost of a booking")
    g.add_argument("--cost-sizes", type=_ints, default=(5, 100, 1000), help="applications per job (default 5,100,1000)")
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes, args.bookings, args.bookings_large, args.model_bookings_large = (1, 10), 2, 1, 1
        args.cost_sizes = (5,)
        args.express_bookings = 2
        args.model_concurrency = ()
        args.rate, args.duration, args.apps_per_job, args.repeat = 10.0, 2.0, 3, 1
        args.backlog, args.worker_concurrency, args.sqs_backlog = 40, (1,), 20
        args.knee_rates, args.knee_step = (10.0, 20.0), 1.0
        args.cold_runs = 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # A SIGTERM unwinds like Ctrl-C, so the stack is stopped on the way out.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    prepare_environment()  # before chalicelib is imported anywhere
    from bench import report

    if args.estimate:
        from bench import plan, yardstick

        wall = yardstick.cpu_ms(clock=time.perf_counter)
        estimate = plan.Progress(plan.estimate_seconds(args, wall), say)
        say(f"CPU yardstick {wall:.1f} ms in wall time (the estimates' reference: {plan.REFERENCE_YARDSTICK_MS} ms)")
        estimate.announce()
        return 0
    started = time.monotonic()
    results: dict[str, Any] = {
        "started_at": report.now_utc(),
        "argv": list(sys.argv[1:] if argv is None else argv),
        "smoke": args.smoke,
        "machine": report.machine(),
        "commit": report.head_commit(),  # the code measured, before anyone commits during the run
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
    try:
        from bench import aws_analysis

        results["aws"] = aws_analysis.analyse(results)
    except Exception as exc:
        failed = True
        results["error"] = (results.get("error") or "") + "".join(traceback.format_exception(exc))
        say(f"the analysis on AWS's terms failed:\n{results['error']}")
    results["elapsed_seconds"] = time.monotonic() - started
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = report.evaluate_targets(results)
    results["summary"] = report.summary(results)
    paths = report.write_all(results, args.out)
    if not args.smoke and not failed:
        history = args.history or args.out / "history.jsonl"
        report.append_history(results["summary"], history)
        say(f"summary appended to {history}")
    print(paths["md"].read_text(encoding="utf-8"))
    say("results: " + ", ".join(str(p) for p in paths.values() if p.exists()))
    if args.keep_workdir or failed:
        say(f"work files kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    runs = [*(results.get("http_load_runs") or []), *(results.get("knee") or {}).get("steps", [])]
    broken = [r["label"] for r in runs if r and not r["invariants"]["ok"]]
    if broken:
        say(f"invariants violated in: {', '.join(broken)}")
    return 1 if failed or broken else 0


def _run_parts(args: argparse.Namespace, results: dict[str, Any], workdir: Path) -> None:
    """Each part (and each knee step) on a stack of its own: none inherits another's data or backlog."""

    @contextlib.contextmanager
    def fresh_stack(name: str) -> Iterator[Stack]:
        stack = start_stack(workdir / f"stack-{name}", pollers=args.pollers, batching_window=args.batching_window)
        say(f"  {name}: local stack up, API {stack.api_url}")
        try:
            yield stack
        except BaseException:
            say(f"the {name} stack's log ends with:\n{stack.log_tail()}")
            raise
        finally:
            stack.stop()

    say("yardstick: a CPU-bound loop and one emulator round trip")
    with fresh_stack("yardstick") as stack:
        from bench import yardstick

        results["yardstick"] = yardstick.measure(stack.client("dynamodb"), stack.table)
        say(
            f"  yardstick: CPU loop {results['yardstick']['cpu_ms']:.1f} ms "
            f"({results['yardstick']['cpu_wall_ms']:.1f} in wall time), "
            f"emulator round trip {results['yardstick']['emulator_ms']:.2f} ms"
        )
    from bench import plan

    progress = plan.Progress(plan.estimate_seconds(args, results["yardstick"]["cpu_wall_ms"]), say)
    progress.announce()
    results["estimated_seconds"] = {k: round(v) for k, v in progress.estimates.items()}
    results["part_seconds"] = progress.seconds  # filled in as the parts end

    @contextlib.contextmanager
    def part(name: str) -> Iterator[None]:
        progress.start(name)
        try:
            yield
        finally:
            progress.end(name)

    if 1 in args.parts:
        with part("1"):
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
                    model_bookings_at_1000=args.model_bookings_large,
                )
                results["book_latency"] = book_latency.run(stack, book_queue, plan, say)
                say("part 1, on the AWS latency model (bench/latency_model.py)")
                results["book_latency_model"] = book_latency.run_model(
                    stack, book_queue, plan, say, other_concurrencies=args.model_concurrency
                )
    if 2 in args.parts:
        with part("2"):
            say(f"part 2: {args.rate:g} req/s for {args.duration:g} s over HTTP")
            from bench import http_load

            profile_dir = str(args.out / "profiles") if args.profile else None
            spec = http_load.LoadSpec(
                args.rate, args.duration, args.apps_per_job, args.timeout, args.drain_timeout, profile_dir=profile_dir
            )
            runs = []
            for i in range(max(1, args.repeat)):
                label = "load" if i == 0 else f"load-{i + 1}"
                with fresh_stack(f"part2-{i + 1}") as stack:
                    run = http_load.run_constant_rate(stack, spec, workdir / "load", label, say)
                run["criteria"] = http_load.criteria(run, args.knee_p99_ms, args.knee_drain_s, args.knee_backlog_s)
                runs.append(run)
                spec = http_load.LoadSpec(**{**spec.__dict__, "profile_dir": None})  # profile the first run only
            results["http_load"] = runs[0]
            results["http_load_runs"] = [{k: v for k, v in r.items() if k not in ("raw", "profile")} for r in runs]
    if 3 in args.parts:
        with part("3"):
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
        with part("4"):
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
                drain_limit_seconds=args.knee_drain_s,
                backlog_limit_seconds=args.knee_backlog_s,
            )
    if 5 in args.parts:
        with part("5"):
            say(f"part 5: cold start, the {args.cold_stage} package, {args.cold_runs} interpreter(s) per function")
            from bench import cold_start

            package_dir = workdir / f"package-{args.cold_stage}"
            t0 = time.monotonic()
            build = subprocess.run(  # noqa: S603 - our own packaging command
                [
                    sys.executable,
                    "-m",
                    "tools.deploy",
                    "package",
                    "--stage",
                    args.cold_stage,
                    "--out",
                    str(package_dir),
                ],
                cwd=PROJECT_ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            if build.returncode != 0:
                raise RuntimeError(f"packaging failed:\n{build.stdout[-3000:]}{build.stderr[-3000:]}")
            say(f"  package built in {time.monotonic() - t0:.0f} s")
            cold = cold_start.measure(package_dir / "deployment.zip", package_dir / "sam.json", runs=args.cold_runs)
            cold["stage"] = args.cold_stage
            results["cold_start"] = cold
            say(
                f"  import boto3 {cold['boto3_import_ms']:.0f} ms; "
                + ", ".join(
                    f"{f['label']} {f['first_answer_ms']:.0f} ms (x{f['x_boto3']:.1f})"
                    for f in cold["functions"].values()
                )
            )

    if 6 in args.parts:
        with part("6"):
            say(f"part 6: the cost of a booking, N={', '.join(map(str, args.cost_sizes))}")
            with fresh_stack("part6") as stack:
                queue = stack.client("sqs").create_queue(QueueName=BOOK_QUEUE_NAME)["QueueUrl"]
                point_at(stack, DECLINES_QUEUE_URL=queue)
                from bench import booking_cost

                results["booking_cost"] = booking_cost.measure(stack, say, args.cost_sizes)

    if 7 in args.parts:
        with part("7"):
            say(f"part 7: the article's Express workflow beside our API, {args.express_bookings} bookings each")
            from bench import express_workflow

            results["express_workflow"] = express_workflow.run(workdir / "express", say, args.express_bookings)


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def say(message: str) -> None:
    with contextlib.suppress(OSError):
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
