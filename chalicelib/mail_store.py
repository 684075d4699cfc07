"""What the stream and the mailer read and write in the table: a job's owner, the context
of an email, and the receipts that make each email go out once.

Part of ``DynamoStore`` (``store.py``), as ``transitions.py`` is; keys come from ``items.py``,
the calls go through ``dynamo.Table``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from chalicelib import items as it
from chalicelib.dynamo import Table, error_code
from chalicelib.mail import ClaimState, ContextKey, MailContext, Person

# Receipts outlive any redelivery: a stream record lives 24 h, an SQS message 4 days.
MAIL_RECEIPT_TTL_SECONDS = 14 * 24 * 3600

_s = it.s


def _text(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name, {}).get("S")
    return value or None


def _context(job: dict[str, Any] | None, app: dict[str, Any] | None, application_id: str | None) -> MailContext | None:
    """None when the job, or the application the event names, does not exist."""
    if not job or (application_id is not None and not app):
        return None
    applicant = None
    if app:
        applicant = Person(_text(app, "applicant"), _text(app, "applicantName"), _text(app, "applicantEmail"))
    return MailContext(
        title=_text(job, "title") or "",
        job_status=_text(job, "status") or "",
        starts_at=_text(job, "startsAt") or "",
        owner=Person(_text(job, "owner"), _text(job, "ownerName"), _text(job, "ownerEmail")),
        applicant=applicant,
    )


class MailRecords:
    """Reads and writes a job's owner, an email's context and its receipts in one table."""

    def __init__(self, table: Table) -> None:
        self._table = table

    def owner_of(self, job_id: str) -> str | None:
        item = self._table.get(it.job_key(job_id))
        return _text(item, "owner") if item else None

    def mail_context(self, job_id: str, application_id: str | None) -> MailContext | None:
        job = self._table.get(it.job_key(job_id))
        app = self._table.get(it.application_key(job_id, application_id)) if job and application_id else None
        return _context(job, app, application_id)

    def mail_contexts(self, events: Iterable[ContextKey]) -> dict[ContextKey, MailContext | None]:
        """The contexts of many emails from one read of every job and application they name
        (BatchGetItem): a batch of a booking's events names one job and its applications."""
        wanted = list(dict.fromkeys(events))
        keys = [it.job_key(job_id) for job_id in dict.fromkeys(j for j, _ in wanted)]
        keys += [it.application_key(j, a) for j, a in wanted if a is not None]
        items = {it.primary_key(item): item for item in self._table.batch_get(keys)}
        contexts: dict[ContextKey, MailContext | None] = {}
        for job_id, application_id in wanted:
            job = items.get(it.primary_key(it.job_key(job_id)))
            app = items.get(it.primary_key(it.application_key(job_id, application_id))) if application_id else None
            contexts[(job_id, application_id)] = _context(job, app, application_id)
        return contexts

    def claim_mail(self, event_id: str, recipient: str, *, lease_seconds: int) -> ClaimState:
        now = int(time.time())
        try:
            self._table.api_call(
                "put_item",
                TableName=self._table.name,
                Item={
                    **it.mail_receipt_key(event_id, recipient),
                    "type": _s("MAIL_RECEIPT"),
                    "state": _s("SENDING"),
                    "claimedUntil": {"N": str(now + lease_seconds)},
                    "expiresAt": {"N": str(now + MAIL_RECEIPT_TTL_SECONDS)},
                },
                # Free, or a claim whose holder died before sending (its lease is over).
                ConditionExpression="attribute_not_exists(PK) OR (#state = :sending AND claimedUntil < :now)",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":sending": _s("SENDING"), ":now": {"N": str(now)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            # ReturnValuesOnConditionCheckFailure puts the item in the error (not in botocore's stubs).
            old = exc.response.get("Item")
            state = _text(old, "state") if isinstance(old, dict) else None
            return ClaimState.IN_FLIGHT if state == "SENDING" else ClaimState.SENT
        return ClaimState.CLAIMED

    def mark_mail_sent(self, event_id: str, recipient: str) -> None:
        self._table.api_call(
            "update_item",
            TableName=self._table.name,
            Key=it.mail_receipt_key(event_id, recipient),
            UpdateExpression="SET #state = :outcome REMOVE claimedUntil",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={":outcome": _s("SENT")},
        )

    def release_mail(self, event_id: str, recipient: str) -> None:
        """Gives a claim back after a failed send, so that the retry need not wait for the lease."""
        try:
            self._table.api_call(
                "delete_item",
                TableName=self._table.name,
                Key=it.mail_receipt_key(event_id, recipient),
                ConditionExpression="#state = :sending",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":sending": _s("SENDING")},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
