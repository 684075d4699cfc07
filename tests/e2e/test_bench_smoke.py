"""``python -m bench --smoke``: every part of the benchmarks runs once, tiny, and writes its results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import PROJECT_ROOT
from tools.local import ministack

pytestmark = pytest.mark.e2e

SMOKE_TIMEOUT_SECONDS = 240


def test_bench_smoke_writes_its_results_and_every_invariant_holds(tmp_path: Path) -> None:
    ministack.install()
    out = tmp_path / "results"

    run = subprocess.run(  # noqa: S603 - fixed command
        [sys.executable, "-m", "bench", "--smoke", "--parts", "1,2,3,4,5,6,7", "--out", str(out)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_SECONDS,
    )

    assert run.returncode == 0, f"stderr:\n{run.stderr[-6000:]}"
    for name in ("latest.json", "latest.md", "book-latency.png", "load-latency.png", "cold-start.png"):
        assert (out / name).stat().st_size > 0, name
    for chart in ("book-latency.png", "load-latency.png", "cold-start.png"):
        assert (out / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", chart
    results = json.loads((out / "latest.json").read_text())
    assert "error" not in results
    assert results["smoke"] is True

    # 1. Both implementations booked every job and made exactly the calls expected of them.
    sizes = results["book_latency"]["sizes"]
    assert [s["applications"] for s in sizes] == [1, 10]
    for size in sizes:
        for impl in ("ours", "baseline"):
            assert size[impl]["bookings"] >= 1
            assert size[impl]["declines_queued_ok"], size[impl]
            assert size[impl]["calls_as_expected"], (size[impl]["calls_per_booking"], size[impl]["calls_expected"])
    assert sizes[1]["ours"]["calls_per_booking"] == {
        "TransactGetItems": 1,
        "GetItem": 1,
        "TransactWriteItems": 1,
        "Query": 1,
        "SendMessageBatch": 1,
    }
    assert sizes[1]["baseline"]["calls_total_per_booking"] == 11  # N + 1
    # ... and the same on the AWS latency model, next to the design's floor.
    model = results["book_latency_model"]["sizes"]
    assert [s["applications"] for s in model] == [1, 10]
    for size in model:
        assert size["ours"]["calls_as_expected"] and size["baseline"]["calls_as_expected"], size
        assert size["design_floor"]["p50"] > 0 and size["ours_to_design_floor_p50"] > 0
    assert results["yardstick"]["cpu_ms"] > 0 and results["yardstick"]["emulator_ms"] > 0

    # 2. Every request booked its job, every decline landed, nothing was lost.
    load = results["http_load"]
    assert load["requests"] == load["status_codes"].get("200") == 20
    assert load["drain"]["drained"], load["drain"]
    assert load["invariants"]["ok"], load["invariants"]
    assert load["invariants"]["jobs_booked"] == 20
    # The bench waits for the queues to empty, the bookings' delayed sweeps included: nothing
    # is left over, nothing dead-lettered.
    assert load["queues_after"] == {"booking-declines-local": 0, "booking-declines-dlq-local": 0}
    assert set(load["latency"]) >= {"min", "mean", "p50", "p90", "p95", "p99", "max"}

    # 3. The worker drained its whole backlog, through both queues.
    worker = results["worker_throughput"]
    for run_ in [level["worker"] for level in worker["levels"]] + [m["worker"] for m in worker["sqs"]]:
        assert run_["completed"] and run_["still_pending"] == 0 and run_["failed_records"] == 0, run_
    assert all(level["raw_update_item"]["failed"] == 0 for level in worker["levels"])

    # 4. The knee stepped the rate up, each step on a fresh stack, and every step kept the invariants.
    steps = results["knee"]["steps"]
    assert steps and all(step["invariants"]["ok"] for step in steps)

    # 5. Every function of the package answered its first event in a fresh interpreter.
    cold = results["cold_start"]
    assert cold["boto3_import_ms"] > 0
    assert cold["boto3_and_dynamodb_client_ms"] > cold["boto3_import_ms"]
    assert set(cold["functions"]) == {"api", "authorizer", "worker"}
    assert all(f["first_answer_ms"] > 0 for f in cold["functions"].values())

    # 6. A booking's capacity, as the table reported it: the transaction's writes and the declines'.
    at5 = results["booking_cost"]["sizes"]["5"]
    assert at5["booking"]["units"]["write:TransactWriteItems"] > 0
    assert at5["declines"]["calls"] == {"UpdateItem": 4} and at5["declines"]["units"]["write:total"] >= 4

    # The summary carries the figures on AWS's terms and in yardsticks.
    head = results["summary"]
    assert set(head["cost_per_1000_bookings_usd"]) == {"ours", "express_workflow", "seed_lambda"}
    assert head["cost_per_1000_bookings_usd"]["ours"]["5"] > 0
    assert {"ours", "design_floor", "any_design_floor", "express_workflow", "seed_lambda"} <= set(
        head["model_end_to_end_ms"]
    )
    assert head["cpu_per_booking_yardsticks"] > head["own_cpu_per_booking_yardsticks"] > 0

    summary = (out / "latest.md").read_text()
    # 7. The article's Express workflow booked on the emulator's Step Functions, as correctly as ours.
    express = results["express_workflow"]
    for design in ("ours", "express_workflow"):
        assert express[design]["booked"] == 4 and express[design]["invariants"]["ok"], express[design]  # 2 + 2 warm
    assert express["second_booking_refused"]

    headings = ("## 1.", "## 1b.", "## 2.", "## 3.", "## 4.", "## 5.", "## 7.", "## 8.", "## Targets", "## Yardstick")
    for heading in headings:
        assert heading in summary
    assert not (out / "history.jsonl").exists()  # a smoke run leaves the history alone


def test_the_express_workflow_runs_beside_the_deployed_api(tmp_path: Path) -> None:
    # Ours through API Gateway, the authorizer and Lambda of the stage deployed on the emulator.
    ministack.install()
    out = tmp_path / "results"

    run = subprocess.run(  # noqa: S603 - fixed command
        [sys.executable, "-m", "bench", "--smoke", "--parts", "7", "--express-deployed", "--out", str(out)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_SECONDS,
    )

    assert run.returncode == 0, f"stderr:\n{run.stderr[-6000:]}"
    express = json.loads((out / "latest.json").read_text())["express_workflow"]
    assert express["deployed"] is True
    for design in ("ours", "express_workflow"):
        assert express[design]["booked"] == 4 and express[design]["invariants"]["ok"], express[design]
    assert express["second_booking_refused"] and express["queues_drained"]["empty"]
    assert "our stage deployed on the emulated account" in (out / "latest.md").read_text()
