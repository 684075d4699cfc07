"""A model of AWS's call latencies, added to the bench process's boto3 calls.

On the emulator a call costs CPU, not a network round trip, which hides what the
booking design is for: few *sequential* calls. With the model attached, every AWS
call of the instrumented clients takes a latency drawn from published distributions
(sources in bench/README.md) instead of the emulator's own time:

- DynamoDB calls go to the emulator (the data must be real) and are then held until
  the drawn latency has passed; the emulator's own time counts inside it.
- SQS sends are answered by the model without reaching the emulator, after the drawn
  latency: on the emulator, a hundred batches sent at once queue behind one process,
  which no real queue does. Nothing consumes the bench's declines in part 1 anyway.

Everything here lives in the bench process and its clients (botocore events); the
service's code does not know it is being modelled.
"""

from __future__ import annotations

import math
import random
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.awsrequest import AWSResponse

_Z99 = 2.3263478740408408  # the standard normal's 99th percentile


@dataclass(frozen=True)
class Latency:
    """A log-normal latency fixed by its median and 99th percentile, in milliseconds.

    ``date`` is when the source measured (or, for an assumption, when it was made);
    ``assumed`` marks a figure no published measurement backs.
    """

    p50_ms: float
    p99_ms: float
    source: str
    date: str = ""
    assumed: bool = False

    @property
    def sigma(self) -> float:
        return math.log(self.p99_ms / self.p50_ms) / _Z99

    def draw(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.p50_ms), self.sigma)

    def mean(self) -> float:
        return self.p50_ms * math.exp(self.sigma**2 / 2)


ALEXDEBRIE = "alexdebrie/dynamodb-performance-testing, from Lambda in-region"
BITESIZED = 'bitesizedserverless.com, "Serverless messaging latency compared", in-region'

# Transactions: the published 5-item figures (ours writes 2 items; the original design too).
TRANSACT = Latency(25.3, 92.5, f"{ALEXDEBRIE}: TransactWriteItems, 5 items", "2020")
# Single-item reads and writes: the published PutItem figures (AWS claims single-digit ms for reads).
ITEM = Latency(7.55, 16.2, f"{ALEXDEBRIE}: PutItem", "2020")
# SQS: the measured send-to-consumer figures; a send's own answer comes no later than its delivery.
SQS = Latency(16.2, 105.0, f"{BITESIZED}: SQS to Lambda (p90 33.8 ms)", "n.d., read 2026-12")
# A query's answer grows with what it reads (before its filter): ScannedCount items of about
# 0.5 KB each at ~25 MB/s. No published figure; chosen so 1,000 items (one 1 MB page) add ~20 ms.
QUERY_MS_PER_ITEM_READ = 0.02
QUERY_PER_ITEM_SOURCE = "assumed: ~0.5 KB per item read at ~25 MB/s (no published figure)"

DEFAULT_TABLE: dict[str, Latency] = {
    "TransactWriteItems": TRANSACT,
    # No published figure for a two-item transactional read: taken as one single-item read.
    "TransactGetItems": ITEM,
    "Query": ITEM,
    "GetItem": ITEM,
    "PutItem": ITEM,
    "UpdateItem": ITEM,
    "SendMessage": SQS,
    "SendMessageBatch": SQS,
}
_ANSWERED_BY_MODEL = {"SendMessage", "SendMessageBatch"}


class LatencyModel:
    """Attach to boto3 clients; every modelled call then lasts a drawn latency."""

    def __init__(self, table: dict[str, Latency] | None = None, seed: int = 20261202) -> None:
        self.table = dict(table or DEFAULT_TABLE)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def _draw(self, operation: str) -> float | None:
        latency = self.table.get(operation)
        if latency is None:
            return None
        with self._lock:
            return latency.draw(self._rng) / 1000

    def attach(self, *clients: Any) -> LatencyModel:
        for client in clients:
            client.meta.events.register("before-parameter-build.*.*", self._keep_entry_ids)
            client.meta.events.register("before-call.*.*", self._before)
            client.meta.events.register("after-call.*.*", self._after)
        return self

    @staticmethod
    def _keep_entry_ids(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        # before-call sees the serialized request; the batch's entry ids are read here.
        context["latency_model_ids"] = [e["Id"] for e in params.get("Entries", [])]

    def _before(self, model: Any, context: dict[str, Any], **_: Any) -> Any:
        target = self._draw(model.name)
        if target is None:
            return None
        if model.name in _ANSWERED_BY_MODEL:
            time.sleep(target)
            return _sqs_answer(model.name, context.get("latency_model_ids", []))
        context["latency_model_until"] = time.perf_counter() + target
        return None

    @staticmethod
    def _after(context: dict[str, Any], parsed: dict[str, Any] | None = None, **_: Any) -> None:
        until = context.pop("latency_model_until", None)
        if until is not None:
            # A query takes longer the more items it reads (its filter does not make it cheaper).
            until += QUERY_MS_PER_ITEM_READ * int((parsed or {}).get("ScannedCount", 0)) / 1000
            remaining = until - time.perf_counter()
            if remaining > 0:
                time.sleep(remaining)


def _sqs_answer(operation: str, entry_ids: list[str]) -> tuple[AWSResponse, dict[str, Any]]:
    """What SQS answers to a send that succeeds (botocore takes it in place of the HTTP response)."""
    meta = {"ResponseMetadata": {"HTTPStatusCode": 200, "RetryAttempts": 0}}
    http = AWSResponse(None, 200, {}, None)
    if operation == "SendMessage":
        return http, {"MessageId": "modelled", "MD5OfMessageBody": "", **meta}
    successful = [{"Id": i, "MessageId": f"modelled-{i}", "MD5OfMessageBody": ""} for i in entry_ids]
    return http, {"Successful": successful, "Failed": [], **meta}


class _Shifted:
    """A latency plus a fixed time: a query that reads ``items`` takes longer by what they weigh."""

    def __init__(self, base: Latency, shift_ms: float) -> None:
        self._base, self._shift = base, shift_ms

    def draw(self, rng: random.Random) -> float:
        return self._base.draw(rng) + self._shift


class _InTurn:
    """Calls made one after another, taken as one: a booking's reads, then its transaction."""

    def __init__(self, *calls: Latency) -> None:
        self._calls = calls

    def draw(self, rng: random.Random) -> float:
        return sum(c.draw(rng) for c in self._calls)


Call = Latency | _Shifted | _InTurn


def rounds_ms(rounds: Sequence[Sequence[Call]], samples: int = 2000, seed: int = 7) -> dict[str, float]:
    """The latency of calls made in rounds: each round (calls at once) lasts as long as its slowest
    call; the rounds follow one another. Returns the median and p99 over ``samples``."""
    rng = random.Random(seed)
    totals = sorted(sum(max((c.draw(rng) for c in r), default=0.0) for r in rounds) for _ in range(samples))
    return {"p50": statistics.median(totals), "p99": totals[int(0.99 * (len(totals) - 1))]}


def _query(applications: int, t: dict[str, Latency]) -> _Shifted:
    return _Shifted(t["Query"], QUERY_MS_PER_ITEM_READ * (applications + 1))  # the job and its applications


def _batches(applications: int) -> int:
    """The declines of every application but the accepted one, and the sweep, ten to a batch."""
    return math.ceil(max(1, applications) / 10)


def _commit(t: dict[str, Latency]) -> _InTurn:
    """Before its transaction a booking reads the job and the application, then the nanny's calendar."""
    return _InTurn(t["TransactGetItems"], t["GetItem"], t["TransactWriteItems"])


def design_floor_ms(applications: int, table: dict[str, Latency] | None = None) -> dict[str, float]:
    """This design's floor for a job of ``applications``: its commit (the reads, then the
    transaction) and the index read at once, then every batch (the declines and the sweep)
    in one round."""
    t = table or DEFAULT_TABLE
    start = [_commit(t), _query(applications, t)]
    return rounds_ms([start, [t["SendMessageBatch"]] * _batches(applications)])


def any_design_floor_ms(table: dict[str, Latency] | None = None) -> dict[str, float]:
    """What any correct booking waits for: its transaction."""
    return rounds_ms([[(table or DEFAULT_TABLE)["TransactWriteItems"]]])


def expected_booking_ms(
    applications: int, concurrency: int, table: dict[str, Latency] | None = None
) -> dict[str, float]:
    """The model's prediction for our algorithm with ``concurrency`` batches in flight at once."""
    t = table or DEFAULT_TABLE
    rounds: list[list[Call]] = [[_commit(t), _query(applications, t)]]
    batches = _batches(applications)
    while batches > 0:
        rounds.append([t["SendMessageBatch"]] * min(batches, max(1, concurrency)))
        batches -= concurrency
    return rounds_ms(rounds)


def sources(table: dict[str, Latency] | None = None) -> dict[str, dict[str, Any]]:
    return {
        op: {"p50_ms": lat.p50_ms, "p99_ms": lat.p99_ms, "source": lat.source, "date": lat.date}
        for op, lat in (table or DEFAULT_TABLE).items()
    } | {"Query, per item read": {"ms": QUERY_MS_PER_ITEM_READ, "source": QUERY_PER_ITEM_SOURCE}}
