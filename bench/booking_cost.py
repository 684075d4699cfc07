"""Part 6: what a booking and everything after it consume, measured, then priced.

In this process, against the stack's MiniStack: a job of N applications is booked
through the service, then every decline and the sweep run through the same use cases
the worker calls. Every DynamoDB call asks for ``ReturnConsumedCapacity=INDEXES``, so
the write units (table and each index) are the table's own answers, not an estimate.
Reads are not: MiniStack bills every Query 0.5 (1 if consistent) units whatever it reads,
where DynamoDB bills what the query read before its filter, by 4 KB; so a query's read
units are sized here from the items it answered, scaled to its ScannedCount (the emulator's
figure is kept as ``read:reported``). The SQS sends are counted as made; what the queue's consumer costs (receives,
deletes, invocations) follows from the batch size. The rest is priced by ``bench.costs``.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.dataset import prepare_jobs
from bench.stack import Stack
from bench.stats import CallCounter
from chalicelib import bootstrap
from chalicelib.domain import Caller, DeclineOutcome, Reason, Role
from chalicelib.observability import flush_metrics
from tools.local.tokens import local_user_id

SIZES = (5, 100, 1000)
READS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


class CapacityMeter:
    """Adds ReturnConsumedCapacity=INDEXES to every DynamoDB call and sums the answers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._units: Counter[str] = Counter()

    def attach(self, client: Any) -> CapacityMeter:
        client.meta.events.register("provide-client-params.dynamodb.*", self._ask)
        client.meta.events.register("after-call.dynamodb.*", self._count)
        return self

    @staticmethod
    def _ask(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in READS | WRITES:
            params.setdefault("ReturnConsumedCapacity", "INDEXES")

    def _count(self, model: Any, parsed: dict[str, Any], params: dict[str, Any] | None = None, **_: Any) -> None:
        consumed = parsed.get("ConsumedCapacity")
        if not consumed:
            return
        kind = "read" if model.name in READS else "write"
        entries = consumed if isinstance(consumed, list) else [consumed]
        if model.name in ("Query", "Scan"):
            self._count_sized_read(parsed, entries, consistent=bool((params or {}).get("ConsistentRead")))
            return
        with self._lock:
            for entry in entries:
                self._units[f"{kind}:total"] += float(entry.get("CapacityUnits") or 0)
                table = (entry.get("Table") or {}).get("CapacityUnits")
                if table is None:  # transactions report the table's share as Read/WriteCapacityUnits
                    table = entry.get("WriteCapacityUnits" if kind == "write" else "ReadCapacityUnits")
                self._units[f"{kind}:table"] += float(table or 0)
                for index, used in (entry.get("GlobalSecondaryIndexes") or {}).items():
                    self._units[f"{kind}:{index}"] += float(used.get("CapacityUnits") or 0)
                self._units[f"{kind}:{model.name}"] += float(entry.get("CapacityUnits") or 0)

    def _count_sized_read(self, parsed: dict[str, Any], entries: list[dict[str, Any]], *, consistent: bool) -> None:
        answered = parsed.get("Items") or []
        size = sum(item_bytes(i) for i in answered)
        scanned = int(parsed.get("ScannedCount", len(answered)))
        if answered and scanned > len(answered):
            size = size * scanned / len(answered)  # what the filter dropped, at the answered items' mean size
        units = max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)
        where = next(iter(entries[0].get("GlobalSecondaryIndexes") or {}), "table")
        with self._lock:
            self._units["read:reported"] += sum(float(e.get("CapacityUnits") or 0) for e in entries)
            self._units["read:total"] += units
            self._units[f"read:{where}"] += units
            self._units["read:Query"] += units

    def take(self) -> dict[str, float]:
        with self._lock:
            out, self._units = dict(self._units), Counter()
        return out


def item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it: each attribute's name and value, in bytes."""
    return sum(len(name.encode()) + _value_bytes(value) for name, value in item.items())


def _value_bytes(value: dict[str, Any]) -> int:
    (kind, v), *_ = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return len(v.lstrip("-").replace(".", "")) // 2 + 1
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + item_bytes(v)
    if kind == "L":
        return 3 + sum(1 + _value_bytes(x) for x in v)
    return sum(len(str(x)) for x in v)  # sets


def measure(stack: Stack, say: Callable[[str], None], sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    """Units and calls of one booking per size, split into the booking, the declines and the sweep."""
    bootstrap.reset()
    dynamodb, sqs = bootstrap.dynamodb_client(), bootstrap.sqs_client()
    service = bootstrap.service()
    meter = CapacityMeter().attach(dynamodb)
    calls = CallCounter().attach(dynamodb, sqs)
    owner = "bench-p6-parent"
    caller = Caller(user_id=local_user_id(owner), username=owner, roles=frozenset({Role.PARENT}))
    out: dict[str, Any] = {}
    for n in sizes:
        [job] = prepare_jobs(stack.client("dynamodb"), stack.table, 1, n, [owner], f"p6-n{n}")
        meter.take()
        calls.take()
        queued = service.book(caller, job.job_id, job.accepted).declines_queued
        booking = {"units": meter.take(), "calls": calls.take(), "declines_queued": queued}
        applied = 0
        for application_id in job.declined:  # what the worker does with each decline message
            applied += service.decline(job.job_id, application_id, Reason.JOB_BOOKED) is DeclineOutcome.DECLINED
        declines = {"units": meter.take(), "calls": calls.take(), "applied": applied}
        if 0 < applied < len(job.declined):
            # The stack's own stream consumer queues a sweep of the closed job, and its worker
            # may decline some first: each decline costs the same, so count them all at the
            # measured rate (what a decline refused by its condition costs is left out).
            scale = len(job.declined) / applied
            declines["units"] = {k: v * scale for k, v in declines["units"].items()}
            declines["declined_by_the_stack"] = len(job.declined) - applied
        service.sweep(job.job_id)  # the booking's delayed sweep, which finds nothing left
        sweep = {"units": meter.take(), "calls": calls.take()}
        flush_metrics()
        out[str(n)] = {"applications": n, "booking": booking, "declines": declines, "sweep": sweep}
        say(
            f"  N={n}: booking {booking['units'].get('write:total', 0):g} WRU "
            f"{booking['units'].get('read:total', 0):g} RRU, declines {declines['units'].get('write:total', 0):g} WRU, "
            f"sweep {sweep['units'].get('read:total', 0):g} RRU; sends {booking['calls'].get('SendMessageBatch', 0)}"
        )
    return {"sizes": out}
