"""The merge of a sharded listing: every item once, newest first, with few reads."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from chalicelib import items
from chalicelib.domain import is_valid_id
from chalicelib.shards import EXHAUSTED, REFILL_SIZE, first_round_size, max_reads, merge_newest_first
from tests.fakes.shards import FakeShards


def _page_through(fake: FakeShards, count: int, limit: int) -> tuple[list[str], int]:
    seen: list[str] = []
    cursor: dict[int, str] = {}
    pages = 0
    while True:
        page = merge_newest_first(cursor, count, limit, fake.fetch)
        pages += 1
        assert len(page.items) <= limit
        seen += page.items
        if page.cursor is None:
            return seen, pages
        cursor = page.cursor


@pytest.mark.parametrize("limit", [1, 3, 7, 20, 100])
@pytest.mark.parametrize("shards", [1, 8])
def test_paging_returns_every_item_once_newest_first(limit: int, shards: int) -> None:
    rng = random.Random(limit * 31 + shards)
    ids = [f"{i:05d}" for i in range(137)]
    per_shard: dict[int, list[str]] = {n: [] for n in range(shards)}
    for i in ids:
        per_shard[rng.randrange(shards)].append(i)
    fake = FakeShards(per_shard, hidden=frozenset(rng.sample(ids, 30)))

    seen, pages = _page_through(fake, shards, limit)

    visible = sorted(set(ids) - fake.hidden, reverse=True)
    assert seen == visible
    assert pages >= len(visible) // limit


def test_a_skewed_shard_is_refilled_not_skipped() -> None:
    # Every newest item is in shard 0: the others' heads must wait behind it.
    fake = FakeShards({0: [f"9{i:03d}" for i in range(30)], 1: ["0001"], 2: ["0002"]})
    page = merge_newest_first({}, 3, 10, fake.fetch)
    assert page.items == [f"9{i:03d}" for i in range(29, 19, -1)]
    assert page.cursor == {0: "9020"}  # shards 1 and 2 resume from the top
    rest = merge_newest_first(page.cursor, 3, 100, fake.fetch)
    assert rest.items == [f"9{i:03d}" for i in range(19, -1, -1)] + ["0002", "0001"]
    assert rest.cursor is None


def test_the_first_round_asks_each_shard_for_about_twice_its_share() -> None:
    assert first_round_size(20, 8) == 6
    assert first_round_size(100, 8) == 26
    assert first_round_size(1, 8) == 1
    assert first_round_size(5, 1) == 5
    fake = FakeShards({n: [f"{n}{i:03d}" for i in range(50)] for n in range(8)})
    merge_newest_first({}, 8, 20, fake.fetch)
    assert [limit for _, _, limit in fake.reads[:8]] == [6] * 8


def test_exhausted_shards_are_not_read_again() -> None:
    fake = FakeShards({0: ["0003", "0002", "0001"], 1: []})
    page = merge_newest_first({1: EXHAUSTED}, 2, 2, fake.fetch)
    assert page.items == ["0003", "0002"]
    assert {shard for shard, _, _ in fake.reads} == {0}
    assert page.cursor == {0: "0002", 1: EXHAUSTED}


def test_ids_spread_over_every_shard() -> None:
    # 800 fixed ids (a seeded generator, so the figure cannot change between runs)
    rng = random.Random(42)
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    ids = ["0" + "".join(rng.choice(alphabet) for _ in range(25)) for _ in range(800)]
    assert all(is_valid_id(i) for i in ids)
    counts = Counter(items.open_shard(i) for i in ids)
    assert sorted(counts) == list(range(items.OPEN_JOB_SHARDS))
    assert max(counts.values()) <= 1.4 * 800 / items.OPEN_JOB_SHARDS


@pytest.mark.parametrize("limit", [1, 6, 20, 100])
def test_a_page_s_reads_are_bounded_however_many_items_the_filter_hides(limit: int) -> None:
    # Given 5 visible items among 2,000 hidden ones (started jobs TTL has not deleted yet)
    rng = random.Random(limit)
    ids = [f"{i:05d}" for i in range(2005)]
    visible = set(rng.sample(ids, 5))
    per_shard: dict[int, list[str]] = {n: [] for n in range(8)}
    for i in ids:
        per_shard[rng.randrange(8)].append(i)
    fake = FakeShards(per_shard, hidden=frozenset(set(ids) - visible))

    # When a client pages through, counting each page's reads
    seen: list[str] = []
    cursor: dict[int, str] = {}
    pages = 0
    while True:
        before = len(fake.reads)
        page = merge_newest_first(cursor, 8, limit, fake.fetch)
        pages += 1
        # Then no page reads more than its bound
        assert len(fake.reads) - before <= max_reads(8)
        seen += page.items
        if page.cursor is None:
            break
        cursor = page.cursor
    # and every visible item still comes, once, newest first
    assert seen == sorted(visible, reverse=True)
    # in few pages: those the visible items fill, and one per full budget of refills
    assert pages <= -(-5 // limit) + 2000 // (REFILL_SIZE * (max_reads(8) - 8)) + 2
