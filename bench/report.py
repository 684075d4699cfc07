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
    "ratio_at_100": 8.0,  # on the emulator
    "model_ratio_at_100": 15.0,  # on the latency model
    "model_to_design_floor": 1.15,  # ours / the design's floor, end to end on the model, at every N
    "e2e_p50_ms_at_5": 70.0,  # end to end on the model, at N=5
    "e2e_p99_ms_at_5": 200.0,
    "x_article_lambda_p50": 6.0,  # against the article's published p50 (457.5 ms), at N=5
    "x_article_express_p50": 4.5,  # against the article's published p50 (343.8 ms), at N=5
    "cost_at_5_usd": 0.012,  # per 1,000 bookings at N=5
    "cost_to_express_at_5": 0.6,
    "cpu_yardsticks": 1.5,  # the whole stack's CPU per booking in the load profile
    "own_cpu_yardsticks": 0.7,  # our processes' alone (API and pollers)
    "p99_ms_at_50_rps": 250.0,
    "drain_seconds": 5.0,
    "backlog_seconds": 2.0,  # declines PENDING when the load ends, in seconds of arrivals
    "cpu_ms_per_booking": 20.0,  # every process of the stack, the load generator apart
    "knee_rps": 100.0,
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
    from tools.local.ministack import REQUIREMENTS

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
                "target": "calls per booking: ours 1 transaction + query pages + ceil(N/10) SendMessageBatch "
                "(N-1 declines and the sweep)",
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
        arrivals = load["target_rate"] * max(0, load["spec"]["apps_per_job"] - 1)
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
                "target": f"declines keep pace: PENDING at load end <= {TARGETS['backlog_seconds']:g} s of arrivals "
                f"({arrivals * TARGETS['backlog_seconds']:.0f})",
                "measured": str(drain.get("pending_when_load_ended")),
                "met": (drain.get("pending_when_load_ended") or 0) <= arrivals * TARGETS["backlog_seconds"],
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
                    "target": f"CPU per booking, every process of the stack <= {TARGETS['cpu_ms_per_booking']:g} ms",
                    "measured": f"{per['total_ms']:.1f} ms ("
                    + ", ".join(f"{k.split(' (')[0]} {v:.1f}" for k, v in per["processes"].items())
                    + ")",
                    "met": per["total_ms"] <= TARGETS["cpu_ms_per_booking"],
                }
            )
    model = results.get("book_latency_model")
    if model:
        at_100 = next((s for s in model["sizes"] if s["applications"] == 100), None)
        if at_100:
            out.append(
                {
                    "target": f"latency model: ours >= {TARGETS['model_ratio_at_100']:g}x faster than the baseline "
                    "at N=100 (p50)",
                    "measured": f"x{at_100['ratio_p50']:.1f}",
                    "met": at_100["ratio_p50"] >= TARGETS["model_ratio_at_100"],
                }
            )
    out += _aws_targets(results)
    knee = results.get("knee")
    if knee:
        held = knee.get("highest_rate_held")
        out.append(
            {
                "target": f"knee >= {TARGETS['knee_rps']:g} req/s (steps of {knee['step_seconds']:g} s, "
                "the load profile's criteria)",
                "measured": f"{held:g} req/s" if held else "none held",
                "met": bool(held) and held >= TARGETS["knee_rps"],
            }
        )
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


def _aws_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets set on AWS's terms (bench/aws_analysis.py) and in yardsticks."""
    out: list[dict[str, Any]] = []
    aws = results.get("aws") or {}
    sim = aws.get("simulated") or {}
    ours = aws.get("ours_measured") or sim.get("ours") or {}
    floor = sim.get("design_floor") or {}
    if ours.get("5"):
        at5 = ours["5"]
        p99 = at5.get("p99", at5.get("max"))
        lam, exp = ORIGINAL_PUBLISHED["Lambda + SQS"]["p50_ms"], ORIGINAL_PUBLISHED["Express workflow"]["p50_ms"]
        out += [
            {
                "target": f"end to end at N=5: p50 <= {TARGETS['e2e_p50_ms_at_5']:g} ms, "
                f"p99 <= {TARGETS['e2e_p99_ms_at_5']:g} ms",
                "measured": f"p50 {at5['p50']:.1f} ms, {'p99' if 'p99' in at5 else 'max'} {p99:.1f} ms",
                "met": at5["p50"] <= TARGETS["e2e_p50_ms_at_5"] and p99 <= TARGETS["e2e_p99_ms_at_5"],
            },
            {
                "target": f"N=5 p50 >= {TARGETS['x_article_lambda_p50']:g}x faster than the article's Lambda "
                f"({lam:g} ms) and {TARGETS['x_article_express_p50']:g}x than its Express workflow ({exp:g} ms)",
                "measured": f"x{lam / at5['p50']:.1f} and x{exp / at5['p50']:.1f} "
                f"(on the model: x{sim['seed_lambda']['5']['p50'] / at5['p50']:.1f} and "
                f"x{sim['express_workflow']['5']['p50'] / at5['p50']:.1f})",
                "met": lam / at5["p50"] >= TARGETS["x_article_lambda_p50"]
                and exp / at5["p50"] >= TARGETS["x_article_express_p50"],
            },
        ]
    if ours and floor:
        ratios = {n: v["p50"] / floor[n]["p50"] for n, v in ours.items() if n in floor}
        out.append(
            {
                "target": f"end to end: ours within {TARGETS['model_to_design_floor']:g}x the design's floor "
                "at every N (p50)",
                "measured": "; ".join(f"N={n}: {r:.2f}x" for n, r in ratios.items()),
                "met": all(r <= TARGETS["model_to_design_floor"] for r in ratios.values()),
            }
        )
    cost = aws.get("cost") or {}
    if cost.get("ours", {}).get("5") and cost.get("express_workflow", {}).get("5"):
        c, e = cost["ours"]["5"]["per_1000_usd"], cost["express_workflow"]["5"]["per_1000_usd"]
        out.append(
            {
                "target": f"cost at N=5 <= ${TARGETS['cost_at_5_usd']:g} per 1,000 bookings and "
                f"<= {TARGETS['cost_to_express_at_5']:g}x the Express workflow's (emails apart)",
                "measured": f"${c:.4f}, x{c / e:.2f} the Express workflow's (${e:.4f})",
                "met": c <= TARGETS["cost_at_5_usd"] and c / e <= TARGETS["cost_to_express_at_5"],
            }
        )
    whole, own = cpu_yardsticks(results.get("http_load"), (results.get("yardstick") or {}).get("cpu_ms"))
    if whole is not None and own is not None:
        out.append(
            {
                "target": f"CPU per booking in the load profile: the stack <= {TARGETS['cpu_yardsticks']:g} "
                f"yardsticks, our processes <= {TARGETS['own_cpu_yardsticks']:g}",
                "measured": f"{whole:.2f} and {own:.2f} yardsticks",
                "met": whole <= TARGETS["cpu_yardsticks"] and own <= TARGETS["own_cpu_yardsticks"],
            }
        )
    return out


EMULATOR_PROCESS = "MiniStack"


def cpu_yardsticks(load: dict[str, Any] | None, cpu_unit: float | None) -> tuple[float | None, float | None]:
    """CPU per booking in the load profile over the run's CPU yardstick: every process, and ours alone
    (the API and the pollers: the emulator stands for AWS, which does not run on our CPU)."""
    per = ((load or {}).get("cpu") or {}).get("per_booking") or {}
    if not per or not cpu_unit:
        return None, None
    own = sum(v for k, v in (per.get("processes") or {}).items() if not k.startswith(EMULATOR_PROCESS))
    return per["total_ms"] / cpu_unit, own / cpu_unit


def write_all(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "latest.json",
        "md": out_dir / "latest.md",
        "png": out_dir / "book-latency.png",
        "load_png": out_dir / "load-latency.png",
        "cold_png": out_dir / "cold-start.png",
    }
    results.setdefault("targets", evaluate_targets(results))
    _atomic_write(paths["json"], json.dumps(results, indent=1, default=str) + "\n")
    if results.get("book_latency"):
        chart(results["book_latency"], paths["png"], results.get("book_latency_model"))
    if results.get("http_load"):
        chart_load(results["http_load"], paths["load_png"])
    if results.get("cold_start"):
        chart_cold_start(results["cold_start"], paths["cold_png"])
    _atomic_write(paths["md"], markdown(results))
    return paths


def append_history(summary: dict[str, Any], path: Path) -> None:
    """One line per run, so that a regression shows against the runs before it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(summary, separators=(",", ":"), default=str) + "\n")


def _round(value: Any, digits: int = 1) -> Any:
    return round(value, digits) if isinstance(value, int | float) and math.isfinite(value) else None


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The run's headline figures, also in yardstick units (see bench/yardstick.py)."""
    m = results["machine"]
    yard = results.get("yardstick") or {}
    cpu_unit, call_unit = yard.get("cpu_ms"), yard.get("emulator_ms")
    out: dict[str, Any] = {
        "date": results["started_at"],
        "argv": results["argv"],
        "commit": results.get("commit") or head_commit(),
        "machine": {"cores": m.get("cores"), "cpu": m.get("cpu"), "load_average": m.get("load_average")},
        "load_average_end": results.get("load_average_end"),
        "yardstick": yard,
        "targets_met": sum(1 for t in results.get("targets", []) if t["met"]),
        "targets": len(results.get("targets", [])),
    }
    load = results.get("http_load")
    if load:
        per = (load.get("cpu") or {}).get("per_booking") or {}
        out["load"] = {
            "rate": load["target_rate"],
            "duration": load["spec"]["duration"],
            "success": load["success_ratio"],
            "p50_ms": _round(load["latency"].get("p50")),
            "p99_ms": _round(load["latency"].get("p99")),
            "drain_s": _round(load["drain"].get("drain_seconds"), 2),
            "pending_at_load_end": load["drain"].get("pending_when_load_ended"),
            "invariants": load["invariants"]["ok"],
            "cpu_ms_per_booking": _round(per.get("total_ms")),
            "cpu_ms_per_booking_by_process": {k: _round(v) for k, v in (per.get("processes") or {}).items()},
        }
        if cpu_unit:
            out["load"]["cpu_per_booking_in_cpu_yardsticks"] = _round((per.get("total_ms") or 0) / cpu_unit, 3)
        if call_unit:
            out["load"]["p99_in_emulator_yardsticks"] = _round((load["latency"].get("p99") or 0) / call_unit)
    runs = results.get("http_load_runs") or []
    if runs:
        out["load_runs"] = [
            {
                "success": r["success_ratio"],
                "p50_ms": _round(r["latency"].get("p50")),
                "p99_ms": _round(r["latency"].get("p99")),
                "drain_s": _round(r["drain"].get("drain_seconds"), 2),
                "pending_at_load_end": r["drain"].get("pending_when_load_ended"),
                "cpu_ms_per_booking": _round(((r.get("cpu") or {}).get("per_booking") or {}).get("total_ms")),
                "held": all(r["criteria"].values()),
            }
            for r in runs
        ]
    book = results.get("book_latency")
    if book:
        out["emulator_ratio_p50"] = {str(s["applications"]): _round(s["ratio_p50"]) for s in book["sizes"]}
    model = results.get("book_latency_model")
    if model:
        out["model"] = {
            "concurrency": model["configured_concurrency"],
            "sizes": {
                str(s["applications"]): {
                    "ours_p50_ms": _round(s["ours"]["latency"]["p50"]),
                    "baseline_p50_ms": _round(s["baseline"]["latency"]["p50"]) if "baseline" in s else None,
                    "design_floor_p50_ms": _round(s["design_floor"]["p50"]),
                    "ratio": _round(s.get("ratio_p50")),
                    "to_design_floor": _round(s["ours_to_design_floor_p50"], 2),
                    "client_cpu_ms": _round(s["ours"]["cpu_ms"]),
                }
                for s in model["sizes"]
            },
        }
    knee = results.get("knee")
    if knee:
        out["knee_rps"] = knee.get("highest_rate_held")
        out["knee_first_failed_rps"] = knee.get("first_rate_failed")
    worker = results.get("worker_throughput")
    if worker:
        out["worker_to_raw"] = {str(lv["concurrency"]): _round(lv["ratio_worker_to_raw"], 2) for lv in worker["levels"]}
    whole, own = cpu_yardsticks(load, cpu_unit)
    if whole is not None:
        out["cpu_per_booking_yardsticks"] = _round(whole, 3)
        out["own_cpu_per_booking_yardsticks"] = _round(own, 3)
    express = results.get("express_workflow")
    if express:
        out["emulator_express_vs_ours_p50_ms"] = {
            d: _round(express[d]["latency"].get("p50")) for d in ("ours", "express_workflow")
        } | {"invariants": all(express[d]["invariants"]["ok"] for d in ("ours", "express_workflow"))}
    if results.get("aws"):
        from bench.aws_analysis import summary_keys

        out |= summary_keys(results["aws"])
    cold = results.get("cold_start")
    if cold:
        out["cold_start_ms"] = {"import boto3": _round(cold["boto3_import_ms"], 0)} | {
            f["label"]: _round(f["first_answer_ms"], 0) for f in cold["functions"].values()
        }
    return out


def head_commit() -> str | None:
    import subprocess

    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def chart(book: dict[str, Any], path: Path, model: dict[str, Any] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if model:
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 5.5), dpi=100)
        _chart_book(ax, book)
        _chart_model(ax2, model)
    else:
        fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
        _chart_book(ax, book)
    fig.tight_layout()
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(path)


def _chart_model(ax: Any, model: dict[str, Any]) -> None:
    sizes = [s["applications"] for s in model["sizes"]]
    for impl, color, label in (("ours", "#1f77b4", "this service"), ("baseline", "#d62728", "baseline")):
        found = [s for s in model["sizes"] if impl in s]
        at = [s["applications"] for s in found]
        ax.plot(at, [s[impl]["latency"]["p50"] for s in found], marker="o", color=color, label=f"{label}, p50")
        ax.plot(
            at,
            [s[impl]["latency"]["p95"] for s in found],
            marker="^",
            linestyle="--",
            color=color,
            alpha=0.7,
            label=f"{label}, p95",
        )
    ax.plot(
        sizes,
        [s["design_floor"]["p50"] for s in model["sizes"]],
        color="#2ca02c",
        marker="s",
        label="the design's floor, p50",
    )
    for s in model["sizes"]:
        if "baseline" not in s:
            continue
        ax.annotate(
            f"x{s['ratio_p50']:.0f}, {s['ours_to_design_floor_p50']:.2f}F",
            (s["applications"], s["baseline"]["latency"]["p95"]),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontsize=8,
            color="#444",
        )
    _latency_by_size_axes(
        ax,
        sizes,
        f"the same on the AWS latency model (enqueue concurrency {model['configured_concurrency']})\n"
        "(labels: baseline/ours p50, ours/the design's floor p50)",
    )
    ax.legend(fontsize=8)


def chart_load(load: dict[str, Any], path: Path) -> None:
    """Part 2: every request's latency against its send time, the p99 per second, and the drain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    raw = [r for r in load.get("raw", []) if r.get("sent_s") is not None and r.get("ms") is not None]
    if not raw:
        return
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
    from bench.stats import percentile

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
    ax.axhline(TARGETS["p99_ms_at_50_rps"], color="#888", linestyle=":", label="p99 target")
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
    _save(fig, path)


def chart_cold_start(cold: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["import boto3", *[f["label"] for f in cold["functions"].values()]]
    imports = [cold["boto3_import_ms"], *[f["import_ms"] for f in cold["functions"].values()]]
    answers = [cold["boto3_import_ms"], *[f["first_answer_ms"] for f in cold["functions"].values()]]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], imports, width=0.4, color="#1f77b4", label="import")
    ax.bar([x + 0.2 for x in xs], answers, width=0.4, color="#ff7f0e", label="import + first answer")
    for x, v in zip(xs, answers, strict=True):
        ax.annotate(
            f"{v:.0f} ms (x{v / cold['boto3_import_ms']:.1f})", (x + 0.2, v), ha="center", va="bottom", fontsize=8
        )
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels)
    ax.set_ylabel("ms (median of fresh interpreters)")
    ax.set_title(f"cold start from the packaged zip ({cold.get('stage', 'dev')}), {cold['runs']} runs, this machine")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def _chart_book(ax: Any, book: dict[str, Any]) -> None:
    sizes = [s["applications"] for s in book["sizes"]]
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
    _latency_by_size_axes(
        ax, sizes, "POST /jobs/{id}/book, in-process, MiniStack (DynamoDB + SQS)\n(labels: baseline p50 / ours p50)"
    )
    ax.legend(fontsize=8)


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
    lines += _md_yardstick(results.get("yardstick"), results.get("http_load"))
    lines += _md_book(results.get("book_latency"))
    lines += _md_model(results.get("book_latency_model"))
    lines += _md_load(results.get("http_load"))
    lines += _md_runs(results.get("http_load_runs"))
    lines += _md_worker(results.get("worker_throughput"))
    lines += _md_knee(results.get("knee"))
    lines += _md_cold(results.get("cold_start"))
    lines += _md_express(results.get("express_workflow"))
    lines += _md_aws(results.get("aws"), results.get("booking_cost"))
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
            + f" to drain, {failed['drain'].get('pending_when_load_ended')} PENDING when the load ended. Cores used "
            "during the load: "
            + ", ".join(
                f"{name.split(' (')[0]} {used['cores']:.2f}"
                for name, used in (failed.get("cpu") or {}).get("processes", {}).items()
                if "cores" in used
            )
            + "."
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


def _md_yardstick(yard: dict[str, Any] | None, load: dict[str, Any] | None) -> list[str]:
    if not yard:
        return []
    lines = [
        "## Yardstick",
        "",
        f"This machine, this run: a fixed CPU-bound Python loop took **{yard['cpu_ms']:.1f} ms** (median), one "
        f"small DynamoDB round trip to the emulator **{yard.get('emulator_ms', math.nan):.2f} ms** (median); "
        "`bench/yardstick.py`. Divided by these, figures of runs on other days or machines compare better "
        "than the raw ones (`history.jsonl` keeps both).",
        "",
    ]
    if load:
        per = (load.get("cpu") or {}).get("per_booking") or {}
        p99 = load["latency"].get("p99")
        if per and yard.get("cpu_ms"):
            lines.append(
                f"- Part 2 CPU per booking: {per['total_ms']:.1f} ms = {per['total_ms'] / yard['cpu_ms']:.3f} CPU "
                "yardsticks."
            )
        if p99 and yard.get("emulator_ms"):
            lines.append(
                f"- Part 2 p50 / p99: {load['latency']['p50'] / yard['emulator_ms']:.1f} / "
                f"{p99 / yard['emulator_ms']:.1f} emulator round trips."
            )
        lines.append("")
    return lines


def _md_model(model: dict[str, Any] | None) -> list[str]:
    if not model:
        return []
    lines = [
        "## 1b. The same on the AWS latency model",
        "",
        "`bench/latency_model.py` attached to the same clients: each DynamoDB call is held until a latency drawn "
        "from published figures has passed (the emulator's time counts inside it), SQS sends are answered by the "
        "model after theirs. The design's floor: the transaction and the index read at once, then every batch "
        "in one round (`design_floor_ms`); a query's time grows with the items it reads. At N >= 1000 only ours "
        "is measured (the baseline is drawn in section 7). "
        f"Enqueue concurrency {model['configured_concurrency']}, client pools of {model['max_pool_connections']} "
        "connections. CPU: this process's CPU during the booking (median), "
        "which the model does not charge.",
        "",
        "| N | bookings | ours p50 | p95 | baseline p50 | p95 | floor p50 | p99 | baseline/ours | ours/floor | "
        "ours CPU | model expects ours |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in model["sizes"]:
        o, lim = s["ours"]["latency"], s["design_floor"]
        b = s["baseline"]["latency"] if "baseline" in s else {}
        ratio = f"x{s['ratio_p50']:.1f}" if "ratio_p50" in s else "-"
        lines.append(
            f"| {s['applications']} | {s['ours']['bookings']} | {fmt_ms(o['p50'])} | {fmt_ms(o['p95'])} | "
            f"{fmt_ms(b.get('p50'))} | {fmt_ms(b.get('p95'))} | {fmt_ms(lim['p50'])} | {fmt_ms(lim['p99'])} | "
            f"{ratio} | {s['ours_to_design_floor_p50']:.2f} | {fmt_ms(s['ours']['cpu_ms'])} | "
            f"{fmt_ms(s['model_expects_ours']['p50'])} |"
        )
    if model.get("by_concurrency"):
        lines += [
            "",
            "Ours at other enqueue concurrencies (p50 measured / the model's expectation / ours over the floor; "
            "client CPU):",
            "",
            "| concurrency | " + " | ".join(f"N={s['applications']}" for s in model["sizes"]) + " |",
            "|---:|" + "---|" * len(model["sizes"]),
        ]
        rows = {str(model["configured_concurrency"]): None, **model["by_concurrency"]}
        for conc in sorted(rows, key=int):
            entries = (
                rows[conc]
                if rows[conc] is not None
                else [
                    {
                        "latency": s["ours"]["latency"],
                        "model_expects": s["model_expects_ours"],
                        "design_floor": s["design_floor"],
                        "cpu_ms": s["ours"]["cpu_ms"],
                    }
                    for s in model["sizes"]
                ]
            )
            cells = [
                f"{fmt_ms(e['latency']['p50'])} / {fmt_ms(e['model_expects']['p50'])} / "
                f"{e['latency']['p50'] / e['design_floor']['p50']:.2f}; CPU {fmt_ms(e['cpu_ms'])}"
                for e in entries
            ]
            lines.append(f"| {conc} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Sources: "
        + "; ".join(
            f"{op} {v['p50_ms']:g}/{v['p99_ms']:g} ms (p50/p99)" if "p50_ms" in v else f"{op} {v['ms']:g} ms"
            for op, v in model["sources"].items()
        ),
        "",
    ]
    return lines


def _md_express(express: dict[str, Any] | None) -> list[str]:
    if not express:
        return []
    lines = [
        "## 7. The article's Express workflow beside our API, on the emulator",
        "",
        "`bench/express_workflow.py`: a synchronous EXPRESS state machine (query, the service's transaction, a Map "
        f"of one SendMessage per decline, {express['map_concurrency']} at once) on MiniStack's Step Functions, "
        "against the same table and queue as our API (`chalice local`) and its worker; "
        f"{express['bookings']} bookings each, {express['apps_per_job']} applications a job, alternated. "
        "Both answer from the emulator on this machine: compare them with each other, not with AWS.",
        "",
        "| design | p50 | p95 | p99 | max | booked | invariants |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for design in ("ours", "express_workflow"):
        e = express[design]
        lat = e["latency"]
        inv = e["invariants"]
        lines.append(
            f"| {_DESIGNS[design]} | {fmt_ms(lat.get('p50'))} | {fmt_ms(lat.get('p95'))} | {fmt_ms(lat.get('p99'))} | "
            f"{fmt_ms(lat.get('max'))} | {e['booked']} | "
            + ("held" if inv["ok"] else f"**{inv['violations']} violations**: {'; '.join(inv['examples'][:3])}")
            + " |"
        )
    lines += [
        "",
        f"A second booking of a booked job through the workflow: "
        f"{'refused (NotBooked), nothing changed' if express['second_booking_refused'] else '**not refused**'}; "
        f"queue drained: {express['queues_drained']['empty']}.",
        "",
    ]
    return lines


_DESIGNS = {
    "ours": "ours",
    "design_floor": "the design's floor",
    "any_design_floor": "any design's floor",
    "express_workflow": "article's Express workflow",
    "seed_lambda": "article's Lambda",
}


def _md_aws(aws: dict[str, Any] | None, booking: dict[str, Any] | None) -> list[str]:
    if not aws:
        return []
    sim = aws["simulated"]
    sizes = list(sim["ours"])
    lines = [
        "## 8. On AWS's terms: end to end, cost, memory",
        "",
        "`bench/aws_analysis.py`: API Gateway, the invocation, the calls and the function's CPU at "
        f"{aws['api_memory_mb']} MB (CPU per booking in yardsticks, "
        + ("measured in part 1" if aws["cpu_measured"] else "from the 2026-12-02 run: part 1 did not run")
        + "), drawn 20,000 times per cell (the article's algorithms at N >= 100: fewer, at least 200). "
        "Ours (measured): part 1's bookings on the model, this process's CPU replaced by the function's.",
        "",
        "| figure | p50 | p99 | source | date |",
        "|---|---:|---:|---|---|",
    ]
    for row in aws["calibration"]:
        p50 = fmt_ms(row["p50_ms"]) if "p50_ms" in row else str(row.get("ms", row.get("value")))
        p99 = fmt_ms(row["p99_ms"]) if "p99_ms" in row else ""
        lines.append(
            f"| {row['figure']} | {p50} | {p99} | {row['source']}{' (assumed)' if row.get('assumed') else ''} | "
            f"{row['date']} |"
        )
    lines += ["", "End to end, p50 / p99 (ms):", "", "| design | " + " | ".join(f"N={n}" for n in sizes) + " |"]
    lines.append("|---|" + "---:|" * len(sizes))
    measured = aws.get("ours_measured") or {}
    if measured:
        cells = []
        for n in sizes:
            v = measured.get(n)
            if v is None:
                cells.append("-")
            else:
                tail = f"{v['p99']:.0f}" if "p99" in v else f"max {v['max']:.0f}"
                cells.append(f"{v['p50']:.0f} / {tail} ({v['bookings']})")
        lines.append("| ours, measured (bookings) | " + " | ".join(cells) + " |")
    for design, label in _DESIGNS.items():
        per = sim[design]
        lines.append(
            f"| {label}{', drawn' if design == 'ours' else ''} | "
            + " | ".join(f"{per[n]['p50']:.0f} / {per[n]['p99']:.0f}" for n in sizes)
            + " |"
        )
    cost = aws.get("cost")
    if cost:
        ns = list(cost["ours"])
        lines += [
            "",
            f"Cost per 1,000 bookings, USD (prices of {aws['prices_read_on']}, bench/prices.json; emails apart, "
            "then with them). DynamoDB units measured (ReturnConsumedCapacity on every call of the booking, the "
            "declines and the sweep); modelled, not measured: "
            + "; ".join(f"{k}: {v}" for k, v in aws["modelled_extras"].items())
            + ".",
            "",
            "| design | " + " | ".join(f"N={n}" for n in ns) + " |",
            "|---|" + "---:|" * len(ns),
        ]
        for design in cost:
            lines.append(
                f"| {_DESIGNS[design]} | "
                + " | ".join(
                    f"{cost[design][n]['per_1000_usd']:.4f} ({cost[design][n]['per_1000_with_email_usd']:.3f})"
                    for n in ns
                )
                + " |"
            )
        at = ns[0]
        lines += ["", f"Where it goes at N={at} (USD per 1,000 bookings):", ""]
        for design in cost:
            parts = sorted(cost[design][at]["lines_per_1000_usd"].items(), key=lambda kv: -kv[1])
            lines.append(f"- {_DESIGNS[design]}: " + ", ".join(f"{k} {v:.5f}" for k, v in parts if v))
    if booking:
        lines += ["", "Measured capacity units of one booking and what follows it:", ""]
        lines += ["| N | booking WRU | RRU | declines WRU | RRU | sweep RRU | writes by table and index |"]
        lines.append("|---:|" + "---:|" * 6)
        for n, e in booking["sizes"].items():
            b, d, w = e["booking"]["units"], e["declines"]["units"], e["sweep"]["units"]
            index = {
                k.split(":", 1)[1]: b.get(k, 0) + d.get(k, 0)
                for k in {*b, *d}
                if k.startswith("write:") and k.split(":", 1)[1][0].islower() and k != "write:total"
                # operations are capitalised (write:UpdateItem); the table and its indexes are not
            }
            lines.append(
                f"| {n} | {b.get('write:total', 0):g} | {b.get('read:total', 0):g} | {d.get('write:total', 0):g} | "
                f"{d.get('read:total', 0):g} | {w.get('read:total', 0):g} | "
                + ", ".join(f"{k} {v:g}" for k, v in sorted(index.items()))
                + " |"
            )
    memory = aws.get("memory")
    if memory:
        lines += [
            "",
            "Ours at N=5 against the API function's memory (latency end to end; cost per 1,000 bookings):",
            "",
            "| memory MB | CPU ms | p50 | p99 | API function USD | all USD |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for r in memory:
            lines.append(
                f"| {r['memory_mb']} | {r['cpu_ms']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
                f"{r['api_lambda_per_1000_usd']:.5f} | {r['cost_per_1000_usd']:.5f} |"
            )
    lines.append("")
    return lines


def _md_cold(cold: dict[str, Any] | None) -> list[str]:
    if not cold:
        return []
    z = cold["zip"]
    lines = [
        "## 5. Cold start",
        "",
        f"The {cold.get('stage', 'dev')} package (`python -m tools.deploy package`; {z['files']} files, "
        f"{z['size_bytes'] / 1e6:.1f} MB, {z['pyc_files']} .pyc, botocore bundled: {z['bundles_botocore']}), "
        "unzipped; a fresh interpreter with only boto3, no bytecode written; the median of "
        f"{cold['runs']} per function (`bench/cold_start.py`). Measured on this machine's CPU, not Lambda's.",
        "",
        "| function | handler | import | import + first answer | x import boto3 |",
        "|---|---|---:|---:|---:|",
        f"| import boto3 alone | | {fmt_ms(cold['boto3_import_ms'])} | | x1.0 |",
    ]
    for f in cold["functions"].values():
        lines.append(
            f"| {f['label']} | `{f['handler']}` | {fmt_ms(f['import_ms'])} | {fmt_ms(f['first_answer_ms'])} | "
            f"x{f['x_boto3']:.1f} |"
        )
    lines += ["", "![cold start](cold-start.png)", ""]
    return lines


def _md_runs(runs: list[dict[str, Any]] | None) -> list[str]:
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


def _md_worker(worker: dict[str, Any] | None) -> list[str]:
    if not worker:
        return []
    lines = [
        "## 3. Decline worker throughput",
        "",
        "A backlog queued first with the service's publisher, then drained by `app.decline_worker` fed by "
        "`tools.local.worker.QueuePoller` (one thread per unit of concurrency); raw = the decline's conditional "
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


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _latency_by_size_axes(ax: Any, sizes: list[int], title: str) -> None:
    """Both part 1 charts: log-log, one tick per N."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(n) for n in sizes])
    ax.set_xlabel("applications per job (N)")
    ax.set_ylabel("booking latency (ms, log scale)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
