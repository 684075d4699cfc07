"""Part 2: the original load profile over HTTP (Locust, open loop, against ``chalice local``), the
declines' drain, the invariants and the CPU per booking, ``--repeat`` times on fresh stacks.
The measuring is ``bench/http_load.py``."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from bench import charts
from bench.aws_model import ORIGINAL_PUBLISHED
from bench.parts.base import Part, Results, RunContext, Target, round_or_none, section
from bench.plan import STACK_START_S
from bench.stats import fmt_ms, percentile

P99_MS = 250.0  # at the profile's rate (50 req/s by default)
DRAIN_SECONDS = 5.0  # the declines drained after the last answer
BACKLOG_SECONDS = 2.0  # declines PENDING when the load ends, in seconds of arrivals
CPU_MS_PER_BOOKING = 20.0  # every process of the stack, the load generator apart
CPU_YARDSTICKS = 1.5  # the whole stack's CPU per booking, in CPU yardsticks
OWN_CPU_YARDSTICKS = 0.7  # our processes' alone (API and pollers)
EMULATOR_PROCESS = "MiniStack"
# Frames worth showing from a profile: the emulator's SQS model, our code, boto3's calls.
_PROFILE_KEYS = ("(ministack/services/sqs.py)", "(chalicelib/", "(app.py)", "_make_api_call (botocore/client.py)")


class LoadProfile(Part):
    number = 2
    name = "load_profile"
    title = "the original load profile over HTTP"
    chart_files = ("load-latency.png",)

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        # --rate's neighbours --apps-per-job, --timeout and --drain-timeout serve the knee (part 4) too.
        group.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
        group.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
        group.add_argument("--apps-per-job", type=int, default=5, help="applications per booked job (default 5)")
        group.add_argument(
            "--repeat",
            type=int,
            default=3,
            help="consecutive runs, each on a fresh stack (default 3; the first is charted)",
        )
        group.add_argument("--timeout", type=float, default=10.0, help="request timeout in seconds (default 10)")
        group.add_argument(
            "--drain-timeout", type=float, default=60.0, help="seconds to wait for the declines (default 60)"
        )
        group.add_argument(
            "--profile", action="store_true", help="py-spy profiles of the stack's Python processes during part 2"
        )

    def smoke(self, args: argparse.Namespace) -> None:
        args.rate, args.duration, args.apps_per_job, args.repeat = 10.0, 2.0, 3, 1

    def estimate(self, args: argparse.Namespace) -> tuple[float, float]:
        runs = max(1, args.repeat)
        return runs * (STACK_START_S + args.duration + 10.0), runs * args.rate * args.duration * 0.0035

    def run(self, args: argparse.Namespace, context: RunContext) -> Results:
        """The criteria of each run are the knee's (part 4's options), so both parts judge alike."""
        from bench import http_load  # imports chalicelib: only once the environment is prepared

        context.say(f"part 2: {args.rate:g} req/s for {args.duration:g} s over HTTP")
        profile_dir = str(context.out / "profiles") if args.profile else None
        spec = http_load.LoadSpec(
            args.rate, args.duration, args.apps_per_job, args.timeout, args.drain_timeout, profile_dir=profile_dir
        )
        runs = []
        for i in range(max(1, args.repeat)):
            label = "load" if i == 0 else f"load-{i + 1}"
            with context.fresh_stack(f"part2-{i + 1}") as stack:
                run = http_load.run_constant_rate(stack, spec, context.workdir / "load", label, context.say)
            run["criteria"] = http_load.criteria(run, args.knee_p99_ms, args.knee_drain_s, args.knee_backlog_s)
            runs.append(run)
            spec = http_load.LoadSpec(**{**spec.__dict__, "profile_dir": None})  # profile the first run only
        return {
            "http_load": runs[0],
            "http_load_runs": [{k: v for k, v in r.items() if k not in ("raw", "profile")} for r in runs],
        }

    def targets(self, results: Results) -> list[Target]:
        load = results.get("http_load")
        if not load:
            return []
        drain, inv = load["drain"], load["invariants"]
        pending = inv.get("declines_still_pending") or 0
        arrivals = load["target_rate"] * max(0, load["spec"]["apps_per_job"] - 1)
        out: list[Target] = [
            {"target": "100% success", "measured": f"{load['success_ratio']:.2%}", "met": load["success_ratio"] == 1},
            {
                "target": f"p99 <= {P99_MS:.0f} ms at {load['target_rate']:g} req/s",
                "measured": fmt_ms(load["latency"].get("p99")),
                "met": (load["latency"].get("p99") or math.inf) <= P99_MS,
            },
            {
                "target": f"decline drain <= {DRAIN_SECONDS:.0f} s",
                "measured": f"{drain['drain_seconds']:.2f} s" if drain.get("drained") else "not drained",
                "met": bool(drain.get("drained")) and drain["drain_seconds"] <= DRAIN_SECONDS,
            },
            {
                "target": f"declines keep pace: PENDING at load end <= {BACKLOG_SECONDS:g} s of arrivals "
                f"({arrivals * BACKLOG_SECONDS:.0f})",
                "measured": str(drain.get("pending_when_load_ended")),
                "met": (drain.get("pending_when_load_ended") or 0) <= arrivals * BACKLOG_SECONDS,
            },
            {
                "target": "0 lost; every job exactly one ACCEPTED, the rest DECLINED; queues empty after",
                "measured": f"{inv['violations']} violations in {inv['jobs_checked']} jobs"
                + (f", {pending} declines still PENDING" if pending else "")
                + f"; queues {load['queues_after']}",
                "met": inv["ok"] and not pending and all(v == 0 for v in load["queues_after"].values()),
            },
        ]
        runs = results.get("http_load_runs") or []
        if len(runs) > 1:
            held = [all(r["criteria"].values()) for r in runs]
            out.append(
                {
                    "target": f"the load profile's criteria held in {len(runs)} of {len(runs)} consecutive runs",
                    "measured": f"{sum(held)} of {len(runs)}"
                    + "".join(
                        f"; run {i + 1}: " + ", ".join(k for k, v in r["criteria"].items() if not v)
                        for i, r in enumerate(runs)
                        if not all(r["criteria"].values())
                    ),
                    "met": all(held),
                }
            )
        per = (load.get("cpu") or {}).get("per_booking")
        if per:
            out.append(
                {
                    "target": f"CPU per booking, every process of the stack <= {CPU_MS_PER_BOOKING:g} ms",
                    "measured": f"{per['total_ms']:.1f} ms ("
                    + ", ".join(f"{k.split(' (')[0]} {v:.1f}" for k, v in per["processes"].items())
                    + ")",
                    "met": per["total_ms"] <= CPU_MS_PER_BOOKING,
                }
            )
        whole, own = cpu_yardsticks(load, (results.get("yardstick") or {}).get("cpu_ms"))
        if whole is not None and own is not None:
            out.append(
                {
                    "target": f"CPU per booking in the load profile: the stack <= {CPU_YARDSTICKS:g} "
                    f"yardsticks, our processes <= {OWN_CPU_YARDSTICKS:g}",
                    "measured": f"{whole:.2f} and {own:.2f} yardsticks",
                    "met": whole <= CPU_YARDSTICKS and own <= OWN_CPU_YARDSTICKS,
                }
            )
        return out

    def summary(self, results: Results) -> Results:
        out: Results = {}
        yard = results.get("yardstick") or {}
        cpu_unit, call_unit = yard.get("cpu_ms"), yard.get("emulator_ms")
        load = results.get("http_load")
        if load:
            per = (load.get("cpu") or {}).get("per_booking") or {}
            out["load"] = {
                "rate": load["target_rate"],
                "duration": load["spec"]["duration"],
                "success": load["success_ratio"],
                "p50_ms": round_or_none(load["latency"].get("p50")),
                "p99_ms": round_or_none(load["latency"].get("p99")),
                "drain_s": round_or_none(load["drain"].get("drain_seconds"), 2),
                "pending_at_load_end": load["drain"].get("pending_when_load_ended"),
                "invariants": load["invariants"]["ok"],
                "cpu_ms_per_booking": round_or_none(per.get("total_ms")),
                "cpu_ms_per_booking_by_process": {k: round_or_none(v) for k, v in (per.get("processes") or {}).items()},
            }
            if cpu_unit:
                out["load"]["cpu_per_booking_in_cpu_yardsticks"] = round_or_none(
                    (per.get("total_ms") or 0) / cpu_unit, 3
                )
            if call_unit:
                out["load"]["p99_in_emulator_yardsticks"] = round_or_none((load["latency"].get("p99") or 0) / call_unit)
        runs = results.get("http_load_runs") or []
        if runs:
            out["load_runs"] = [
                {
                    "success": r["success_ratio"],
                    "p50_ms": round_or_none(r["latency"].get("p50")),
                    "p99_ms": round_or_none(r["latency"].get("p99")),
                    "drain_s": round_or_none(r["drain"].get("drain_seconds"), 2),
                    "pending_at_load_end": r["drain"].get("pending_when_load_ended"),
                    "cpu_ms_per_booking": round_or_none(
                        ((r.get("cpu") or {}).get("per_booking") or {}).get("total_ms")
                    ),
                    "held": all(r["criteria"].values()),
                }
                for r in runs
            ]
        whole, own = cpu_yardsticks(load, cpu_unit)
        if whole is not None:
            out["cpu_per_booking_yardsticks"] = round_or_none(whole, 3)
            out["own_cpu_per_booking_yardsticks"] = round_or_none(own, 3)
        return out

    def markdown(self, results: Results) -> str:
        return section(_md_load(results.get("http_load")) + _md_runs(results.get("http_load_runs")))

    def findings(self, results: Results) -> list[str]:
        load = results.get("http_load")
        if not load:
            return []
        drain = load["drain"]
        arriving = load["target_rate"] * (load["spec"]["apps_per_job"] - 1)
        text = (
            f"Part 2: {arriving:.0f} declines/s arrive at {load['target_rate']:g} req/s; "
            f"{drain.get('pending_when_load_ended')} of {drain.get('declines')} were still PENDING when the load ended."
        )
        worker = results.get("worker_throughput") or {}
        if worker.get("sqs"):
            text += (
                f" The worker drained a {worker['sqs'][0]['worker']['messages']}-message backlog through MiniStack's "
                f"SQS at {worker['sqs'][0]['worker']['per_second']:.0f}/s (part 3)"
            )
            if worker.get("levels"):
                text += f", against {worker['levels'][0]['worker']['per_second']:.0f}/s from a queue in memory"
            text += "."
        procs = (load.get("cpu") or {}).get("processes") or {}
        busiest = max(((n, p.get("cores", 0)) for n, p in procs.items()), key=lambda x: x[1], default=None)
        if busiest:
            text += f" Busiest process: {busiest[0]} at {busiest[1]:.2f} cores."
        return [text]

    def chart(self, results: Results, out_dir: Path) -> None:
        """The first run: every request's latency against its send time, the p99 per second, and the drain."""
        load = results.get("http_load")
        if not load:
            return
        raw = [r for r in load.get("raw", []) if r.get("sent_s") is not None and r.get("ms") is not None]
        if not raw:
            return
        plt = charts.pyplot()
        fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
        ok = [r for r in raw if r["status"] == 200]
        bad = [r for r in raw if r["status"] != 200]
        ax.scatter([r["sent_s"] for r in ok], [r["ms"] for r in ok], s=3, alpha=0.4, color="#1f77b4", label="200")
        if bad:
            ax.scatter([r["sent_s"] for r in bad], [r["ms"] for r in bad], s=8, color="#d62728", label="failed")
        by_second: dict[int, list[float]] = {}
        for r in raw:
            by_second.setdefault(int(r["sent_s"]), []).append(r["ms"])
        seconds = sorted(by_second)
        ax.plot(
            [x + 0.5 for x in seconds],
            [percentile(by_second[x], 99) for x in seconds],
            color="#ff7f0e",
            label="p99 per second",
        )
        end = max(r["sent_s"] + r["ms"] / 1000 for r in raw)
        drain = load["drain"].get("drain_seconds")
        if drain is not None:
            ax.axvspan(end, end + drain, color="#2ca02c", alpha=0.2, label=f"decline drain {drain:.2f} s")
        ax.axhline(P99_MS, color="#888", linestyle=":", label="p99 target")
        ax.set_yscale("log")
        ax.set_xlabel("seconds since the first request")
        ax.set_ylabel("latency (ms, log scale)")
        ax.set_title(
            f"part 2: {load['target_rate']:g} req/s for {load['spec']['duration']:g} s, "
            f"{load['spec']['apps_per_job']} applications per job (chalice local, MiniStack)"
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        charts.save(fig, out_dir / self.chart_files[0])

    def invariants_violated(self, results: Results) -> list[str]:
        return [r["label"] for r in results.get("http_load_runs") or [] if r and not r["invariants"]["ok"]]


PART = LoadProfile()


def cpu_yardsticks(load: Results | None, cpu_unit: float | None) -> tuple[float | None, float | None]:
    """CPU per booking in the load profile over the run's CPU yardstick: every process, and ours alone
    (the API and the pollers: the emulator stands for AWS, which does not run on our CPU)."""
    per = ((load or {}).get("cpu") or {}).get("per_booking") or {}
    if not per or not cpu_unit:
        return None, None
    own = sum(v for k, v in (per.get("processes") or {}).items() if not k.startswith(EMULATOR_PROCESS))
    return per["total_ms"] / cpu_unit, own / cpu_unit


def _md_load(load: Results | None) -> list[str]:
    if not load:
        return []
    lat = load["latency"]
    spec = load["spec"]
    drain = load["drain"]
    inv = load["invariants"]
    lines = [
        "## 2. The original load profile over HTTP",
        "",
        f"Open loop, {spec['rate']:g} req/s for {spec['duration']:g} s (Locust, `bench/locustfile.py`), each request "
        f"booking a fresh job with {spec['apps_per_job']} applications, against `chalice local`; the stack's pollers "
        "apply the declines meanwhile.",
        "",
        "| requests | rate | throughput | success | min | mean | p50 | p90 | p95 | p99 | max |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {load['requests']} | {load['rate']:.2f}/s | {load['throughput']:.2f}/s | {load['success_ratio']:.2%} | "
        f"{fmt_ms(lat.get('min'))} | {fmt_ms(lat.get('mean'))} | {fmt_ms(lat.get('p50'))} | {fmt_ms(lat.get('p90'))} | "
        f"{fmt_ms(lat.get('p95'))} | {fmt_ms(lat.get('p99'))} | {fmt_ms(lat.get('max'))} |",
        "",
        f"- Status codes: {load['status_codes']}"
        + (f"; errors: {load['errors']}" if load.get("errors") else "")
        + "; load generator lateness against its schedule: "
        f"p99 {fmt_ms(load['generator_late_ms']['p99'])}, max {fmt_ms(load['generator_late_ms']['max'])}.",
    ]
    if drain.get("drained"):
        lines.append(
            f"- Decline drain: **{drain['drain_seconds']:.2f} s** from the last booking's answer until none of the "
            f"{drain['declines']} declined applications was PENDING (read from DynamoDB; resolution "
            f"{drain['resolution_seconds'] * 1000:.0f} ms; {drain['pending_when_load_ended']} were still "
            "PENDING at the first read after the load)."
        )
    else:
        lines.append(f"- Decline drain: **not drained** within the timeout ({drain.get('still_pending')} PENDING).")
    pending = inv.get("declines_still_pending")
    lines.append(
        f"- Invariants over {inv['jobs_checked']} jobs ({inv.get('jobs_booked')} booked, "
        f"{drain.get('committed_without_200', 0)} of them although their request failed): "
        f"{'all held' if inv['ok'] else 'VIOLATED'} "
        f"({inv['violations']} violations{'; e.g. ' + '; '.join(inv['examples'][:3]) if inv['examples'] else ''})"
        + (f"; {pending} declines still PENDING when checked" if pending else "")
        + f"; messages left in the queues: {load['queues_after']}."
    )
    cpu = load.get("cpu") or {}
    if cpu.get("processes"):
        lines += ["", f"CPU used during the load ({cpu['seconds']:.0f} s; 1.00 = one core busy throughout):", ""]
        lines += ["| process | CPU seconds | cores |", "|---|---:|---:|"]
        for name, used in cpu["processes"].items():
            cores = f"{used['cores']:.2f}" if "cores" in used else ""
            lines.append(f"| {name} | {used['cpu_seconds']:.1f} | {cores} |")
    per = cpu.get("per_booking")
    if per:
        lines += [
            "",
            f"CPU per booking, from the load's start until the queues were empty ({per['seconds']:.0f} s, "
            f"{per['bookings']} bookings, the declines and sweeps included; the load generator and the bench's "
            "own reads apart):",
            "",
            "| process | ms per booking |",
            "|---|---:|",
            *[f"| {name} | {ms:.1f} |" for name, ms in per["processes"].items()],
            f"| **all of the stack** | **{per['total_ms']:.1f}** |",
        ]
    for name, prof in (load.get("profile") or {}).items():
        if not prof.get("busy_samples"):
            continue
        picked = [row for row in prof["inclusive_pct"] if any(k in row[1] for k in _PROFILE_KEYS)][:6]
        lines += [
            "",
            f"py-spy, {name} ({prof['busy_samples']} busy samples; % of them inside): "
            + "; ".join(f"{pct}% `{frame}`" for pct, frame in picked),
        ]
    lines += [
        "",
        "![latency over time](load-latency.png)",
        "",
        "For scale only, the original write-up's numbers on AWS (3000 requests at 50 req/s, API Gateway and "
        "network included): "
        + "; ".join(f"{k} p50 {fmt_ms(v['p50_ms'])}, p99 {fmt_ms(v['p99_ms'])}" for k, v in ORIGINAL_PUBLISHED.items())
        + ".",
        "",
    ]
    return lines


def _md_runs(runs: list[Results] | None) -> list[str]:
    if not runs or len(runs) < 2:
        return []
    lines = [
        f"### The load profile, {len(runs)} consecutive runs",
        "",
        "Each on a fresh stack, one after the other (the first is the one detailed above).",
        "",
        "| run | success | p50 | p99 | max | drain | PENDING at load end | CPU per booking | invariants | held |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for i, r in enumerate(runs, 1):
        d = r["drain"]
        per = ((r.get("cpu") or {}).get("per_booking") or {}).get("total_ms", math.nan)
        missed = [k for k, v in r["criteria"].items() if not v]
        lines.append(
            f"| {i} | {r['success_ratio']:.2%} | {fmt_ms(r['latency'].get('p50'))} | {fmt_ms(r['latency'].get('p99'))} "
            f"| {fmt_ms(r['latency'].get('max'))} | "
            + (f"{d['drain_seconds']:.2f} s" if d.get("drained") else "no")
            + f" | {d.get('pending_when_load_ended')} | {per:.1f} ms | "
            + ("ok" if r["invariants"]["ok"] else "VIOLATED")
            + " | "
            + ("yes" if not missed else "**no** (" + ", ".join(missed) + ")")
            + " |"
        )
    lines.append("")
    return lines
