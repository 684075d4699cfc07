"""A yardstick of the machine, timed in the same run as the benchmarks.

Absolute figures move by several times between days on shared machines; a figure
divided by a yardstick timed minutes apart moves much less. Two are kept:

- ``cpu_ms``: a fixed CPU-bound pure-Python loop (median of several runs), timed in this
  process's CPU time, a proxy for how fast one core of this machine runs an interpreter;
  CPU time, like the per-process CPU it divides, leaves out the time other tenants of a
  shared machine hold the core (``cpu_wall_ms``, the same loop in wall time, keeps it);
- ``emulator_ms``: one small DynamoDB round trip to the stack's emulator (median), a
  proxy for what a call costs there.

Reports give CPU per booking and latencies also in these units ("yardsticks").
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

_LOOP = 200_000


def cpu_loop(clock: Callable[[], float] = time.process_time) -> float:
    """Milliseconds for a fixed mix of arithmetic, dict and string work in pure Python."""
    t0 = clock()
    acc: dict[int, str] = {}
    total = 0
    for i in range(_LOOP):
        total += (i * 7) % 13
        if i % 50 == 0:
            acc[i % 1000] = str(total)
    assert len(acc) <= 1000
    return (clock() - t0) * 1000


def cpu_ms(runs: int = 7, clock: Callable[[], float] = time.process_time) -> float:
    return statistics.median(cpu_loop(clock) for _ in range(runs))


def emulator_ms(dynamodb: Any, table: str, runs: int = 21) -> float:
    """Median of GetItem round trips for a key that does not exist."""
    samples = []
    key = {"PK": {"S": "YARDSTICK"}, "SK": {"S": "YARDSTICK"}}
    dynamodb.get_item(TableName=table, Key=key)  # connection up before timing
    for _ in range(runs):
        t0 = time.perf_counter()
        dynamodb.get_item(TableName=table, Key=key)
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def measure(dynamodb: Any = None, table: str | None = None) -> dict[str, float]:
    out = {"cpu_ms": cpu_ms(), "cpu_wall_ms": cpu_ms(clock=time.perf_counter)}
    if dynamodb is not None and table:
        out["emulator_ms"] = emulator_ms(dynamodb, table)
    return out
