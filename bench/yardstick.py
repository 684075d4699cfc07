"""A yardstick of the machine, timed in the same run as the benchmarks.

Absolute figures move by several times between days on shared machines; a figure
divided by a yardstick timed minutes apart moves much less. Two are kept:

- ``cpu_ms``: a fixed CPU-bound pure-Python loop (median of several runs), a proxy for
  what one core of this machine gives an interpreter right now;
- ``emulator_ms``: one small DynamoDB round trip to the stack's emulator (median), a
  proxy for what a call costs there.

Reports give CPU per booking and latencies also in these units ("yardsticks").
"""

from __future__ import annotations

import statistics
import time
from typing import Any

_LOOP = 200_000


def cpu_loop() -> float:
    """Milliseconds for a fixed mix of arithmetic, dict and string work in pure Python."""
    t0 = time.perf_counter()
    acc: dict[int, str] = {}
    total = 0
    for i in range(_LOOP):
        total += (i * 7) % 13
        if i % 50 == 0:
            acc[i % 1000] = str(total)
    assert len(acc) <= 1000
    return (time.perf_counter() - t0) * 1000


def cpu_ms(runs: int = 7) -> float:
    return statistics.median(cpu_loop() for _ in range(runs))


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
    out = {"cpu_ms": cpu_ms()}
    if dynamodb is not None and table:
        out["emulator_ms"] = emulator_ms(dynamodb, table)
    return out
