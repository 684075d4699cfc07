"""Part 6: what a booking and everything after it consume, measured, then priced.

In this process, against the stack's MiniStack: a job of N applications is booked
through the service, then every decline and the sweep run through the same use cases
the worker calls. Every DynamoDB call asks for ``ReturnConsumedCapacity=INDEXES``, so
the write and read units (table and each index) are the table's own answers, not an
estimate. The SQS sends are counted as made; what the queue's consumer costs (receives,
deletes, invocations) follows from the batch size. The rest is priced by ``bench.costs``.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.dataset import prepare_jobs
from bench.stack import Stack
from bench.stats import CallCounter
from chalicelib import bootstrap
from chalicelib.domain import Caller, Role
from chalicelib.observability import flush_metrics
from tools.token import local_user_id

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

    def _count(self, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        consumed = parsed.get("ConsumedCapacity")
        if not consumed:
            return
        kind = "read" if model.name in READS else "write"
        entries = consumed if isinstance(consumed, list) else [consumed]
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

    def take(self) -> dict[str, float]:
        with self._lock:
            out, self._units = dict(self._units), Counter()
        return out


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
        for application_id in job.declined:  # what the worker does with each decline message
            service.decline(job.job_id, application_id)
        declines = {"units": meter.take(), "calls": calls.take()}
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
