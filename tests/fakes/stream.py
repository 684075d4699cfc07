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
    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    def describe_stream(self, StreamArn: str) -> dict[str, Any]:
        return {"StreamDescription": {"Shards": [{"ShardId": "shard-1"}]}}

    def get_shard_iterator(self, **params: Any) -> dict[str, Any]:
        after = params.get("SequenceNumber")
        start = (
            0
            if after is None
            else next(i for i, r in enumerate(self.records) if r["dynamodb"]["SequenceNumber"] == after) + 1
        )
        return {"ShardIterator": str(start)}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        start = int(ShardIterator)
        return {"Records": self.records[start : start + Limit]}
