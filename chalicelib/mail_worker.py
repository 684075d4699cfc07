"""Notification worker: turns a Lambda SQS event of bus events into emails. Knows nothing of Chalice.

Each SQS message is one EventBridge event, as the bus's rule delivers it (the domain
event in ``detail``). A message that is not such an event fails; after the queue's
``maxReceiveCount`` receives it rests in the notifications dead-letter queue.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib.booking import Metrics
from chalicelib.events import DomainEvent, InvalidEvent
from chalicelib.mail import ContextKey, MailContext, Mailer
from chalicelib.observability import logger
from chalicelib.worker import BatchFailed


def event_of_message(body: str) -> DomainEvent:
    try:
        envelope = json.loads(body)
    except ValueError as exc:
        raise InvalidEvent("message body is not JSON") from exc
    if not isinstance(envelope, dict):
        raise InvalidEvent("message body is not an object")
    return DomainEvent.from_detail(envelope.get("detail"))


def _prefetch(event: dict[str, Any], mailer: Mailer) -> dict[ContextKey, MailContext | None]:
    """Every context the batch's emails need, in one read; a record that is not an event is
    left to fail on its own, and a read that fails leaves each record to read its own."""
    events = []
    for record in event.get("Records") or []:
        try:
            events.append(event_of_message(record.get("body") or ""))
        except InvalidEvent:
            continue
    try:
        return mailer.prefetch(events)
    except Exception:
        logger.warning("reading the batch's mail contexts failed; each email reads its own", exc_info=True)
        return {}


def handle_mail_batch(
    event: dict[str, Any],
    context: Any,
    mailer: Mailer,
    *,
    partial_responses: bool,
    metrics: Metrics | None = None,
) -> PartialItemFailureResponse:
    contexts = _prefetch(event, mailer)

    def record_handler(record: SQSRecord) -> None:
        logger.append_keys(messageId=record.message_id)
        try:
            domain_event = event_of_message(record.body)
            logger.append_keys(eventId=domain_event.event_id, jobId=domain_event.job_id)
            mailer.handle(domain_event, contexts)
        except Exception:
            logger.exception("notification failed", extra={"receiveCount": record.attributes.approximate_receive_count})
            raise
        finally:
            logger.remove_keys(["messageId", "eventId", "jobId"])

    result = process_partial_response(
        event=event,
        record_handler=record_handler,
        processor=BatchProcessor(event_type=EventType.SQS),
        context=context,
    )
    failures = result.get("batchItemFailures") or []
    if failures and metrics is not None:
        metrics.count("NotificationsFailed", len(failures))
    if failures and not partial_responses:
        raise BatchFailed(f"{len(failures)} of {len(event.get('Records') or [])} notifications failed")
    return result
