"""The run's figures on AWS's terms: end to end per design, the cost table, the memory table.

Pure computation over what the parts measured (part 1's CPU and modelled bookings, part
6's consumed capacity) and the calibrated model (``bench.aws_model``); a part that did
not run leaves its figures to the model's defaults, and says so.
"""

from __future__ import annotations

from typing import Any

from bench import aws_model, costs

COST_SIZES = ("5", "100", "1000")


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
