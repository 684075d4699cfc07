"""The cost of a booking and everything after it, per design, from bench/prices.json.

DynamoDB units come from part 6's measurement (``bench.booking_cost``): the booking, each
decline, the sweep, as the table answered them. The rest is counted from the designs'
shapes (``bench.aws_model``): SQS requests, Lambda invocations and GB-seconds from the
modelled durations, API Gateway, Step Functions. What other parts of the product add
after a booking, and is not on this branch's code, is *modelled* and listed in
``MODELLED_EXTRAS``: the stream consumer (one EventBridge event per status change, one
email per person with a receipt item, a second sweep when the job leaves OPEN). The
nanny's calendar item in the booking's transaction and the ``dueJobs`` index are on the
code measured, so in part 6's units.

Emails are counted and priced, but kept out of the headline figure: every design sends
the same ones, and at $0.10 per 1,000 they outweigh everything else ten to one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.aws_model import API_MEMORY_MB, ITEM

PRICES_FILE = Path(__file__).with_name("prices.json")
WORKER_MEMORY_MB = 256  # .chalice/config.json, decline_worker
WORKER_BATCH = 10  # app.py: the decline worker's batch_size
STREAM_BATCH = 100  # modelled: the stream consumer's batch size
STREAM_MEMORY_MB = 256  # modelled
# Modelled per-record times of work not on this branch (no published source: assumed).
SES_SEND_MS = 20.0
PUT_EVENTS_MS = 20.0
WORKER_CPU_MS_PER_RECORD = 5.0
SFN_MEMORY_MB = 64  # Express bills memory in 64 MB steps; a small workflow uses the first

MODELLED_EXTRAS = {
    "stream consumer": "one invocation per 100 records; one event per status change (N+1); one email per "
    "person (N+1) each with a receipt item (1 WRU, conditional put); a second sweep when the job leaves OPEN",
}


def load_prices(path: Path = PRICES_FILE) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _units(part: Mapping[str, Any], kind: str) -> float:
    return float((part.get("units") or {}).get(f"{kind}:total", 0.0))


def consumption(
    design: str, n: int, measured: Mapping[str, Any], handler_mean_ms: float, sends: int | None = None
) -> dict[str, float]:
    """What one booking of ``n`` applications consumes with ``design``, everything after it included.

    ``measured`` is part 6's entry for this n (our booking, declines, sweep); every design
    reads and writes the same items, so its DynamoDB units serve all three.
    """
    declines = n - 1
    booking, decl, sweep = measured["booking"], measured["declines"], measured["sweep"]
    stream_records = n + 1  # the job's status and each application's
    sweeps = 2 if design == "ours" else 1  # ours queues one itself; the stream consumer queues one for every design
    wru = _units(booking, "write") + _units(decl, "write") + sweeps * _units(sweep, "write")
    rru = _units(booking, "read") + _units(decl, "read") + sweeps * _units(sweep, "read")
    wru += stream_records  # modelled: the email receipts
    worker_invocations = math.ceil(declines / WORKER_BATCH) + sweeps
    # Ours sends batches of ten; the article's designs one SendMessage per decline. Plus the stream's sweep.
    ours_sends = sends if sends is not None else math.ceil(n / 10)
    sqs_sends = (ours_sends if design == "ours" else declines) + 1
    # The event source receives and deletes (in batches) what it hands the worker.
    sqs = sqs_sends + 2 * worker_invocations
    worker_ms = declines * (ITEM.mean() + WORKER_CPU_MS_PER_RECORD) + sweeps * (ITEM.mean() * 2)
    stream_invocations = math.ceil(stream_records / STREAM_BATCH)
    stream_ms = stream_records * (SES_SEND_MS + ITEM.mean()) + math.ceil(stream_records / 10) * PUT_EVENTS_MS
    out = {
        "dynamodb_write_request_unit": wru,
        "dynamodb_read_request_unit": rru,
        "sqs_request": sqs,
        "lambda_request": float(worker_invocations + stream_invocations),
        "lambda_gb_second": (worker_ms * WORKER_MEMORY_MB + stream_ms * STREAM_MEMORY_MB) / 1000 / 1024,
        "api_gateway_rest_request": 1.0,
        "eventbridge_custom_event": float(stream_records),
        "ses_email": float(stream_records),
    }
    if design == "express_workflow":
        out["stepfunctions_express_request"] = 1.0
        billed_s = math.ceil(handler_mean_ms / 100) * 0.1
        out["stepfunctions_express_gb_second"] = billed_s * SFN_MEMORY_MB / 1024
    else:
        out["lambda_request"] += 1.0  # the API function (the authorizer's answer is cached per token)
        out["lambda_gb_second"] += math.ceil(handler_mean_ms) / 1000 * API_MEMORY_MB / 1024
    return out


def price(used: Mapping[str, float], prices: Mapping[str, Any]) -> dict[str, Any]:
    """USD per 1,000 bookings, by line, with and without the emails."""
    table = prices["prices_usd"]
    lines = {k: 1000 * v * table[k]["price"] for k, v in used.items()}
    with_email = sum(lines.values())
    return {
        "per_1000_usd": with_email - lines.get("ses_email", 0.0),
        "per_1000_with_email_usd": with_email,
        "lines_per_1000_usd": lines,
    }


def cost_table(
    measured: Mapping[str, Any],
    model: Mapping[str, Mapping[str, Mapping[str, float]]],
    prices: Mapping[str, Any],
) -> dict[str, dict[str, Any]]:
    """``{design: {n: priced}}`` for every n part 6 measured and the model drew."""
    out: dict[str, dict[str, Any]] = {}
    for design in ("ours", "express_workflow", "seed_lambda"):
        per: dict[str, Any] = {}
        for key, entry in measured.items():
            drawn = model.get(design, {}).get(key)
            if drawn is None:
                continue
            sends = int(entry["booking"]["calls"].get("SendMessageBatch", 0)) or None
            used = consumption(design, int(key), entry, drawn["handler_mean"], sends)
            per[key] = price(used, prices) | {"consumed": used}
        out[design] = per
    return out
