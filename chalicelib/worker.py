"""Decline worker: turns a Lambda SQS event into decline use cases. Knows nothing of Chalice.

The partial batch answer is built here (a loop and a list) rather than by powertools'
batch utilities, whose import (every event data class) was a tenth of the worker's cold
start; it answers as they did: the failed records' ids, and a whole-batch failure when
every record failed.
"""

from __future__ import annotations

from typing import Any, Protocol

from chalicelib.booking import BookingService, Metrics
from chalicelib.declines import DeclineApplication, SweepJob, UnknownVersion, parse_message
from chalicelib.observability import logger


class DeadLetterSink(Protocol):
    def park(self, body: str, reason: str) -> None: ...


class BatchFailed(RuntimeError):
    """Raised to fail the whole invocation, so that SQS redelivers every record.

    Used where Lambda is not known to honour partial batch responses: returning
    ``batchItemFailures`` there would delete the failed records with the rest.
    """


def handle_decline_batch(
    event: dict[str, Any],
    context: Any,
    service: BookingService,
    *,
    partial_responses: bool,
    metrics: Metrics | None = None,
    dead_letters: DeadLetterSink | None = None,
) -> dict[str, Any]:
    def record_handler(record: dict[str, Any]) -> None:
        body = record.get("body") or ""
        logger.append_keys(messageId=record.get("messageId"))
        try:
            try:
                message = parse_message(body)
            except UnknownVersion as exc:
                if dead_letters is None:
                    raise
                # No retry can teach this code a newer version: park it now (sent
                # before this record is acknowledged, so it is never lost).
                dead_letters.park(body, str(exc))
                logger.error("message of unknown version moved to the dead-letter queue", extra={"reason": str(exc)})
                return
            if isinstance(message, SweepJob):
                logger.append_keys(jobId=message.job_id)
                declined = service.sweep(message.job_id)
                logger.info("sweep processed", extra={"declined": declined})
                return
            assert isinstance(message, DeclineApplication)
            logger.append_keys(jobId=message.job_id, applicationId=message.application_id)
            outcome = service.decline(message.job_id, message.application_id, message.reason)
            logger.info("decline processed", extra={"outcome": outcome.value})
        except Exception:
            receive_count = (record.get("attributes") or {}).get("ApproximateReceiveCount")
            logger.exception("decline failed", extra={"receiveCount": receive_count})
            raise
        finally:
            logger.remove_keys(["messageId", "jobId", "applicationId"])

    records = event.get("Records") or []
    failures = []
    for record in records:
        try:
            record_handler(record)
        except Exception:  # logged above; the record is reported failed, the rest go on
            failures.append({"itemIdentifier": record.get("messageId", "")})
    if failures and metrics is not None:
        metrics.count("DeclinesFailed", len(failures))
    if records and len(failures) == len(records):
        # Nothing succeeded: fail the invocation, so every record comes back (no partial answer needed).
        raise BatchFailed(f"All records failed: {len(failures)} of {len(records)} declines")
    if failures and not partial_responses:
        raise BatchFailed(f"{len(failures)} of {len(records)} declines failed")
    return {"batchItemFailures": failures}
