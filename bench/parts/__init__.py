"""The benchmark parts, in the order they run and appear in latest.md.

Adding a part: a module here with a ``Part`` subclass and its ``PART`` (see ``base.py``), and
its line below; ``python -m bench`` gives it an option group, ``--parts`` a number, the
estimate, the progress, the targets, the summary and latest.md a place.
"""

from __future__ import annotations

from collections.abc import Iterable

from bench.parts import (
    book_latency,
    booking_cost,
    cold_start,
    express_workflow,
    knee,
    load_profile,
    worker_throughput,
)
from bench.parts.base import Part

PARTS: tuple[Part, ...] = (
    book_latency.PART,
    load_profile.PART,
    worker_throughput.PART,
    knee.PART,
    cold_start.PART,
    booking_cost.PART,
    express_workflow.PART,
)
DEFAULT_NUMBERS: tuple[int, ...] = tuple(p.number for p in PARTS if p.run_by_default)


def selected(numbers: Iterable[int]) -> list[Part]:
    """The registry's parts among ``numbers``, in the registry's order."""
    wanted = set(numbers)
    return [p for p in PARTS if p.number in wanted]
