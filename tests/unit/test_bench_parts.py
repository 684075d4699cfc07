"""The bench's parts: every one of the registry has the same shape, the CLI is built from the registry,
and each part renders its share of the results from stored results without running anything."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from bench import cli, plan, report
from bench.parts import DEFAULT_NUMBERS, PARTS, selected
from bench.parts.base import Part, Results, RunContext

ROOT = Path(__file__).resolve().parents[2]
# A smoke run of every part (``python -m bench --smoke --parts 1,2,3,4,5,6,7``) and the latest full run.
STORED_RESULTS = {
    "smoke": Path(__file__).with_name("data") / "bench-smoke-results.json",
    "latest": ROOT / "bench" / "results" / "latest.json",
}
# The summary keys that history.jsonl, the docs and the e2e smoke read.
HEADLINE_KEYS = {
    "cost_per_1000_bookings_usd",
    "model_end_to_end_ms",
    "cpu_per_booking_yardsticks",
    "own_cpu_per_booking_yardsticks",
}


def load(name: str) -> Results:
    results = json.loads(STORED_RESULTS[name].read_text())
    results.pop("targets", None)
    results.pop("summary", None)
    return results


def test_every_registered_part_has_the_shape() -> None:
    numbers = [part.number for part in PARTS]
    assert numbers == sorted(set(numbers)), "parts are numbered once each, in order"
    for part in PARTS:
        assert isinstance(part, Part)
        module = importlib.import_module(f"bench.parts.{part.name}")
        assert module.PART is part, f"bench/parts/{part.name}.py holds the part named {part.name}"
        assert part.title and isinstance(part.number, int)
        assert part.run_by_default or part.why_not_by_default, "an optional part says why in --parts' help"
        for hook in ("add_arguments", "smoke", "estimate", "run", "targets", "summary", "markdown", "chart"):
            assert callable(getattr(part, hook)), (part.name, hook)
    assert tuple(p.number for p in PARTS if p.run_by_default) == DEFAULT_NUMBERS


def test_the_cli_builds_its_parser_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    titles = [g.title for g in cli.build_parser()._action_groups]
    assert [t for t in titles if t and t[0].isdigit()] == [f"{p.number}. {p.title}" for p in PARTS]
    assert cli.parse_args([]).parts == DEFAULT_NUMBERS

    class Extra(Part):
        number, name, title = 99, "extra", "a part added in one file"

        def add_arguments(self, group: argparse._ArgumentGroup) -> None:
            group.add_argument("--extra-size", type=int, default=3)

        def smoke(self, args: argparse.Namespace) -> None:
            args.extra_size = 1

        def estimate(self, args: argparse.Namespace) -> tuple[float, float]:
            return 1.0, 2.0

        def run(self, args: argparse.Namespace, context: RunContext) -> Results:
            return {}

    monkeypatch.setattr(cli, "PARTS", (*PARTS, Extra()))
    args = cli.parse_args(["--smoke", "--parts", "1,99"])
    assert args.extra_size == 1 and args.parts == (1, 99)
    assert "99. a part added in one file" in [g.title for g in cli.build_parser()._action_groups]


@pytest.mark.parametrize("argv", [[], ["--smoke", "--parts", "1,2,3,4,5,6,7"]])
def test_every_part_estimates_its_time_from_its_options(argv: list[str]) -> None:
    args = cli.parse_args(argv)
    estimates = plan.estimate_seconds(selected(args.parts), args, plan.REFERENCE_YARDSTICK_MS)
    assert list(estimates) == [str(n) for n in args.parts]
    assert all(seconds > 0 for seconds in estimates.values())


@pytest.mark.parametrize("stored", sorted(STORED_RESULTS))
def test_each_part_renders_its_share_of_stored_results(stored: str) -> None:
    results = load(stored)
    summary_keys: dict[str, str] = {}
    for part in PARTS:
        for target in part.targets(results):
            assert set(target) == {"target", "measured", "met"} and isinstance(target["met"], bool), target
        for key in part.summary(results):
            assert key not in summary_keys, f"{part.name} and {summary_keys[key]} both write summary[{key!r}]"
            summary_keys[key] = part.name
        text = part.markdown(results)
        assert text == "" or (text.startswith(f"## {part.number}") and text.endswith("\n")), part.name
        assert all(isinstance(finding, str) for finding in part.findings(results))
        assert part.invariants_violated(results) == []


@pytest.mark.parametrize("stored", sorted(STORED_RESULTS))
def test_the_report_assembles_what_it_always_did(stored: str) -> None:
    results = load(stored)
    stored_results = json.loads(STORED_RESULTS[stored].read_text())
    results["targets"] = report.evaluate_targets(results)
    summary = report.summary(results)
    # The targets and the summary's keys the run wrote (a new key or target means a new fixture).
    assert sorted(t["target"] for t in results["targets"]) == sorted(t["target"] for t in stored_results["targets"])
    assert set(summary) == set(stored_results["summary"])
    assert set(summary) >= HEADLINE_KEYS
    markdown = report.markdown(results)
    for heading in ("## Targets", "## Yardstick", "## 1.", "## 1b.", "## 2.", "## 3.", "## 5.", "## 7.", "## 8."):
        assert heading in markdown
    if "knee" in results:
        assert "## 4." in markdown


def test_the_charts_are_written_from_stored_results(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results: dict[str, Any] = load("smoke")
    paths = report.write_all(results, tmp_path)
    for part in PARTS:
        for name in part.chart_files:
            assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
