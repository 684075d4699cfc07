"""How every caller that retries waits between attempts, and the one retry loop.

Jittered pauses, so two callers that collided do not collide again in step.
``Backoff`` says how long to wait before an attempt; ``retry`` repeats a call
while its failure is one worth repeating.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """The pause before the next attempt: ``first`` grown per attempt (doubled, or linearly),
    at most ``longest``, times a random factor in ``jitter``."""

    first: float
    jitter: tuple[float, float]
    doubling: bool = True
    longest: float = float("inf")

    def pause(self, attempt: int) -> float:
        """The pause after ``attempt`` (1 for the first) failed."""
        grown = self.first * (2 ** (attempt - 1) if self.doubling else attempt)
        return min(self.longest, grown) * random.uniform(*self.jitter)


# Two writes that got in each other's way: a short pause, a little longer each time.
AFTER_CONFLICT = Backoff(first=1.0, jitter=(0.005, 0.02), doubling=False)
# A database that timed out or was busy: doubling from 50 ms, at most 0.4 s.
AFTER_OUTAGE = Backoff(first=0.05, jitter=(0.5, 1.0), longest=0.4)


def retry(
    call: Callable[[], T],
    *,
    retryable: Callable[[Exception], bool],
    retries: int,
    backoff: Backoff,
    exhausted: Callable[[Exception], Exception],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call``, repeated at most ``retries`` times while it fails with a ``retryable`` error.

    Any other error propagates as it is; the last retryable one is replaced by ``exhausted(error)``.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except Exception as exc:
            if not retryable(exc):
                raise
            if attempt > retries:
                raise exhausted(exc) from None
        sleep(backoff.pause(attempt))
