"""Percentiles and summaries: plain Python, so results do not depend on a numerics library."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(ms: Sequence[float]) -> dict[str, Any]:
    """min, mean, p50, p90, p95, p99, max of latencies in milliseconds."""
    if not ms:
        return {"count": 0}
    return {
        "count": len(ms),
        "min": min(ms),
        "mean": sum(ms) / len(ms),
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "max": max(ms),
    }


class CallCounter:
    """Counts the AWS API calls made through some boto3 clients (botocore's ``before-call`` event).

    One count per API operation called, whatever the retries underneath.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()

    def attach(self, *clients: Any) -> CallCounter:
        for client in clients:
            client.meta.events.register("before-call.*.*", self._on_call)
        return self

    def _on_call(self, model: Any, **_: Any) -> None:
        with self._lock:
            self._calls[model.name] += 1

    def take(self) -> dict[str, int]:
        """The counts since the last take, and start again from zero."""
        with self._lock:
            calls = dict(self._calls)
            self._calls.clear()
        return calls


def fmt_ms(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value >= 1000:
        return f"{value / 1000:.3f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


class CallTimer:
    """Wall time spent inside each AWS operation (botocore's ``before-call``/``after-call`` events).

    Calls made concurrently add up, so the total can exceed the caller's elapsed time.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ms: Counter[str] = Counter()

    def attach(self, *clients: Any) -> CallTimer:
        for client in clients:
            client.meta.events.register("before-call.*.*", self._before)
            client.meta.events.register("after-call.*.*", self._after)
        return self

    @staticmethod
    def _before(context: dict[str, Any], **_: Any) -> None:
        context["bench_started"] = time.perf_counter()

    def _after(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        started = context.pop("bench_started", None)
        if started is not None:
            with self._lock:
                self._ms[model.name] += (time.perf_counter() - started) * 1000

    def take(self) -> dict[str, float]:
        with self._lock:
            ms = dict(self._ms)
            self._ms.clear()
        return ms
