"""Part 3: the decline worker's throughput on a backlog, against the raw conditional ``UpdateItem``
it makes; from a queue in memory and through MiniStack's SQS. The measuring is
``bench/worker_throughput.py``."""

from __future__ import annotations

import argparse

from bench.parts.base import Part, Results, RunContext, Target, ints, round_or_none, section
from bench.plan import STACK_START_S
from bench.stack import point_at

WORKER_TO_RAW = 0.7  # the worker's declines per second over the raw UpdateItem's, at every concurrency


class WorkerThroughput(Part):
    number = 3
    name = "worker_throughput"
    title = "decline worker throughput"

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--backlog", type=int, default=5000, help="decline messages in the backlog (default 5000)")
        group.add_argument("--worker-concurrency", type=ints, default=(1, 4), help="poller threads (default 1,4)")
        group.add_argument(
            "--sqs-backlog", type=int, default=500, help="backlog through MiniStack's SQS, 0 to skip (default 500)"
        )

    def smoke(self, args: argparse.Namespace) -> None:
        args.backlog, args.worker_concurrency, args.sqs_backlog = 40, (1,), 20

    def estimate(self, args: argparse.Namespace) -> tuple[float, float]:
        per_level = args.backlog / 450.0 + args.sqs_backlog / 250.0
        return STACK_START_S + 5.0, per_level * len(args.worker_concurrency)

    def run(self, args: argparse.Namespace, context: RunContext) -> Results:
        from bench import worker_throughput  # imports chalicelib: only once the environment is prepared

        context.say(f"part 3: decline worker throughput, backlog {args.backlog}")
        with context.fresh_stack("part3") as stack:
            point_at(stack)
            plan = worker_throughput.Plan(
                backlog=args.backlog,
                concurrency=args.worker_concurrency,
                sqs_backlog=args.sqs_backlog,
                sqs_concurrency=args.worker_concurrency[:1],
            )
            return {"worker_throughput": worker_throughput.run(stack, plan, context.say)}

    def targets(self, results: Results) -> list[Target]:
        worker = results.get("worker_throughput")
        if not worker:
            return []
        out: list[Target] = []
        for level in worker["levels"]:
            ratio = level["ratio_worker_to_raw"] or 0.0
            out.append(
                {
                    "target": f"worker >= 0.7 x raw UpdateItem (concurrency {level['concurrency']})",
                    "measured": f"{ratio:.2f}",
                    "met": ratio >= WORKER_TO_RAW,
                }
            )
        return out

    def summary(self, results: Results) -> Results:
        worker = results.get("worker_throughput")
        if not worker:
            return {}
        return {
            "worker_to_raw": {
                str(lv["concurrency"]): round_or_none(lv["ratio_worker_to_raw"], 2) for lv in worker["levels"]
            }
        }

    def markdown(self, results: Results) -> str:
        return section(_md_worker(results.get("worker_throughput")))


PART = WorkerThroughput()


def _md_worker(worker: Results | None) -> list[str]:
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
