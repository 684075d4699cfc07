"""Part 4: the knee. The load profile's rate stepped up, a fresh stack per step, until a step
misses part 2's criteria; optional (it takes ~6 minutes more). The measuring is
``bench/http_load.py``."""

from __future__ import annotations

import argparse
import math

from bench.parts.base import Part, Results, RunContext, Target, floats, section
from bench.plan import STACK_START_S
from bench.stats import fmt_ms

KNEE_RPS = 100.0  # the highest rate that held


class Knee(Part):
    number = 4
    name = "knee"
    title = "knee"
    run_by_default = False
    why_not_by_default = "the knee, 4, takes ~6 minutes more"

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        # The limits are the load profile's criteria too (part 2 judges its runs by them).
        group.add_argument(
            "--knee-rates",
            type=floats,
            default=(25, 50, 75, 100, 125, 150, 200),
            help="req/s steps (default 25,50,75,100,125,150,200)",
        )
        group.add_argument("--knee-step", type=float, default=30.0, help="seconds per step (default 30)")
        group.add_argument("--knee-p99-ms", type=float, default=250.0, help="p99 limit in ms (default 250)")
        group.add_argument(
            "--knee-drain-s", type=float, default=5.0, help="drain limit after the last answer, in s (default 5)"
        )
        group.add_argument(
            "--knee-backlog-s",
            type=float,
            default=2.0,
            help="declines PENDING when the load ends, at most this many seconds of arrivals (default 2)",
        )

    def smoke(self, args: argparse.Namespace) -> None:
        args.knee_rates, args.knee_step = (10.0, 20.0), 1.0

    def estimate(self, args: argparse.Namespace) -> tuple[float, float]:
        steps = len(args.knee_rates)
        return steps * (STACK_START_S + args.knee_step + 8.0), sum(args.knee_rates) * args.knee_step * 0.0035

    def run(self, args: argparse.Namespace, context: RunContext) -> Results:
        from bench import http_load  # imports chalicelib: only once the environment is prepared

        context.say(
            f"part 4: knee, rates {', '.join(f'{r:g}' for r in args.knee_rates)} req/s, {args.knee_step:g} s each"
        )
        knee = http_load.run_knee(
            context.fresh_stack,
            args.knee_rates,
            args.knee_step,
            args.apps_per_job,
            args.knee_p99_ms,
            context.workdir / "knee",
            context.say,
            timeout_seconds=args.timeout,
            drain_timeout_seconds=args.drain_timeout,
            drain_limit_seconds=args.knee_drain_s,
            backlog_limit_seconds=args.knee_backlog_s,
        )
        return {"knee": knee}

    def targets(self, results: Results) -> list[Target]:
        knee = results.get("knee")
        if not knee:
            return []
        held = knee.get("highest_rate_held")
        return [
            {
                "target": f"knee >= {KNEE_RPS:g} req/s (steps of {knee['step_seconds']:g} s, "
                "the load profile's criteria)",
                "measured": f"{held:g} req/s" if held else "none held",
                "met": bool(held) and held >= KNEE_RPS,
            }
        ]

    def summary(self, results: Results) -> Results:
        knee = results.get("knee")
        if not knee:
            return {}
        return {"knee_rps": knee.get("highest_rate_held"), "knee_first_failed_rps": knee.get("first_rate_failed")}

    def markdown(self, results: Results) -> str:
        return section(_md_knee(results.get("knee")))

    def findings(self, results: Results) -> list[str]:
        knee = results.get("knee")
        if not (knee and knee.get("first_rate_failed") is not None):
            return []
        failed = next(s for s in knee["steps"] if not s["held"])
        return [
            f"Part 4: at {knee['first_rate_failed']:g} req/s p99 was {fmt_ms(failed['latency'].get('p99'))} with "
            f"{failed['success_ratio']:.2%} success; the declines took "
            + (f"{failed['drain']['drain_seconds']:.1f} s" if failed["drain"].get("drained") else "too long")
            + f" to drain, {failed['drain'].get('pending_when_load_ended')} PENDING when the load ended. Cores used "
            "during the load: "
            + ", ".join(
                f"{name.split(' (')[0]} {used['cores']:.2f}"
                for name, used in (failed.get("cpu") or {}).get("processes", {}).items()
                if "cores" in used
            )
            + "."
        ]

    def invariants_violated(self, results: Results) -> list[str]:
        steps = (results.get("knee") or {}).get("steps", [])
        return [s["label"] for s in steps if s and not s["invariants"]["ok"]]


PART = Knee()


def _md_knee(knee: Results | None) -> list[str]:
    if not knee:
        return []
    lines = [
        "## 4. Knee: the rate stepped up",
        "",
        f"Steps of {knee['step_seconds']:g} s, open loop, each on a fresh stack, until a step misses one of the "
        f"load profile's criteria: every request 200, p99 <= {knee['p99_limit_ms']:g} ms, the declines drained "
        f"within {knee.get('drain_limit_seconds', 5):g} s of the last answer, at most "
        f"{knee.get('backlog_limit_seconds', 2):g} s of arrivals PENDING when the load ended, every invariant.",
        "",
        "| rate | requests | achieved | throughput | success | p50 | p99 | max | drain | PENDING at end | "
        "CPU/booking | invariants | held |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for s in knee["steps"]:
        d = s["drain"]
        drain = f"{d['drain_seconds']:.2f} s" if d.get("drained") else "no"
        lines.append(
            f"| {s['spec']['rate']:g}/s | {s['requests']} | {s['rate']:.1f}/s | {s['throughput']:.1f}/s | "
            f"{s['success_ratio']:.2%} | {fmt_ms(s['latency'].get('p50'))} | {fmt_ms(s['latency'].get('p99'))} | "
            f"{fmt_ms(s['latency'].get('max'))} | {drain} | {d.get('pending_when_load_ended')} | "
            f"{((s.get('cpu') or {}).get('per_booking') or {}).get('total_ms', math.nan):.1f} ms | "
            f"{'ok' if s['invariants']['ok'] else 'VIOLATED'} | "
            + (
                "yes"
                if s["held"]
                else "**no** (" + ", ".join(k for k, v in s.get("criteria", {}).items() if not v) + ")"
            )
            + " |"
        )
    held = knee["highest_rate_held"]
    lines += ["", f"Highest rate that held: **{f'{held:g} req/s' if held else 'none'}**.", ""]
    return lines
