"""How long a run will take on this machine, said before it starts, and its progress as it goes.

Each part's wall time is estimated from its options (its ``estimate``): a fixed part (a fresh stack's start,
the load's own duration, the knee's steps) and a CPU-bound part scaled by the machine's
CPU yardstick timed just before (its wall time: what other tenants take counts here).
The coefficients were read off the runs of 2026-12-02 (yardstick 11.4 ms, ~12 minutes)
and 2026-12-04 (yardstick 29-42 ms in wall time); they are rough, within about a third.
Every run records each part's measured seconds (``part_seconds``), to check them against.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.parts.base import Part

REFERENCE_YARDSTICK_MS = 11.4  # the wall-time CPU yardstick of the run the coefficients come from
STACK_START_S = 5.0  # a fresh local stack: MiniStack, chalice local, the pollers


def estimate_seconds(
    parts: Sequence[Part], args: argparse.Namespace, yardstick_wall_ms: float | None
) -> dict[str, float]:
    """Estimated wall seconds per part, at the machine's current speed."""
    scale = (yardstick_wall_ms or REFERENCE_YARDSTICK_MS) / REFERENCE_YARDSTICK_MS
    estimates = {}
    for part in parts:
        fixed, cpu = part.estimate(args)  # fixed seconds, CPU-bound seconds at the reference
        estimates[str(part.number)] = fixed + cpu * scale
    return estimates


class Progress:
    """Says where the run is: each part's start, its end against its estimate, the time left."""

    def __init__(self, estimates: dict[str, float], say: Callable[[str], None]) -> None:
        self.estimates = estimates
        self._say = say
        self._started = time.monotonic()
        self._part_started: float | None = None
        self.seconds: dict[str, float] = {}

    def total(self) -> float:
        return sum(self.estimates.values())

    def announce(self) -> None:
        parts = ", ".join(f"part {k} ~{_fmt(v)}" for k, v in self.estimates.items())
        self._say(f"estimated {_fmt(self.total())} on this machine ({parts})")

    def start(self, part: str) -> None:
        self._part_started = time.monotonic()
        done = len(self.seconds)
        self._say(f"[{done + 1}/{len(self.estimates)}] part {part}, estimated {_fmt(self.estimates.get(part, 0))}")

    def end(self, part: str) -> None:
        if self._part_started is None:
            return
        took = time.monotonic() - self._part_started
        self.seconds[part] = round(took, 1)
        left = sum(v for k, v in self.estimates.items() if k not in self.seconds)
        elapsed = time.monotonic() - self._started
        self._say(
            f"part {part} took {_fmt(took)} (estimated {_fmt(self.estimates.get(part, 0))}); "
            f"{_fmt(elapsed)} so far, ~{_fmt(left)} left"
        )
        self._part_started = None


def _fmt(seconds: float) -> str:
    if seconds < 90:
        return f"{math.ceil(seconds)} s"
    return f"{seconds / 60:.1f} min"
