"""Part 5: cold start of each function from the packaged zip, in fresh interpreters, next to
``import boto3``. The measuring is ``bench/cold_start.py``."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from bench import charts, cold_start
from bench.parts.base import Part, Results, RunContext, round_or_none, section
from bench.stack import PROJECT_ROOT
from bench.stats import fmt_ms


class ColdStart(Part):
    number = 5
    name = "cold_start"
    title = "cold start"
    chart_files = ("cold-start.png",)

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--cold-runs", type=int, default=5, help="fresh interpreters per function (default 5)")
        group.add_argument("--cold-stage", default="dev", help="the stage packaged for it (default dev)")

    def smoke(self, args: argparse.Namespace) -> None:
        args.cold_runs = 1

    def estimate(self, args: argparse.Namespace) -> tuple[float, float]:
        return 10.0, 30.0 + args.cold_runs * 5 * 0.6

    def run(self, args: argparse.Namespace, context: RunContext) -> Results:
        say = context.say
        say(f"part 5: cold start, the {args.cold_stage} package, {args.cold_runs} interpreter(s) per function")
        package_dir = context.workdir / f"package-{args.cold_stage}"
        t0 = time.monotonic()
        build = subprocess.run(  # noqa: S603 - our own packaging command
            [sys.executable, "-m", "tools.deploy", "package", "--stage", args.cold_stage, "--out", str(package_dir)],
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
        say(
            f"  import boto3 {cold['boto3_import_ms']:.0f} ms; "
            + ", ".join(
                f"{f['label']} {f['first_answer_ms']:.0f} ms (x{f['x_boto3']:.1f})" for f in cold["functions"].values()
            )
        )
        return {"cold_start": cold}

    def summary(self, results: Results) -> Results:
        cold = results.get("cold_start")
        if not cold:
            return {}
        return {
            "cold_start_ms": {"import boto3": round_or_none(cold["boto3_import_ms"], 0)}
            | (
                {"import boto3 and a DynamoDB client": round_or_none(cold["boto3_and_dynamodb_client_ms"], 0)}
                if "boto3_and_dynamodb_client_ms" in cold
                else {}
            )
            | {f["label"]: round_or_none(f["first_answer_ms"], 0) for f in cold["functions"].values()}
        }

    def markdown(self, results: Results) -> str:
        return section(_md_cold(results.get("cold_start")))

    def chart(self, results: Results, out_dir: Path) -> None:
        """Each function's bars next to ``import boto3``."""
        cold = results.get("cold_start")
        if not cold:
            return
        plt = charts.pyplot()
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
        ax.set_title(
            f"cold start from the packaged zip ({cold.get('stage', 'dev')}), {cold['runs']} runs, this machine"
        )
        ax.legend(fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
        fig.tight_layout()
        charts.save(fig, out_dir / self.chart_files[0])


PART = ColdStart()


def _md_cold(cold: Results | None) -> list[str]:
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
        "| function | handler | import | import + first answer | x import boto3 | x boto3 + a DynamoDB client |",
        "|---|---|---:|---:|---:|---:|",
        f"| import boto3 alone | | {fmt_ms(cold['boto3_import_ms'])} | | x1.0 | |",
    ]
    client_ms = cold.get("boto3_and_dynamodb_client_ms")
    if client_ms:
        lines.append(
            f"| import boto3, then one DynamoDB client | | {fmt_ms(cold['boto3_import_ms'])} | {fmt_ms(client_ms)} "
            f"| x{client_ms / cold['boto3_import_ms']:.1f} | x1.0 |"
        )
    for f in cold["functions"].values():
        lines.append(
            f"| {f['label']} | `{f['handler']}` | {fmt_ms(f['import_ms'])} | {fmt_ms(f['first_answer_ms'])} | "
            f"x{f['x_boto3']:.1f} | " + (f"x{f['x_boto3_client']:.1f} |" if "x_boto3_client" in f else "|")
        )
    lines += ["", "![cold start](cold-start.png)", ""]
    return lines
