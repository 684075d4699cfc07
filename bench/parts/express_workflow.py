"""Part 7: the article's Express workflow on MiniStack's Step Functions, beside our API on the same
table and queue, bookings alternated, the same invariants checked. The measuring is
``bench/express_workflow.py``."""

from __future__ import annotations

import argparse

from bench.aws_model import DESIGN_LABELS
from bench.parts.base import Part, Results, RunContext, round_or_none, section
from bench.plan import STACK_START_S
from bench.stats import fmt_ms

DESIGNS = ("ours", "express_workflow")


class ExpressWorkflow(Part):
    number = 7
    name = "express_workflow"
    title = "the article's Express workflow beside our API, on the emulator"

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--express-bookings", type=int, default=20, help="bookings through each, 5 applications a job (default 20)"
        )
        group.add_argument(
            "--express-deployed",
            action="store_true",
            help="ours through the stage deployed on the emulated account (API Gateway, Lambda), not chalice local",
        )

    def smoke(self, args: argparse.Namespace) -> None:
        args.express_bookings = 2

    def estimate(self, args: argparse.Namespace) -> tuple[float, float]:
        deploy = 40.0 if getattr(args, "express_deployed", False) else 0.0
        return STACK_START_S + 5.0 + deploy, args.express_bookings * (1.0 if deploy else 0.4)

    def run(self, args: argparse.Namespace, context: RunContext) -> Results:
        # Imported here: they import chalicelib, only once the environment is prepared.
        if args.express_deployed:
            from bench import express_deployed as runner
        else:
            from bench import express_workflow as runner  # type: ignore[no-redef]

        where = "deployed API" if args.express_deployed else "API"
        context.say(f"part 7: the article's Express workflow beside our {where}, {args.express_bookings} bookings each")
        # It starts an emulator of its own, with Step Functions.
        return {"express_workflow": runner.run(context.workdir / "express", context.say, args.express_bookings)}

    def summary(self, results: Results) -> Results:
        express = results.get("express_workflow")
        if not express:
            return {}
        return {
            "emulator_express_vs_ours_p50_ms": {d: round_or_none(express[d]["latency"].get("p50")) for d in DESIGNS}
            | {"invariants": all(express[d]["invariants"]["ok"] for d in DESIGNS)}
        }

    def markdown(self, results: Results) -> str:
        return section(_md_express(results.get("express_workflow")))


PART = ExpressWorkflow()


def _md_express(express: Results | None) -> list[str]:
    if not express:
        return []
    ours = (
        f"our stage deployed on the emulated account (`bench/express_deployed.py`, `make deploy` in "
        f"{express['deploy_seconds']} s: API Gateway, the authorizer and the API function on MiniStack's Lambda, "
        "a user pool token) and its deployed worker"
        if express.get("deployed")
        else "our API (`chalice local`) and its worker"
    )
    lines = [
        "## 7. The article's Express workflow beside our API, on the emulator",
        "",
        "`bench/express_workflow.py`: a synchronous EXPRESS state machine (query, the service's transaction, a Map "
        f"of one SendMessage per decline, {express['map_concurrency']} at once) on MiniStack's Step Functions, "
        f"against the same table and queue as {ours}; "
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
            f"| {DESIGN_LABELS[design]} | {fmt_ms(lat.get('p50'))} | {fmt_ms(lat.get('p95'))} | "
            f"{fmt_ms(lat.get('p99'))} | "
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
