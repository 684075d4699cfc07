"""Shards of a sharded listing, read as DynamoDB Queries would read them."""

from __future__ import annotations


class FakeShards:
    """Shards of ids read newest first, as a DynamoDB Query with Limit and a filter would."""

    def __init__(self, ids_per_shard: dict[int, list[str]], hidden: frozenset[str] = frozenset()) -> None:
        self.shards = {n: sorted(ids, reverse=True) for n, ids in ids_per_shard.items()}
        self.hidden = hidden  # filtered out after the read: still counts towards Limit
        self.reads: list[tuple[int, str | None, int]] = []

    def fetch(self, shard: int, after: str | None, limit: int) -> tuple[list[tuple[str, str]], str | None]:
        self.reads.append((shard, after, limit))
        ids = self.shards.get(shard, [])
        start = 0 if after is None else next((i for i, v in enumerate(ids) if v < after), len(ids))
        evaluated = ids[start : start + limit]
        more = start + limit < len(ids)
        return [(i, i) for i in evaluated if i not in self.hidden], (evaluated[-1] if more else None)
