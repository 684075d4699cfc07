"""The results as files: raw JSON, a Markdown summary and the latency chart."""

from __future__ import annotations

import json
import math
import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.stats import fmt_ms

# Published by the original design's write-up for its load test (50 req/s for 60 s,
# 3000 requests each), on AWS: network round trips included. For scale, not comparable.
ORIGINAL_PUBLISHED = {
    "Lambda + SQS": {"requests": 3000, "p50_ms": 457.5, "p99_ms": 2723.0},
    "Express workflow": {"requests": 3000, "p50_ms": 343.8, "p99_ms": 928.8},
}
# Frames worth showing from a profile: the emulator's SQS model, our code, boto3's calls.
_PROFILE_KEYS = ("(ministack/services/sqs.py)", "(chalicelib/", "(app.py)", "_make_api_call (botocore/client.py)")
TARGETS = {
    "ratio_at_100": 8.0,
    "p99_ms_at_50_rps": 100.0,
    "drain_seconds": 5.0,
    "worker_to_raw": 0.7,
}


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        meminfo = Path("/proc/meminfo").read_text()
        kb = int(next(line for line in meminfo.splitlines() if line.startswith("MemTotal")).split()[1])
        info["ram_gib"] = round(kb / 1024 / 1024, 1)
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line), "")
    except (OSError, StopIteration, ValueError):
        pass
    versions = {}
    for dist in ("chalice", "boto3", "moto", "aws-lambda-powertools", "locust"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    versions["ministack"] = _ministack_version()
    info["versions"] = versions
    return info


def _ministack_version() -> str | None:
    """As pinned for its own virtualenv (it is not installed in this one)."""
    from tools.ministack import REQUIREMENTS

    for line in REQUIREMENTS.read_text().splitlines():
        if line.startswith("ministack=="):
            return line.partition("==")[2].strip()
    return None


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: what was measured and whether it was met (measured, never asserted)."""
    out: list[dict[str, Any]] = []
    book = results.get("book_latency")
    if book:
        at_100 = next((s for s in book["sizes"] if s["applications"] == 100), None)
        if at_100:
            out.append(
                {
                    "target": "ours >= 8x faster than the baseline at N=100 (p50)",
                    "measured": f"x{at_100['ratio_p50']:.1f} (p95 x{at_100['ratio_p95']:.1f})",
                    "met": at_100["ratio_p50"] >= TARGETS["ratio_at_100"],
                }
            )
        calls_ok = all(s["ours"]["calls_as_expected"] for s in book["sizes"])
        base_ok = all(s["baseline"]["calls_as_expected"] for s in book["sizes"])
        out.append(
            {
                "target": "calls per booking: ours 1 transaction + query pages + ceil((N-1)/10) SendMessageBatch",
                "measured": "; ".join(
                    f"N={s['applications']}: {s['ours']['calls_total_per_booking']}" for s in book["sizes"]
                ),
                "met": calls_ok,
            }
        )
        out.append(
            {
                "target": "calls per booking: baseline 1 query + 1 transaction + (N-1) SendMessage = N+1",
                "measured": "; ".join(
                    f"N={s['applications']}: {s['baseline']['calls_total_per_booking']}" for s in book["sizes"]
                ),
                "met": base_ok,
            }
        )
    load = results.get("http_load")
    if load:
        drain, inv = load["drain"], load["invariants"]
        pending = inv.get("declines_still_pending") or 0
        out += [
            {"target": "100% success", "measured": f"{load['success_ratio']:.2%}", "met": load["success_ratio"] == 1},
            {
                "target": f"p99 <= {TARGETS['p99_ms_at_50_rps']:.0f} ms at {load['target_rate']:g} req/s",
                "measured": fmt_ms(load["latency"].get("p99")),
                "met": (load["latency"].get("p99") or math.inf) <= TARGETS["p99_ms_at_50_rps"],
            },
            {
                "target": f"decline drain <= {TARGETS['drain_seconds']:.0f} s",
                "measured": f"{drain['drain_seconds']:.2f} s" if drain.get("drained") else "not drained",
                "met": bool(drain.get("drained")) and drain["drain_seconds"] <= TARGETS["drain_seconds"],
            },
            {
                "target": "0 lost; every job exactly one ACCEPTED, the rest DECLINED",
                "measured": f"{inv['violations']} violations in {inv['jobs_checked']} jobs"
                + (f", {pending} declines still PENDING" if pending else ""),
                "met": inv["ok"] and not pending,
            },
        ]
    worker = results.get("worker_throughput")
    if worker:
        for level in worker["levels"]:
            ratio = level["ratio_worker_to_raw"] or 0.0
            out.append(
                {
                    "target": f"worker >= 0.7 x raw UpdateItem (concurrency {level['concurrency']})",
                    "measured": f"{ratio:.2f}",
                    "met": ratio >= TARGETS["worker_to_raw"],
                }
            )
    return out


def write_all(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "latest.json", "md": out_dir / "latest.md", "png": out_dir / "book-latency.png"}
    results["targets"] = evaluate_targets(results)
    _atomic_write(paths["json"], json.dumps(results, indent=1, default=str) + "\n")
    if results.get("book_latency"):
        chart(results["book_latency"], paths["png"])
    _atomic_write(paths["md"], markdown(results))
    return paths


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def chart(book: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [s["applications"] for s in book["sizes"]]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    styles = {"ours": ("#1f77b4", "this service"), "baseline": ("#d62728", "baseline (original algorithm)")}
    for impl, (color, label) in styles.items():
        p50 = [s[impl]["latency"]["p50"] for s in book["sizes"]]
        p95 = [s[impl]["latency"]["p95"] for s in book["sizes"]]
        ax.plot(sizes, p50, marker="o", color=color, label=f"{label}, p50")
        ax.plot(sizes, p95, marker="^", linestyle="--", color=color, alpha=0.7, label=f"{label}, p95")
    for s in book["sizes"]:
        ax.annotate(
            f"x{s['ratio_p50']:.1f}",
            (s["applications"], max(s["ours"]["latency"]["p95"], s["baseline"]["latency"]["p95"])),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontsize=8,
            color="#444",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(n) for n in sizes])
    ax.set_xlabel("applications per job (N)")
    ax.set_ylabel("booking latency (ms, log scale)")
    ax.set_title("POST /jobs/{id}/book, in-process, MiniStack (DynamoDB + SQS)\n(labels: baseline p50 / ours p50)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(path)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"- Date: {results['started_at']} (UTC), {results['elapsed_seconds']:.0f} s in all",
        f"- Machine: {m.get('cores')} cores ({m.get('cpu', '?')}), {m.get('ram_gib', '?')} GiB RAM, "
        f"load average {m.get('load_average')} at the start, {results.get('load_average_end')} at the end",
        f"- Python {m['python']} on {m['platform']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v),
        f"- Command: `{' '.join(['python -m bench', *results['argv']])}`"
        + (" (smoke run)" if results["smoke"] else ""),
        "- Everything on loopback: MiniStack (DynamoDB + SQS, one Python process), `chalice local` "
        "(one Python process, a thread per connection), the stack's queue pollers, the load generator, this process. "
        "Shared, noisy 2-core machine: compare numbers from one run with each other, not across runs.",
        "",
    ]
    if results.get("targets"):
        lines += ["## Targets (measured, not asserted)", "", "| target | measured | met |", "|---|---|---|"]
        for t in results["targets"]:
            lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
        lines.append("")
    lines += _md_book(results.get("book_latency"))
    lines += _md_load(results.get("http_load"))
    lines += _md_worker(results.get("worker_throughput"))
    lines += _md_knee(results.get("knee"))
    notes = [*findings(results), *results.get("notes", [])]
    if notes:
        lines += ["## What the numbers say", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


def findings(results: dict[str, Any]) -> list[str]:
    """Plain statements derived from this run's numbers (see bench/README.md for the analysis)."""
    out = []
    book = results.get("book_latency")
    if book and book.get("sqs_call_costs"):
        costs = book["sqs_call_costs"]
        single, batch = costs["SendMessage"]["p50"], costs["SendMessageBatch"]["p50"]
        four = costs["4 x SendMessageBatch at once"]["p50"]
        at_100 = next((s for s in book["sizes"] if s["applications"] == 100), None)
        text = (
            f"Part 1: on MiniStack a batch of 10 messages takes {batch / single:.1f}x one message and four "
            f"batches sent at once take {four / batch:.1f}x one batch. Against SQS a call costs about a round "
            "trip whatever it carries and calls overlap, so batching and concurrent calls save more there."
        )
        if at_100:
            smb = at_100["ours"]["mean_ms_in_calls"].get("SendMessageBatch", 0.0)
            text += (
                f" At N=100, {fmt_ms(smb)} of call time per booking went to our 10 batches "
                f"(p50 booking {fmt_ms(at_100['ours']['latency']['p50'])})."
            )
        out.append(text)
    load = results.get("http_load")
    if load:
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
        out.append(text)
    knee = results.get("knee")
    if knee and knee.get("first_rate_failed") is not None:
        failed = next(s for s in knee["steps"] if not s["held"])
        out.append(
            f"Part 4: at {knee['first_rate_failed']:g} req/s p99 was {fmt_ms(failed['latency'].get('p99'))} with "
            f"{failed['success_ratio']:.2%} success; the declines took "
            + (f"{failed['drain']['drain_seconds']:.1f} s" if failed["drain"].get("drained") else "too long")
            + " to drain."
        )
    return out


def _calls(calls: dict[str, int]) -> str:
    short = {"TransactWriteItems": "Tx", "Query": "Q", "SendMessageBatch": "SMB", "SendMessage": "SM"}
    return " + ".join(f"{v} {short.get(k, k)}" for k, v in sorted(calls.items(), key=lambda kv: kv[0]))


def _md_book(book: dict[str, Any] | None) -> list[str]:
    if not book:
        return []
    lines = [
        "## 1. Booking latency vs applications per job (in-process)",
        "",
        "`BookingService.book` (through `chalicelib.bootstrap`) and the baseline (`bench/baseline.py`: one query "
        "page, the transaction, one `SendMessage` per other application in turn), interleaved on the same "
        "emulators and clients; a fresh job per booking. Calls: Tx TransactWriteItems, Q Query, "
        "SMB SendMessageBatch, SM SendMessage.",
        "",
        "| N | bookings | ours p50 | p95 | p99 | baseline p50 | p95 | p99 | baseline/ours p50 | p95 | p99 "
        "| calls ours | calls baseline |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for s in book["sizes"]:
        o, b = s["ours"], s["baseline"]
        lines.append(
            f"| {s['applications']} | {o['bookings']}+{b['bookings']} | {fmt_ms(o['latency']['p50'])} | "
            f"{fmt_ms(o['latency']['p95'])} | {fmt_ms(o['latency']['p99'])} | {fmt_ms(b['latency']['p50'])} | "
            f"{fmt_ms(b['latency']['p95'])} | {fmt_ms(b['latency']['p99'])} | x{s['ratio_p50']:.1f} | "
            f"x{s['ratio_p95']:.1f} | x{s['ratio_p99']:.1f} | {_calls(o['calls_per_booking'])} "
            f"({o['calls_total_per_booking']}){'' if o['calls_as_expected'] else ' UNEXPECTED'} | "
            f"{_calls(b['calls_per_booking'])} ({b['calls_total_per_booking']})"
            f"{'' if b['calls_as_expected'] else ' UNEXPECTED'} |"
        )
    lines += [
        "",
        "Mean time inside each AWS call per booking (concurrent batches add up):",
        "",
        "| N | ours | baseline |",
        "|---:|---|---|",
    ]
    for s in book["sizes"]:
        cells = []
        for impl in ("ours", "baseline"):
            cells.append(", ".join(f"{op} {fmt_ms(ms)}" for op, ms in s[impl]["mean_ms_in_calls"].items()))
        lines.append(f"| {s['applications']} | {cells[0]} | {cells[1]} |")
    costs = book.get("sqs_call_costs")
    if costs:
        single, batch = costs["SendMessage"]["p50"], costs["SendMessageBatch"]["p50"]
        four = costs["4 x SendMessageBatch at once"]["p50"]
        lines += [
            "",
            f"The SQS emulator on a near-empty queue: one `SendMessage` p50 {fmt_ms(single)}, one "
            f"`SendMessageBatch` of 10 p50 {fmt_ms(batch)} ({batch / single:.1f}x), four batches sent at once "
            f"p50 {fmt_ms(four)} ({four / batch:.1f}x one batch).",
        ]
    lines += ["", "![booking latency vs N](book-latency.png)", ""]
    return lines


def _md_load(load: dict[str, Any] | None) -> list[str]:
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
        "For scale only, the original write-up's numbers on AWS (3000 requests at 50 req/s, API Gateway and "
        "network included): "
        + "; ".join(f"{k} p50 {fmt_ms(v['p50_ms'])}, p99 {fmt_ms(v['p99_ms'])}" for k, v in ORIGINAL_PUBLISHED.items())
        + ".",
        "",
    ]
    return lines


def _md_worker(worker: dict[str, Any] | None) -> list[str]:
    if not worker:
        return []
    lines = [
        "## 3. Decline worker throughput",
        "",
        "A backlog queued first with the service's publisher, then drained by `app.decline_worker` fed by "
        "`tools.local_worker.QueuePoller` (one thread per unit of concurrency); raw = the decline's conditional "
        "`UpdateItem` sent directly with the same client and threads, half before and half after the worker.",
        "",
        "| queue | concurrency | messages | worker declines/s | raw UpdateItem/s (before / after) | worker/raw |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for level in worker["levels"]:
        w, r = level["worker"], level["raw_update_item"]
        lines.append(
            f"| in memory | {level['concurrency']} | {w['messages']} | {w['per_second']:.0f} | "
            f"{r['per_second']:.0f} ({r['before_per_second']:.0f} / {r['after_per_second']:.0f}) | "
            f"{level['ratio_worker_to_raw']:.2f} |"
        )
    for m in worker.get("sqs", []):
        w = m["worker"]
        lines.append(f"| MiniStack SQS | {m['concurrency']} | {w['messages']} | {w['per_second']:.0f} | | |")
    lines += [""]
    return lines


def _md_knee(knee: dict[str, Any] | None) -> list[str]:
    if not knee:
        return []
    lines = [
        "## 4. Knee: the rate stepped up",
        "",
        f"Steps of {knee['step_seconds']:g} s, open loop, until p99 > {knee['p99_limit_ms']:g} ms or any request "
        "fails; the declines drain between steps.",
        "",
        "| rate | requests | achieved | throughput | success | p50 | p99 | max | drain | invariants | held |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for s in knee["steps"]:
        d = s["drain"]
        drain = f"{d['drain_seconds']:.2f} s" if d.get("drained") else "no"
        lines.append(
            f"| {s['spec']['rate']:g}/s | {s['requests']} | {s['rate']:.1f}/s | {s['throughput']:.1f}/s | "
            f"{s['success_ratio']:.2%} | {fmt_ms(s['latency'].get('p50'))} | {fmt_ms(s['latency'].get('p99'))} | "
            f"{fmt_ms(s['latency'].get('max'))} | {drain} | "
            f"{'ok' if s['invariants']['ok'] else 'VIOLATED'} | {'yes' if s['held'] else '**no**'} |"
        )
    held = knee["highest_rate_held"]
    lines += ["", f"Highest rate that held: **{f'{held:g} req/s' if held else 'none'}**.", ""]
    return lines


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
