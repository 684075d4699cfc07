"""What every benchmark part is: its options, its run, and its share of the results' files.

A part is one module of ``bench/parts/`` holding one instance of a ``Part`` subclass; the
registry (``bench/parts/__init__.py``) lists them in order. The CLI, the estimate, the
progress and the report walk the registry; nothing outside a part's module knows its options
or its keys of ``latest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from bench.stack import Stack

Results = dict[str, Any]


class Target(TypedDict):
    """One line of the targets table: what was measured and whether it was met (never asserted)."""

    target: str
    measured: str
    met: bool


@dataclass(frozen=True)
class RunContext:
    """What the CLI lends a part's run."""

    workdir: Path  # the run's work files (logs, plans), removed afterwards unless kept
    out: Path  # the results directory (--out)
    say: Callable[[str], None]  # a progress line on stderr
    fresh_stack: Callable[[str], contextlib.AbstractContextManager[Stack]]  # a local stack of the part's own


class Part(ABC):
    """One benchmark part. Subclasses set the three names and implement ``add_arguments``, ``estimate``
    and ``run``; the other hooks default to contributing nothing."""

    number: int  # what --parts selects, and the section's number in latest.md
    name: str  # the module's name: what it measures
    title: str  # the argparse group's title, after "<number>. "
    run_by_default: bool = True
    why_not_by_default: str = ""  # said in --parts' help when run_by_default is False
    chart_files: tuple[str, ...] = ()  # the charts it writes in the results directory

    @abstractmethod
    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        """Its options, in its own group of the parser."""

    def smoke(self, args: argparse.Namespace) -> None:
        """Shrinks its options to one tiny iteration (``--smoke``)."""
        return None

    @abstractmethod
    def estimate(self, args: argparse.Namespace) -> tuple[float, float]:
        """Its wall seconds: fixed, and CPU-bound at the reference yardstick (bench/plan.py scales those)."""

    @abstractmethod
    def run(self, args: argparse.Namespace, context: RunContext) -> Results:
        """Measures; returns its keys of latest.json."""

    def targets(self, results: Results) -> list[Target]:
        """Its lines of the targets table, from the whole run's results."""
        return []

    def summary(self, results: Results) -> Results:
        """Its keys of latest.json's ``summary`` (and of history.jsonl)."""
        return {}

    def markdown(self, results: Results) -> str:
        """Its sections of latest.md ("" when it did not run)."""
        return ""

    def findings(self, results: Results) -> list[str]:
        """Its statements for latest.md's "What the numbers say"."""
        return []

    def chart(self, results: Results, out_dir: Path) -> None:
        """Writes its ``chart_files`` when it has the data."""
        return None

    def invariants_violated(self, results: Results) -> list[str]:
        """The labels of its runs whose invariants did not hold (the exit code is 1 then)."""
        return []


def ints(text: str) -> tuple[int, ...]:
    """An option's comma-separated integers: "1,6" -> (1, 6)."""
    return tuple(int(x) for x in text.split(",") if x.strip())


def floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def round_or_none(value: Any, digits: int = 1) -> Any:
    """A summary figure: rounded, or None when missing or not finite."""
    return round(value, digits) if isinstance(value, int | float) and math.isfinite(value) else None


def section(lines: list[str]) -> str:
    """A part's Markdown lines as one block (each section's last line is empty, so it ends with a newline)."""
    return "\n".join(lines)
