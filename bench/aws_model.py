"""A booking end to end on AWS's terms: what a user waits for, for each design, from calibrated figures.

``bench.latency_model`` times the service's own calls; a user also waits for API Gateway,
the Lambda invocation and the function's CPU, which runs on a share of a vCPU set by its
memory. This module adds those and draws whole bookings (Monte Carlo) for five designs:

- ``ours``: the index read beside the commit (the job and the application read together,
  then the nanny's calendar, then the transaction), then the declines and the sweep in
  batches of ten, ``concurrency`` batches at once (chalicelib/booking.py as it is);
- ``design_floor``: the same shape with every batch in one round: the slower of the
  commit and the query, then one round of sends;
- ``any_design_floor``: the transaction alone (what any correct booking must wait for);
- ``seed_lambda``: the article's Lambda algorithm: the query, the transaction, then one
  SendMessage per decline, in turn;
- ``express_workflow``: the article's Express workflow, synchronous behind API Gateway:
  the query, the transaction, a Map of one SendMessage per decline.

Every figure is in ``CALIBRATION`` with its source and date; ``assumed`` marks the few no
published measurement backs. The CPU of a booking is measured on this machine, turned into
yardsticks (see bench/yardstick.py) and charged on Lambda at the function's memory share.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.latency_model import (
    BITESIZED,
    ITEM,
    QUERY_MS_PER_ITEM_READ,
    QUERY_PER_ITEM_SOURCE,
    SQS,
    TRANSACT,
    Latency,
)

# Published by the original design's write-up for its load test (50 req/s for 60 s,
# 3000 requests each), on AWS: network round trips included. For scale, not comparable.
ORIGINAL_PUBLISHED = {
    "Lambda + SQS": {"requests": 3000, "p50_ms": 457.5, "p99_ms": 2723.0},
    "Express workflow": {"requests": 3000, "p50_ms": 343.8, "p99_ms": 928.8},
}
# The designs as latest.md names them.
DESIGN_LABELS = {
    "ours": "ours",
    "design_floor": "the design's floor",
    "any_design_floor": "any design's floor",
    "express_workflow": "article's Express workflow",
    "seed_lambda": "article's Lambda",
}
SIZES = (1, 5, 10, 100, 1000)
SAMPLES = 20_000

# REST API Gateway in front of a warm Lambda function: the request, the invocation, the answer.
API_GATEWAY = Latency(
    19.5, 58.5, f"{BITESIZED}: REST API Gateway adds 18-21 ms; p99 assumed 3x p50", "n.d., read 2026-12", assumed=True
)
# StartSyncExecution of an Express workflow, API Gateway's AWS integration in front of it.
SFN_EXPRESS_SYNC = Latency(77.3, 241.0, f"{BITESIZED}: Step Functions Express, synchronous", "n.d., read 2026-12")
# Not on the user's path: what the stream consumer waits for after a booking.
STREAM_TO_LAMBDA = Latency(213.0, 552.0, f"{BITESIZED}: DynamoDB Streams to Lambda", "n.d., read 2026-12")

LAMBDA_FULL_VCPU_MB = 1769  # AWS: at 1,769 MB a function has one vCPU; CPU share grows with memory
# Assumed: one Lambda vCPU runs the yardstick loop as fast as this machine did on its fast day.
REFERENCE_YARDSTICK_MS = 11.4
# Assumed: an inline Map runs up to 40 iterations at once (its documented practical ceiling).
SFN_MAP_CONCURRENCY = 40
SQS_BATCH = 10
CHALICE_CONFIG = Path(__file__).resolve().parent.parent / ".chalice" / "config.json"


def api_memory_mb(stage: str = "prod", config: Path = CHALICE_CONFIG) -> int:
    """The API function's memory in a stage, as .chalice/config.json gives it."""
    stages = json.loads(config.read_text(encoding="utf-8"))["stages"]
    return int(stages[stage]["lambda_functions"]["api_handler"]["lambda_memory_size"])


# On AWS's terms is in production: the model runs the API function at prod's memory (dev has less).
API_MEMORY_MB = api_memory_mb("prod")
MEMORY_SIZES_MB = (128, 256, 512, 1024, 1536, 1769)

# The CPU a booking of N applications takes in the service, in yardsticks, when no run measured it:
# a line through the run of 2026-12-02 (4.9 ms at N=1, 84.8 ms at N=1000, yardstick 11.4 ms).
DEFAULT_CPU_YARDSTICKS = (0.43, 0.0070)

CALIBRATION: dict[str, Latency] = {
    "DynamoDB TransactWriteItems": TRANSACT,
    "DynamoDB Query / GetItem / PutItem / UpdateItem; TransactGetItems (assumed the same)": ITEM,
    "SQS SendMessage / SendMessageBatch": SQS,
    "API Gateway (REST) + Lambda invocation, warm": API_GATEWAY,
    "Step Functions Express, synchronous start": SFN_EXPRESS_SYNC,
    "DynamoDB Streams to Lambda (after the answer)": STREAM_TO_LAMBDA,
}


def calibration_table() -> list[dict[str, Any]]:
    """Every figure the model uses, with its source and date."""
    rows = [
        {"figure": name, "p50_ms": lat.p50_ms, "p99_ms": lat.p99_ms, "source": lat.source, "date": lat.date}
        | {"assumed": lat.assumed}
        for name, lat in CALIBRATION.items()
    ]
    rows.append(
        {"figure": "Query, per item read", "ms": QUERY_MS_PER_ITEM_READ, "source": QUERY_PER_ITEM_SOURCE}
        | {"date": "2026-12", "assumed": True}
    )
    rows.append(
        {
            "figure": "Lambda CPU share",
            "value": f"memory / {LAMBDA_FULL_VCPU_MB} MB of one vCPU",
            "source": "AWS Lambda developer guide (memory and computing power)",
            "date": "read 2026-12",
            "assumed": False,
        }
    )
    rows.append(
        {
            "figure": "one Lambda vCPU, in yardsticks",
            "ms": REFERENCE_YARDSTICK_MS,
            "source": "assumed: the yardstick loop as on this machine's fast day (2026-12-02)",
            "date": "2026-12",
            "assumed": True,
        }
    )
    rows.append(
        {
            "figure": "Express Map concurrency",
            "value": SFN_MAP_CONCURRENCY,
            "source": "assumed: an inline Map's practical ceiling of 40 iterations at once",
            "date": "2026-12",
            "assumed": True,
        }
    )
    return rows


@dataclass(frozen=True)
class CpuProfile:
    """A booking's CPU in the service, in yardsticks, by applications per job."""

    by_size: Mapping[int, float]
    measured: bool

    @classmethod
    def default(cls) -> CpuProfile:
        a, b = DEFAULT_CPU_YARDSTICKS
        return cls({n: a + b * n for n in SIZES}, measured=False)

    @classmethod
    def from_run(cls, cpu_ms_by_size: Mapping[int, float], yardstick_ms: float) -> CpuProfile:
        """From the client CPU part 1 measured (ms on this machine) and the same run's yardstick."""
        measured = {n: ms / yardstick_ms for n, ms in cpu_ms_by_size.items()}
        fallback = cls.default().by_size
        return cls({n: measured.get(n, fallback.get(n, 0.0)) for n in {*SIZES, *measured}}, measured=True)

    def yardsticks(self, n: int) -> float:
        if n in self.by_size:
            return self.by_size[n]
        a, b = DEFAULT_CPU_YARDSTICKS
        return a + b * n

    def on_lambda_ms(self, n: int, memory_mb: int) -> float:
        return cpu_on_lambda_ms(self.yardsticks(n), memory_mb)


def cpu_on_lambda_ms(yardsticks: float, memory_mb: int) -> float:
    """CPU time in yardsticks as wall time on a function of ``memory_mb`` (one thread: at most one vCPU)."""
    share = min(1.0, memory_mb / LAMBDA_FULL_VCPU_MB)
    return yardsticks * REFERENCE_YARDSTICK_MS / share


def _round(lat: Latency, calls: int, rng: random.Random) -> float:
    """Calls made at once: the round lasts as long as the slowest."""
    return max((lat.draw(rng) for _ in range(calls)), default=0.0)


def _rounds(lat: Latency, calls: int, at_once: int, rng: random.Random) -> float:
    total, left = 0.0, calls
    while left > 0:
        total += _round(lat, min(left, at_once), rng)
        left -= at_once
    return total


def _query(n: int, rng: random.Random) -> float:
    return ITEM.draw(rng) + QUERY_MS_PER_ITEM_READ * (n + 1)  # the job and its n applications


def _commit(rng: random.Random) -> float:
    """A booking's reads (the job and the application at once, then the nanny's calendar), then its transaction."""
    return ITEM.draw(rng) + ITEM.draw(rng) + TRANSACT.draw(rng)


def _batches(n: int) -> int:
    """Ours: the sweep and the n-1 declines, ten to a batch."""
    return math.ceil(n / SQS_BATCH)


Draw = Callable[[int, random.Random], float]


def designs(cpu: CpuProfile, memory_mb: int = API_MEMORY_MB, concurrency: int = 10) -> dict[str, Draw]:
    """Each design's handler time (everything after API Gateway) for a job of n applications."""

    def ours(n: int, rng: random.Random) -> float:
        start = max(_commit(rng), _query(n, rng))
        return start + _rounds(SQS, _batches(n), concurrency, rng) + cpu.on_lambda_ms(n, memory_mb)

    def design_floor(n: int, rng: random.Random) -> float:
        start = max(_commit(rng), _query(n, rng))
        return start + _round(SQS, _batches(n), rng) + cpu.on_lambda_ms(n, memory_mb)

    def any_design_floor(n: int, rng: random.Random) -> float:
        return TRANSACT.draw(rng) + cpu.on_lambda_ms(1, memory_mb)

    def seed_lambda(n: int, rng: random.Random) -> float:
        sends = sum(SQS.draw(rng) for _ in range(n - 1))
        return _query(n, rng) + TRANSACT.draw(rng) + sends + cpu.on_lambda_ms(n, memory_mb)

    def express_workflow(n: int, rng: random.Random) -> float:
        # No function: the states call DynamoDB and SQS themselves (aws-sdk / native integrations).
        steps = _query(n, rng) + TRANSACT.draw(rng) + _rounds(SQS, n - 1, SFN_MAP_CONCURRENCY, rng)
        return SFN_EXPRESS_SYNC.draw(rng) + steps

    return {
        "ours": ours,
        "design_floor": design_floor,
        "any_design_floor": any_design_floor,
        "seed_lambda": seed_lambda,
        "express_workflow": express_workflow,
    }


def _percentiles(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "p50": samples[len(samples) // 2],
        "p99": samples[int(0.99 * (len(samples) - 1))],
        "mean": sum(samples) / len(samples),
    }


def simulate(
    cpu: CpuProfile,
    sizes: tuple[int, ...] = SIZES,
    samples: int = SAMPLES,
    memory_mb: int = API_MEMORY_MB,
    seed: int = 20261204,
) -> dict[str, dict[str, dict[str, float]]]:
    """End to end (API Gateway included) and handler-only figures, per design and size.

    Returns ``{design: {str(n): {"p50", "p99", "mean", "handler_mean"}}}``.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, draw in designs(cpu, memory_mb).items():
        rng = random.Random(f"{seed}-{name}")
        per_size: dict[str, dict[str, float]] = {}
        for n in sizes:
            # The article's algorithms make n calls per booking: fewer draws at large n keep this quick
            # (still at least 100, so the p99 is one).
            count = samples if name in ("ours", "design_floor", "any_design_floor") or n < 100 else samples // n * 10
            count = max(count, 200)
            handler = [draw(n, rng) for _ in range(count)]
            total = [h + API_GATEWAY.draw(rng) for h in handler]
            per_size[str(n)] = _percentiles(total) | {"handler_mean": sum(handler) / len(handler)}
        out[name] = per_size
    return out


def ours_from_measurement(
    measured_ms: list[float], cpu_here_ms: float, yardstick_ms: float, memory_mb: int = API_MEMORY_MB, seed: int = 5
) -> dict[str, float]:
    """Our measured bookings (real code, modelled calls) made end to end: the bench process's CPU
    taken out, the function's CPU at its memory put in, an API Gateway draw added to each."""
    rng = random.Random(seed)
    on_lambda = cpu_on_lambda_ms(cpu_here_ms / yardstick_ms, memory_mb)
    handler = [max(0.0, ms - cpu_here_ms) + on_lambda for ms in measured_ms]
    total = [h + API_GATEWAY.draw(rng) for h in handler]
    out = _percentiles(total) | {"handler_mean": sum(handler) / len(handler), "bookings": len(total)}
    if len(total) < 100:  # a p99 needs 100 samples: below that, the slowest is all we know
        out["max"] = out.pop("p99")
        out["max"] = max(total)
    return out
