"""Newest-first pages over a listing spread across shards: a lazy k-way merge.

Each shard is one index partition, read newest first. A page asks every shard for a
few items (about twice its fair share of the page), merges them by id (ULIDs: by
creation time), and asks a shard for more only when its buffer runs dry while it may
still hold a newer item than the others' heads. The cursor keeps one position per
shard, so the next page resumes each where this one stopped.

Knows neither DynamoDB nor keys: ``fetch`` does the reading (``store.py``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

EXHAUSTED = ""  # a shard's cursor position once it has nothing left

# (shard, resume after this id or None, at most this many) -> ([(id, item)] newest first, last evaluated id or None)
Fetch = Callable[[int, "str | None", int], tuple[list[tuple[str, T]], "str | None"]]
# Runs the first round's fetches (in parallel, or not): f over each argument, results in order.
MapFn = Callable[[Callable[[int], Any], Sequence[int]], Iterable[Any]]


@dataclass
class _Shard(Generic[T]):
    shard: int
    position: str | None  # the id up to which everything was emitted or filtered out; None: the start
    buffer: deque[tuple[str, T]] = field(default_factory=deque)
    next_start: str | None = None  # where the next fetch resumes
    more: bool = True  # the shard may hold items past what was fetched


# A refill reads this many at least: a shard of filtered-out (started) jobs is crossed in
# few reads, whatever the page's size. DynamoDB's Limit counts items read, not returned.
REFILL_SIZE = 50


def max_reads(shards: int) -> int:
    """Reads one page may make: the first round (in parallel), then as many refills in a row.

    Past it the page ends early, maybe short or empty, with a cursor that resumes every shard
    where it stopped: a page's work is bounded whatever the index holds
    (docs/architecture.md#the-open-jobs-listing-sharded).
    """
    return 2 * shards


def first_round_size(limit: int, shards: int) -> int:
    """Items asked of each shard at first: twice a fair share, so a refill is rare."""
    return max(1, min(limit, 2 * math.ceil(limit / shards)))


@dataclass(frozen=True)
class MergedPage(Generic[T]):
    """A page merged from every shard; ``cursor`` maps each shard to its position (None: all done)."""

    items: list[T]
    cursor: dict[int, str] | None = None


def merge_newest_first(
    cursor: dict[int, str], shard_count: int, limit: int, fetch: Fetch[T], map_fn: MapFn = map
) -> MergedPage[T]:
    """One page of at most ``limit`` items, newest first across every shard.

    ``cursor`` maps a shard to its position (a resume id, or ``EXHAUSTED``); a shard
    it does not name starts at the top. The page's cursor is None when every shard is done.
    """
    states = [_Shard[T](n, cursor.get(n)) for n in range(shard_count)]
    active = [state for state in states if state.position != EXHAUSTED]
    for state in states:
        if state.position == EXHAUSTED:
            state.more = False
    size = first_round_size(limit, shard_count)
    results = list(map_fn(lambda i: fetch(active[i].shard, active[i].position, size), range(len(active))))
    for state, (found, last) in zip(active, results, strict=True):
        _take(state, found, last)

    out: list[T] = []
    reads, budget = len(active), max_reads(shard_count)
    while len(out) < limit:
        for state in active:
            # A dry shard that may hold more must be read before any pick: its next
            # item could be newer than every other head.
            while not state.buffer and state.more and reads < budget:
                _take(state, *fetch(state.shard, state.next_start, max(limit - len(out), REFILL_SIZE)))
                reads += 1
        if any(not state.buffer and state.more for state in active):
            break  # out of reads: no pick is safe until that shard is read; the next page resumes it
        heads = [state for state in active if state.buffer]
        if not heads:
            break
        best = max(heads, key=lambda state: state.buffer[0][0])
        item_id, item = best.buffer.popleft()
        best.position = item_id
        out.append(item)

    next_cursor: dict[int, str] = {}
    for state in states:
        if state.buffer:
            if state.position is not None:
                next_cursor[state.shard] = state.position
        elif state.more:
            # Everything read was emitted (or filtered out by the read): resume past it.
            if state.next_start is not None:
                next_cursor[state.shard] = state.next_start
        else:
            next_cursor[state.shard] = EXHAUSTED
    done = all(v == EXHAUSTED for v in next_cursor.values()) and len(next_cursor) == shard_count
    return MergedPage(items=out, cursor=None if done else next_cursor)


def _take(state: _Shard[T], found: list[tuple[str, T]], last: str | None) -> None:
    state.buffer.extend(found)
    state.next_start = last
    state.more = last is not None
