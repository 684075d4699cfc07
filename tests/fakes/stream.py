"""The stream function's ports (event bus, sweeps, owners) and a DynamoDB Streams client, in memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chalicelib.domain import EnqueueReport
from chalicelib.events import DomainEvent


class FakeBus:
    def __init__(self, refuse: set[str] | None = None) -> None:
        self.events: list[DomainEvent] = []
        self.refuse = refuse or set()

    def publish(self, events: Sequence[DomainEvent]) -> set[str]:
        self.events.extend(events)
        return {e.event_id for e in events if e.event_type in self.refuse}


class FakeSweeps:
    def __init__(self, fail: bool = False) -> None:
        self.jobs: list[str] = []
        self.fail = fail

    def publish(self, job_id: str, application_ids: Sequence[str], *, sweep_after: int | None = None) -> EnqueueReport:
        self.jobs.append(job_id)
        return EnqueueReport(sweep_failed=self.fail)


class Owners:
    def owner_of(self, job_id: str) -> str | None:
        return "alice"


class FakeStream:
    """One shard over ``records``; iterators are positions in it (``records`` may grow meanwhile)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.iterators_issued = 0  # GetShardIterator calls

    def describe_stream(self, StreamArn: str) -> dict[str, Any]:
        return {"StreamDescription": {"Shards": [{"ShardId": "shard-1"}]}}

    def get_shard_iterator(self, **params: Any) -> dict[str, Any]:
        self.iterators_issued += 1
        after = params.get("SequenceNumber")
        start = (
            0
            if after is None
            else next(i for i, r in enumerate(self.records) if r["dynamodb"]["SequenceNumber"] == after) + 1
        )
        return {"ShardIterator": str(start)}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        start = int(ShardIterator)
        page = self.records[start : start + Limit]
        return {"Records": page, "NextShardIterator": str(start + len(page))}
