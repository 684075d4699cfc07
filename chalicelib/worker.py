"""Decline worker: turns a Lambda SQS event into decline use cases. Knows nothing of Chalice."""

from __future__ import annotations

from typing import Any, Protocol

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

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
    def record_handler(record: SQSRecord) -> None:
        logger.append_keys(messageId=record.message_id)
        try:
            try:
                message = parse_message(record.body)
            except UnknownVersion as exc:
                if dead_letters is None:
                    raise
                # No retry can teach this code a newer version: park it now (sent
                # before this record is acknowledged, so it is never lost).
                dead_letters.park(record.body, str(exc))
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
            logger.exception("decline failed", extra={"receiveCount": record.attributes.approximate_receive_count})
            raise
        finally:
            logger.remove_keys(["messageId", "jobId", "applicationId"])

    # process_partial_response raises BatchProcessingError if every record failed.
    result = process_partial_response(
        event=event,
        record_handler=record_handler,
        processor=BatchProcessor(event_type=EventType.SQS),
        context=context,
    )
    failures = result.get("batchItemFailures") or []
    if failures and metrics is not None:
        metrics.count("DeclinesFailed", len(failures))
    if failures and not partial_responses:
        raise BatchFailed(f"{len(failures)} of {len(event.get('Records') or [])} declines failed")
    return result
