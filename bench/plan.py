"""How long a run will take on this machine, said before it starts, and its progress as it goes.

Each part's wall time is estimated from its options: a fixed part (a fresh stack's start,
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
from collections.abc import Callable

REFERENCE_YARDSTICK_MS = 11.4  # the wall-time CPU yardstick of the run the coefficients come from
STACK_START_S = 5.0  # a fresh local stack: MiniStack, chalice local, the pollers


def _part1(args: argparse.Namespace) -> tuple[float, float]:
    """Fixed seconds (the model's modelled waits, stacks) and CPU-bound seconds at the reference."""
    extra = len([c for c in args.model_concurrency if c != 10])  # one more model pass each, ours alone
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


def estimate_seconds(args: argparse.Namespace, yardstick_wall_ms: float | None) -> dict[str, float]:
    """Estimated wall seconds per part, at the machine's current speed."""
    scale = (yardstick_wall_ms or REFERENCE_YARDSTICK_MS) / REFERENCE_YARDSTICK_MS
    parts: dict[str, tuple[float, float]] = {}  # part -> (fixed seconds, CPU-bound seconds at the reference)
    if 1 in args.parts:
        parts["1"] = _part1(args)
    if 2 in args.parts:
        run = STACK_START_S + args.duration + 10.0
        parts["2"] = (max(1, args.repeat) * run, max(1, args.repeat) * args.rate * args.duration * 0.0035)
    if 3 in args.parts:
        per_level = args.backlog / 450.0 + args.sqs_backlog / 250.0
        parts["3"] = (STACK_START_S + 5.0, per_level * len(args.worker_concurrency))
    if 4 in args.parts:
        steps = len(args.knee_rates)
        parts["4"] = (steps * (STACK_START_S + args.knee_step + 8.0), sum(args.knee_rates) * args.knee_step * 0.0035)
    if 5 in args.parts:
        parts["5"] = (10.0, 30.0 + args.cold_runs * 4 * 0.6)
    if 6 in args.parts:
        parts["6"] = (STACK_START_S, 2.0 + sum(0.012 * n for n in args.cost_sizes))
    if 7 in args.parts:
        parts["7"] = (STACK_START_S + 5.0, args.express_bookings * 0.4)
    return {k: fixed + cpu * scale for k, (fixed, cpu) in parts.items()}


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
