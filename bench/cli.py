"""``python -m bench``: starts a local stack, runs the benchmarks, writes bench/results/.

The parts are the registry's (``bench/parts/__init__.py``), selected with ``--parts``: 1 booking
latency vs applications per job, ours against the baseline (in-process), on the emulator and
on a model of AWS's latencies; 2 the original load profile over HTTP; 3 decline worker
throughput; 4 the knee (rate stepped up); 5 cold start of each function from the packaged zip;
6 the cost of a booking (consumed capacity, measured); 7 the article's Express workflow on the
emulator's Step Functions beside our API. A machine yardstick is timed in every run. Then the
figures are put on AWS's terms (bench/aws_analysis.py): end to end per design, cost per 1,000
bookings, the API function's memory. ``--smoke`` runs one tiny iteration of each.
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

from bench.parts import DEFAULT_NUMBERS, PARTS, selected
from bench.parts.base import RunContext, ints
from bench.stack import PROJECT_ROOT, Stack, prepare_environment, start_stack
from tools.local.stack import DEFAULT_BATCHING_WINDOW_SECONDS, DEFAULT_POLLERS

DEFAULT_OUT = PROJECT_ROOT / "bench" / "results"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.smoke:
        for part in PARTS:
            part.smoke(args)
    return args


def build_parser() -> argparse.ArgumentParser:
    """The common options, then each part's in a group of its own, in the registry's order."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory (default bench/results)")
    p.add_argument("--smoke", action="store_true", help="one tiny iteration of each part (for the tests)")
    optional = "; ".join(part.why_not_by_default for part in PARTS if not part.run_by_default)
    p.add_argument(
        "--parts",
        type=ints,
        default=DEFAULT_NUMBERS,
        help=f"which parts to run, e.g. 1,6 (default {','.join(map(str, DEFAULT_NUMBERS))}"
        + (f"; {optional})" if optional else ")"),
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
    for part in PARTS:
        part.add_arguments(p.add_argument_group(f"{part.number}. {part.title}"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # A SIGTERM unwinds like Ctrl-C, so the stack is stopped on the way out.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    prepare_environment()  # before chalicelib is imported anywhere
    from bench import report

    if args.estimate:
        from bench import plan, yardstick

        wall = yardstick.cpu_ms(clock=time.perf_counter)
        estimate = plan.Progress(plan.estimate_seconds(selected(args.parts), args, wall), say)
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
    broken = [label for part in PARTS for label in part.invariants_violated(results)]
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

    parts = selected(args.parts)
    progress = plan.Progress(plan.estimate_seconds(parts, args, results["yardstick"]["cpu_wall_ms"]), say)
    progress.announce()
    results["estimated_seconds"] = {k: round(v) for k, v in progress.estimates.items()}
    results["part_seconds"] = progress.seconds  # filled in as the parts end
    context = RunContext(workdir=workdir, out=args.out, say=say, fresh_stack=fresh_stack)
    for part in parts:
        progress.start(str(part.number))
        try:
            results |= part.run(args, context)
        finally:
            progress.end(str(part.number))


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def say(message: str) -> None:
    with contextlib.suppress(OSError):
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
