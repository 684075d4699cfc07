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
    """A log-normal latency fixed by its median and 99th percentile, in milliseconds."""

    p50_ms: float
    p99_ms: float
    source: str

    @property
    def sigma(self) -> float:
        return math.log(self.p99_ms / self.p50_ms) / _Z99

    def draw(self, rng: random.Random) -> float:
        return rng.lognormvariate(math.log(self.p50_ms), self.sigma)

    def mean(self) -> float:
        return self.p50_ms * math.exp(self.sigma**2 / 2)


ALEXDEBRIE = "alexdebrie/dynamodb-performance-testing (2020), from Lambda in-region"
SQS_GUIDE = "SQS developer guide: ~20 ms average from EC2 in-region; FAQ: tens to low hundreds of ms"

# Transactions: the published 5-item figures (ours writes 2 items; the original design too).
TRANSACT = Latency(25.3, 92.5, f"{ALEXDEBRIE}: TransactWriteItems, 5 items")
# Single-item reads and writes: the published PutItem figures (AWS claims single-digit ms for reads).
ITEM = Latency(7.55, 16.2, f"{ALEXDEBRIE}: PutItem")
# SQS: the guide's 20 ms as the median; a p99 of 100 ms, the FAQ's "low hundreds" taken at its lowest.
SQS = Latency(20.0, 100.0, SQS_GUIDE)

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
    def _after(context: dict[str, Any], **_: Any) -> None:
        until = context.pop("latency_model_until", None)
        if until is not None:
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


def physical_limit_ms(rounds: Sequence[tuple[Latency, int]], samples: int = 2000, seed: int = 7) -> dict[str, float]:
    """The latency of a booking that makes only the unavoidable sequential rounds.

    ``rounds`` lists (latency, calls at once): each round lasts as long as its slowest
    call; the rounds follow one another. Returns the median and p99 over ``samples``.
    """
    rng = random.Random(seed)
    totals = []
    for _ in range(samples):
        totals.append(sum(max(lat.draw(rng) for _ in range(max(1, n))) for lat, n in rounds if n > 0))
    totals.sort()
    return {"p50": statistics.median(totals), "p99": totals[int(0.99 * (len(totals) - 1))]}


def _booking_reads(t: dict[str, Latency]) -> list[tuple[Latency, int]]:
    """Before its transaction a booking reads the job and the application, then the nanny's calendar."""
    return [(t["TransactGetItems"], 1), (t["GetItem"], 1)]


def booking_limit_ms(applications: int, query_pages: int = 1, table: dict[str, Latency] | None = None) -> dict:
    """The limit for booking a job of ``applications``: its reads, the transaction, the query's pages
    one after the other, then every decline batch at once in one parallel round."""
    t = table or DEFAULT_TABLE
    batches = math.ceil(max(0, applications - 1) / 10)
    rounds = [*_booking_reads(t), (t["TransactWriteItems"], 1)]
    rounds += [(t["Query"], 1)] * query_pages
    rounds.append((t["SendMessageBatch"], batches))
    return physical_limit_ms(rounds)


def expected_booking_ms(
    applications: int, concurrency: int, query_pages: int = 1, table: dict[str, Latency] | None = None
) -> dict[str, float]:
    """The model's prediction for our algorithm with ``concurrency`` batches in flight at once."""
    t = table or DEFAULT_TABLE
    batches = math.ceil(max(0, applications - 1) / 10)
    rounds = [*_booking_reads(t), (t["TransactWriteItems"], 1)]
    rounds += [(t["Query"], 1)] * query_pages
    full, rest = divmod(batches, max(1, concurrency))
    rounds += [(t["SendMessageBatch"], concurrency)] * full
    if rest:
        rounds.append((t["SendMessageBatch"], rest))
    return physical_limit_ms(rounds)


def sources(table: dict[str, Latency] | None = None) -> dict[str, dict[str, Any]]:
    return {
        op: {"p50_ms": lat.p50_ms, "p99_ms": lat.p99_ms, "source": lat.source}
        for op, lat in (table or DEFAULT_TABLE).items()
    }
