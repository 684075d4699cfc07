"""A ``Metrics`` port that counts in memory."""

from __future__ import annotations

from collections import Counter


class CountingMetrics:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def count(self, name: str, value: int = 1) -> None:
        self.counts[name] += value
