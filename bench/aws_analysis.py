"""The run's figures on AWS's terms: end to end per design, the cost table, the memory table;
their targets and their section of latest.md (8), after every part's.

Computed over what the parts measured (part 1's CPU and modelled bookings, part
6's consumed capacity) and the calibrated model (``bench.aws_model``); a part that did
not run leaves its figures to the model's defaults, and says so.
"""

from __future__ import annotations

from typing import Any

from bench import aws_model, costs
from bench.aws_model import DESIGN_LABELS, ORIGINAL_PUBLISHED
from bench.parts.base import Target
from bench.stats import fmt_ms

COST_SIZES = ("5", "100", "1000")
E2E_P50_MS_AT_5 = 70.0  # end to end on the model, at N=5
E2E_P99_MS_AT_5 = 200.0
X_ARTICLE_LAMBDA_P50 = 6.0  # against the article's published p50 (457.5 ms), at N=5
X_ARTICLE_EXPRESS_P50 = 4.5  # against the article's published p50 (343.8 ms), at N=5
MODEL_TO_DESIGN_FLOOR = 1.15  # ours / the design's floor, end to end on the model, at every N
COST_AT_5_USD = 0.012  # per 1,000 bookings at N=5
COST_TO_EXPRESS_AT_5 = 0.6


def cpu_profile(results: dict[str, Any]) -> aws_model.CpuProfile:
    model = results.get("book_latency_model")
    yard = (results.get("yardstick") or {}).get("cpu_ms")
    if not model or not yard:
        return aws_model.CpuProfile.default()
    return aws_model.CpuProfile.from_run({s["applications"]: s["ours"]["cpu_ms"] for s in model["sizes"]}, yard)


def analyse(results: dict[str, Any]) -> dict[str, Any]:
    cpu = cpu_profile(results)
    drawn = aws_model.simulate(cpu)
    end_to_end: dict[str, Any] = {name: per for name, per in drawn.items()}
    measured_ours: dict[str, Any] = {}
    model = results.get("book_latency_model")
    yard = (results.get("yardstick") or {}).get("cpu_ms")
    if model and yard:
        for s in model["sizes"]:
            ours = s["ours"]
            measured_ours[str(s["applications"])] = aws_model.ours_from_measurement(
                ours["latencies_ms"], ours["cpu_ms"], yard
            )
    out: dict[str, Any] = {
        "calibration": aws_model.calibration_table(),
        "cpu_yardsticks_by_size": {str(n): round(v, 3) for n, v in sorted(cpu.by_size.items())},
        "cpu_measured": cpu.measured,
        "api_memory_mb": aws_model.API_MEMORY_MB,
        "simulated": end_to_end,
        "ours_measured": measured_ours,
    }
    booking = (results.get("booking_cost") or {}).get("sizes")
    if booking:
        prices = costs.load_prices()
        out["prices_read_on"] = prices["read_on"]
        out["modelled_extras"] = costs.MODELLED_EXTRAS
        out["cost"] = costs.cost_table(booking, drawn, prices)
        out["memory"] = memory_table(cpu, booking, prices)
    return out


def memory_table(cpu: aws_model.CpuProfile, booking: dict[str, Any], prices: dict[str, Any]) -> list[dict[str, Any]]:
    """Ours at N=5 against the API function's memory: latency and cost per 1,000 bookings."""
    rows = []
    for memory in aws_model.MEMORY_SIZES_MB:
        per = aws_model.simulate(cpu, sizes=(5,), samples=5000, memory_mb=memory)["ours"]["5"]
        used = costs.consumption("ours", 5, booking["5"], per["handler_mean"], None)
        used["lambda_gb_second"] += per["handler_mean"] / 1000 * (memory - aws_model.API_MEMORY_MB) / 1024
        priced = costs.price(used, prices)
        rows.append(
            {
                "memory_mb": memory,
                "p50_ms": per["p50"],
                "p99_ms": per["p99"],
                "cpu_ms": cpu.on_lambda_ms(5, memory),
                "cost_per_1000_usd": priced["per_1000_usd"],
                "api_lambda_per_1000_usd": 1000
                * (per["handler_mean"] / 1000 * memory / 1024)
                * prices["prices_usd"]["lambda_gb_second"]["price"],
            }
        )
    return rows


def summary_keys(aws: dict[str, Any]) -> dict[str, Any]:
    """The keys bench/results/latest.json's summary carries for the model and the cost."""
    e2e: dict[str, Any] = {}
    for design, per in aws["simulated"].items():
        e2e[design] = {n: {"p50": round(v["p50"], 1), "p99": round(v["p99"], 1)} for n, v in per.items()}
    if aws.get("ours_measured"):
        e2e["ours_simulated"] = e2e["ours"]
        e2e["ours"] = {
            n: {k: round(v[k], 1) for k in ("p50", "p99", "max") if k in v} | {"bookings": v["bookings"]}
            for n, v in aws["ours_measured"].items()
        }
    out: dict[str, Any] = {"model_end_to_end_ms": e2e}
    if aws.get("cost"):
        out["cost_per_1000_bookings_usd"] = {
            design: {n: round(v["per_1000_usd"], 5) for n, v in per.items()} for design, per in aws["cost"].items()
        }
        out["cost_per_1000_bookings_with_email_usd"] = {
            design: {n: round(v["per_1000_with_email_usd"], 4) for n, v in per.items()}
            for design, per in aws["cost"].items()
        }
    return out


def targets(results: dict[str, Any]) -> list[Target]:
    """The targets set on AWS's terms."""
    out: list[Target] = []
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
                "target": f"end to end at N=5: p50 <= {E2E_P50_MS_AT_5:g} ms, p99 <= {E2E_P99_MS_AT_5:g} ms",
                "measured": f"p50 {at5['p50']:.1f} ms, {'p99' if 'p99' in at5 else 'max'} {p99:.1f} ms",
                "met": at5["p50"] <= E2E_P50_MS_AT_5 and p99 <= E2E_P99_MS_AT_5,
            },
            {
                "target": f"N=5 p50 >= {X_ARTICLE_LAMBDA_P50:g}x faster than the article's Lambda "
                f"({lam:g} ms) and {X_ARTICLE_EXPRESS_P50:g}x than its Express workflow ({exp:g} ms)",
                "measured": f"x{lam / at5['p50']:.1f} and x{exp / at5['p50']:.1f} "
                f"(on the model: x{sim['seed_lambda']['5']['p50'] / at5['p50']:.1f} and "
                f"x{sim['express_workflow']['5']['p50'] / at5['p50']:.1f})",
                "met": lam / at5["p50"] >= X_ARTICLE_LAMBDA_P50 and exp / at5["p50"] >= X_ARTICLE_EXPRESS_P50,
            },
        ]
    if ours and floor:
        ratios = {n: v["p50"] / floor[n]["p50"] for n, v in ours.items() if n in floor}
        out.append(
            {
                "target": f"end to end: ours within {MODEL_TO_DESIGN_FLOOR:g}x the design's floor at every N (p50)",
                "measured": "; ".join(f"N={n}: {r:.2f}x" for n, r in ratios.items()),
                "met": all(r <= MODEL_TO_DESIGN_FLOOR for r in ratios.values()),
            }
        )
    cost = aws.get("cost") or {}
    if cost.get("ours", {}).get("5") and cost.get("express_workflow", {}).get("5"):
        c, e = cost["ours"]["5"]["per_1000_usd"], cost["express_workflow"]["5"]["per_1000_usd"]
        out.append(
            {
                "target": f"cost at N=5 <= ${COST_AT_5_USD:g} per 1,000 bookings and "
                f"<= {COST_TO_EXPRESS_AT_5:g}x the Express workflow's (emails apart)",
                "measured": f"${c:.4f}, x{c / e:.2f} the Express workflow's (${e:.4f})",
                "met": c <= COST_AT_5_USD and c / e <= COST_TO_EXPRESS_AT_5,
            }
        )
    return out


def markdown(results: dict[str, Any]) -> str:
    """Section 8 of latest.md (with part 6's measured capacity units)."""
    aws, booking = results.get("aws"), results.get("booking_cost")
    if not aws:
        return ""
    sim = aws["simulated"]
    sizes = list(sim["ours"])
    lines = [
        "## 8. On AWS's terms: end to end, cost, memory",
        "",
        "`bench/aws_analysis.py`: API Gateway, the invocation, the calls and the function's CPU at "
        f"{aws['api_memory_mb']} MB, the prod stage's API function (CPU per booking in yardsticks, "
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
    for design, label in DESIGN_LABELS.items():
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
                f"| {DESIGN_LABELS[design]} | "
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
            lines.append(f"- {DESIGN_LABELS[design]}: " + ", ".join(f"{k} {v:.5f}" for k, v in parts if v))
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
    return "\n".join(lines)
