"""The results as files: latest.json, latest.md, each part's charts, and the history.

What is common to every run lives here (the machine, the yardstick, the targets table, the
headline summary, the history); each part's share comes from its module in ``bench/parts/``
and the analysis on AWS's terms from ``bench/aws_analysis.py``.
"""

from __future__ import annotations

import json
import math
import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import aws_analysis
from bench.parts import PARTS
from bench.parts.base import Target


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


def evaluate_targets(results: dict[str, Any]) -> list[Target]:
    """Each target: what was measured and whether it was met (measured, never asserted)."""
    out: list[Target] = []
    for part in PARTS:
        out += part.targets(results)
    return out + aws_analysis.targets(results)


def write_all(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "latest.json", "md": out_dir / "latest.md"}
    results.setdefault("targets", evaluate_targets(results))
    _atomic_write(paths["json"], json.dumps(results, indent=1, default=str) + "\n")
    for part in PARTS:
        part.chart(results, out_dir)
        paths |= {name: out_dir / name for name in part.chart_files}
    _atomic_write(paths["md"], markdown(results))
    return paths


def append_history(summary: dict[str, Any], path: Path) -> None:
    """One line per run, so that a regression shows against the runs before it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(summary, separators=(",", ":"), default=str) + "\n")


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The run's headline figures, also in yardstick units (see bench/yardstick.py)."""
    m = results["machine"]
    yard = results.get("yardstick") or {}
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
    for part in PARTS:
        out |= part.summary(results)
    if results.get("aws"):
        out |= aws_analysis.summary_keys(results["aws"])
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
    for part in PARTS:
        text = part.markdown(results)
        if text:
            lines += text.split("\n")
    if results.get("aws"):
        lines += aws_analysis.markdown(results).split("\n")
    notes = [*(n for part in PARTS for n in part.findings(results)), *results.get("notes", [])]
    if notes:
        lines += ["## What the numbers say", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


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


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
