"""Part 1: booking latency against the applications per job, ours against the baseline, in this
process; first on the emulator, then on the AWS latency model (section 1b). The measuring is
``bench/book_latency.py``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench import charts
from bench.parts.base import Part, Results, RunContext, Target, ints, round_or_none, section
from bench.plan import STACK_START_S
from bench.stack import BOOK_QUEUE_NAME, point_at
from bench.stats import fmt_ms

RATIO_AT_100 = 8.0  # baseline/ours p50 at N=100, on the emulator
MODEL_RATIO_AT_100 = 15.0  # the same on the latency model
CONFIGURED_CONCURRENCY = 10  # chalicelib/config.py's ENQUEUE_CONCURRENCY: its pass is the model's first


class BookLatency(Part):
    number = 1
    name = "book_latency"
    title = "booking latency vs applications per job"
    chart_files = ("book-latency.png",)

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--sizes", type=ints, default=(1, 5, 10, 100, 1000), help="applications per job (default 1,5,10,100,1000)"
        )
        group.add_argument("--bookings", type=int, default=30, help="bookings per size and implementation (default 30)")
        group.add_argument("--bookings-large", type=int, default=5, help="the same for sizes >= 1000 (default 5)")
        group.add_argument(
            "--model-bookings-large",
            type=int,
            default=20,
            help="on the latency model, ours at sizes >= 1000 (default 20; the baseline is drawn there)",
        )
        group.add_argument(
            "--model-concurrency",
            type=ints,
            default=(),
            help="with the latency model, ours also at these ENQUEUE_CONCURRENCY values, e.g. 4,20 (default none; "
            "each is one more pass of every size)",
        )

    def smoke(self, args: argparse.Namespace) -> None:
        args.sizes, args.bookings, args.bookings_large, args.model_bookings_large = (1, 10), 2, 1, 1
        args.model_concurrency = ()

    def estimate(self, args: argparse.Namespace) -> tuple[float, float]:
        extra = len([c for c in args.model_concurrency if c != CONFIGURED_CONCURRENCY])  # one more model pass each
        fixed, cpu = 2 * STACK_START_S, 0.0
        for n in args.sizes:
            large = n >= 1000
            b = args.bookings_large if large else args.bookings
            mb = args.model_bookings_large if large else args.bookings
            cpu += b * (0.005 + 0.0028 * n)  # on the emulator, ours and the baseline
            cpu += (2 * b + (2 + extra) * mb) * n * 0.0001  # preparing the jobs (two items per application)
            cpu += (1 + extra) * mb * (0.003 + 0.0004 * n)  # ours' own CPU on the model
            fixed += (1 + extra) * mb * 0.06  # ours' modelled calls
            if not large:
                fixed += b * (0.05 + 0.0224 * (n - 1))  # the baseline's modelled sends, one after another
        return fixed, cpu

    def run(self, args: argparse.Namespace, context: RunContext) -> Results:
        from bench import book_latency  # imports chalicelib: only once the environment is prepared

        say = context.say
        say("part 1: booking latency vs applications per job (ours vs baseline, in-process)")
        with context.fresh_stack("part1") as stack:
            book_queue = stack.client("sqs").create_queue(QueueName=BOOK_QUEUE_NAME)["QueueUrl"]
            point_at(stack, DECLINES_QUEUE_URL=book_queue)
            plan = book_latency.Plan(
                sizes=args.sizes,
                bookings=args.bookings,
                bookings_at_1000=args.bookings_large,
                warmup=1 if args.smoke else 3,
                model_bookings_at_1000=args.model_bookings_large,
            )
            out: Results = {"book_latency": book_latency.run(stack, book_queue, plan, say)}
            say("part 1, on the AWS latency model (bench/latency_model.py)")
            out["book_latency_model"] = book_latency.run_model(
                stack, book_queue, plan, say, other_concurrencies=args.model_concurrency
            )
        return out

    def targets(self, results: Results) -> list[Target]:
        out: list[Target] = []
        book = results.get("book_latency")
        if book:
            at_100 = next((s for s in book["sizes"] if s["applications"] == 100), None)
            if at_100:
                out.append(
                    {
                        "target": "ours >= 8x faster than the baseline at N=100 (p50)",
                        "measured": f"x{at_100['ratio_p50']:.1f} (p95 x{at_100['ratio_p95']:.1f})",
                        "met": at_100["ratio_p50"] >= RATIO_AT_100,
                    }
                )
            out.append(
                {
                    "target": "calls per booking: ours 1 transaction + query pages + ceil(N/10) SendMessageBatch "
                    "(N-1 declines and the sweep)",
                    "measured": "; ".join(
                        f"N={s['applications']}: {s['ours']['calls_total_per_booking']}" for s in book["sizes"]
                    ),
                    "met": all(s["ours"]["calls_as_expected"] for s in book["sizes"]),
                }
            )
            out.append(
                {
                    "target": "calls per booking: baseline 1 query + 1 transaction + (N-1) SendMessage = N+1",
                    "measured": "; ".join(
                        f"N={s['applications']}: {s['baseline']['calls_total_per_booking']}" for s in book["sizes"]
                    ),
                    "met": all(s["baseline"]["calls_as_expected"] for s in book["sizes"]),
                }
            )
        model = results.get("book_latency_model")
        if model:
            at_100 = next((s for s in model["sizes"] if s["applications"] == 100), None)
            if at_100:
                out.append(
                    {
                        "target": f"latency model: ours >= {MODEL_RATIO_AT_100:g}x faster than the baseline "
                        "at N=100 (p50)",
                        "measured": f"x{at_100['ratio_p50']:.1f}",
                        "met": at_100["ratio_p50"] >= MODEL_RATIO_AT_100,
                    }
                )
        return out

    def summary(self, results: Results) -> Results:
        out: Results = {}
        book = results.get("book_latency")
        if book:
            out["emulator_ratio_p50"] = {str(s["applications"]): round_or_none(s["ratio_p50"]) for s in book["sizes"]}
        model = results.get("book_latency_model")
        if model:
            out["model"] = {
                "concurrency": model["configured_concurrency"],
                "sizes": {
                    str(s["applications"]): {
                        "ours_p50_ms": round_or_none(s["ours"]["latency"]["p50"]),
                        "baseline_p50_ms": round_or_none(s["baseline"]["latency"]["p50"]) if "baseline" in s else None,
                        "design_floor_p50_ms": round_or_none(s["design_floor"]["p50"]),
                        "ratio": round_or_none(s.get("ratio_p50")),
                        "to_design_floor": round_or_none(s["ours_to_design_floor_p50"], 2),
                        "client_cpu_ms": round_or_none(s["ours"]["cpu_ms"]),
                    }
                    for s in model["sizes"]
                },
            }
        return out

    def markdown(self, results: Results) -> str:
        return section(_md_book(results.get("book_latency")) + _md_model(results.get("book_latency_model")))

    def findings(self, results: Results) -> list[str]:
        book = results.get("book_latency")
        if not (book and book.get("sqs_call_costs")):
            return []
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
        return [text]

    def chart(self, results: Results, out_dir: Path) -> None:
        """On the emulator, and beside it on the latency model, both axes logarithmic."""
        book = results.get("book_latency")
        if not book:
            return
        model = results.get("book_latency_model")
        plt = charts.pyplot()
        if model:
            fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 5.5), dpi=100)
            _chart_book(ax, book)
            _chart_model(ax2, model)
        else:
            fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
            _chart_book(ax, book)
        fig.tight_layout()
        charts.save(fig, out_dir / self.chart_files[0])


PART = BookLatency()


def _calls(calls: dict[str, int]) -> str:
    short = {"TransactWriteItems": "Tx", "Query": "Q", "SendMessageBatch": "SMB", "SendMessage": "SM"}
    return " + ".join(f"{v} {short.get(k, k)}" for k, v in sorted(calls.items(), key=lambda kv: kv[0]))


def _md_book(book: Results | None) -> list[str]:
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


def _md_model(model: Results | None) -> list[str]:
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


def _chart_book(ax: Any, book: Results) -> None:
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


def _chart_model(ax: Any, model: Results) -> None:
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
