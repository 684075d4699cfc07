"""Posting a job: its item and its listing entry, with or without the owner's idempotency key.

The first write of a job's life (to OPEN); the others are in ``transitions.py``.
"""

from __future__ import annotations

import time
from typing import Any

from chalicelib import items as item_shapes
from chalicelib.domain import ConcurrentUpdate, IdempotencyKeyReused, Job
from chalicelib.dynamo import Cancelled, Table, failed, reason_at

IDEMPOTENCY_TTL_SECONDS = 24 * 3600


class Postings:
    """Writes new jobs into one table."""

    def __init__(self, table: Table) -> None:
        self._table = table

    def put_job(self, job: Job) -> None:
        """Writes a new job and its listing entry. A botocore retry of a write that had committed finds its own item."""
        try:
            self._table.transact([self._new_job_put(job), self._listing_put(job)])
        except Cancelled as cancelled:
            reason = reason_at(cancelled.reasons, 0)
            old = (reason.get("Item") or self._table.get(item_shapes.job_key(job.job_id))) if failed(reason) else None
            # A fresh ULID cannot collide with another job: an item with our id and
            # creation time is ours (numbers come back normalised, so not the whole item).
            mine = item_shapes.serialize(item_shapes.job_item(job))
            if not old or any(old.get(name) != mine[name] for name in ("jobId", "owner", "createdAt")):
                raise ConcurrentUpdate("The request collided with another; retry.") from None
        # An item equal to ours: the first attempt committed, the retry is the same write.

    def put_job_once(self, job: Job, client_key: str, fingerprint: str) -> str:
        """Writes the job and binds the owner's idempotency key to it, atomically.

        Returns the id of the job the key is bound to: ``job.job_id`` when this call
        wrote it, or the job an earlier request with the same key and fingerprint
        created (within 24 h).
        """
        now = int(time.time())
        record = item_shapes.idempotency_item(
            job.owner, client_key, fingerprint, job.job_id, now + IDEMPOTENCY_TTL_SECONDS
        )
        key_put = {
            "Put": {
                "TableName": self._table.name,
                "Item": item_shapes.serialize(record),
                # TTL deletes lazily (up to days late): an expired record counts as absent.
                "ConditionExpression": "attribute_not_exists(PK) OR expiresAt < :now",
                "ExpressionAttributeValues": {":now": {"N": str(now)}},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
        try:
            self._table.transact([key_put, self._new_job_put(job), self._listing_put(job)])
            return job.job_id
        except Cancelled as cancelled:
            if not failed(cancelled.reasons[0]):
                raise ConcurrentUpdate("The request collided with another; retry.") from None
            old = cancelled.reasons[0].get("Item") or self._table.get(
                item_shapes.idempotency_key(job.owner, client_key)
            )
        existing = item_shapes.deserialize(old) if old else {}
        if existing.get("jobId") == job.job_id:
            return job.job_id  # our own write, committed by an attempt whose answer was lost
        if existing.get("fingerprint") != fingerprint:
            raise IdempotencyKeyReused("This Idempotency-Key was used with a different request.")
        return str(existing["jobId"])

    def _new_job_put(self, job: Job) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table.name,
                "Item": item_shapes.serialize(item_shapes.job_item(job)),
                "ConditionExpression": "attribute_not_exists(PK)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _listing_put(self, job: Job) -> dict[str, Any]:
        return {"Put": {"TableName": self._table.name, "Item": item_shapes.serialize(item_shapes.listing_item(job))}}
