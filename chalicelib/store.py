"""Single-table DynamoDB adapter: the only module that builds requests from items and keys.

Key and item shapes live in ``items.py``, the raw calls in ``dynamo.py`` (see
docs/architecture.md#data-model). Everything read by id or by job (a job, its applications) is read from
the base table, strongly consistent; indexes serve only the listings and the booking's
first pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chalicelib import items as it
from chalicelib.domain import (
    AlreadyApplied,
    Application,
    ApplicationStatus,
    ConcurrentUpdate,
    IdempotencyKeyReused,
    Job,
    JobNotFound,
    JobStatus,
    Page,
    is_valid_id,
)
from chalicelib.dynamo import TRANSACTION_DEADLINE_SECONDS, Cancelled, Table, failed, invalid_cursor, reason_at
from chalicelib.mail_store import MailRecords
from chalicelib.shards import EXHAUSTED, merge_newest_first
from chalicelib.transitions import Transitions, refuse_not_open

IDEMPOTENCY_TTL_SECONDS = 24 * 3600

_s = it.s
_serialize = it.serialize
_deserialize = it.deserialize


class DynamoStore(Transitions, MailRecords):
    """Reads and writes jobs and applications in one table."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        query_page_size: int | None = None,
        *,
        transaction_deadline_seconds: float = TRANSACTION_DEADLINE_SECONDS,
    ) -> None:
        self._t = Table(client, table_name, query_page_size, transaction_deadline_seconds=transaction_deadline_seconds)
        self._table = table_name
        self._page_size = query_page_size
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # ----------------------------------------------------------------- jobs

    def put_job(self, job: Job) -> None:
        """Writes a new job and its listing entry. A botocore retry of a write that had committed finds its own item."""
        try:
            self._t.transact([self._new_job_put(job), self._listing_put(job)])
        except Cancelled as cancelled:
            reason = reason_at(cancelled.reasons, 0)
            old = (reason.get("Item") or self._t.get(it.job_key(job.job_id))) if failed(reason) else None
            # A fresh ULID cannot collide with another job: an item with our id and
            # creation time is ours (numbers come back normalised, so not the whole item).
            mine = _serialize(it.job_item(job))
            if not old or any(old.get(k) != mine[k] for k in ("jobId", "owner", "createdAt")):
                raise ConcurrentUpdate("The request collided with another; retry.") from None
        # An item equal to ours: the first attempt committed, the retry is the same write.

    def _new_job_put(self, job: Job) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table,
                "Item": _serialize(it.job_item(job)),
                "ConditionExpression": "attribute_not_exists(PK)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _listing_put(self, job: Job) -> dict[str, Any]:
        return {"Put": {"TableName": self._table, "Item": _serialize(it.listing_item(job))}}

    def put_job_once(self, job: Job, client_key: str, fingerprint: str) -> str:
        """Writes the job and binds the owner's idempotency key to it, atomically.

        Returns the id of the job the key is bound to: ``job.job_id`` when this call
        wrote it, or the job an earlier request with the same key and fingerprint
        created (within 24 h).
        """
        now = int(time.time())
        record = it.idempotency_item(job.owner, client_key, fingerprint, job.job_id, now + IDEMPOTENCY_TTL_SECONDS)
        key_item = {
            "Put": {
                "TableName": self._table,
                "Item": _serialize(record),
                # TTL deletes lazily (up to days late): an expired record counts as absent.
                "ConditionExpression": "attribute_not_exists(PK) OR expiresAt < :now",
                "ExpressionAttributeValues": {":now": {"N": str(now)}},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
        try:
            self._t.transact([key_item, self._new_job_put(job), self._listing_put(job)])
            return job.job_id
        except Cancelled as cancelled:
            if not failed(cancelled.reasons[0]):
                raise ConcurrentUpdate("The request collided with another; retry.") from None
            old = cancelled.reasons[0].get("Item") or self._t.get(it.idempotency_key(job.owner, client_key))
        existing = _deserialize(old) if old else {}
        if existing.get("jobId") == job.job_id:
            return job.job_id  # our own write, committed by an attempt whose answer was lost
        if existing.get("fingerprint") != fingerprint:
            raise IdempotencyKeyReused("This Idempotency-Key was used with a different request.")
        return str(existing["jobId"])

    def get_job(self, job_id: str) -> Job | None:
        item = self._t.get(it.job_key(job_id))
        return it.job_from(_deserialize(item)) if item else None

    def list_open_jobs(self, limit: int, cursor: dict | None, now: str) -> Page[Job]:
        """OPEN jobs not started by ``now``, newest first, merged from every shard of ``openJobs``."""

        def fetch(shard: int, after: str | None, count: int) -> tuple[list[tuple[str, Job]], str | None]:
            return self._open_shard_page(shard, after, count, now)

        page = merge_newest_first(_open_positions(cursor), it.OPEN_JOB_SHARDS, limit, fetch, self._map_parallel)
        if page.cursor is None:
            return Page(items=page.items)
        return Page(items=page.items, cursor={"shards": {str(n): p for n, p in sorted(page.cursor.items())}})

    def _open_shard_page(
        self, shard: int, after: str | None, limit: int, now: str
    ) -> tuple[list[tuple[str, Job]], str | None]:
        params: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": it.OPEN_JOBS_INDEX,
            "KeyConditionExpression": "GSI3PK = :pk",
            # A job leaves the listing when it starts: hidden here at once, deleted by TTL later.
            "FilterExpression": "startsAt > :now",
            "ExpressionAttributeValues": {":pk": _s(it.open_partition(shard)), ":now": _s(now)},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if after is not None:
            params["ExclusiveStartKey"] = it.open_listing_key(after)
        resp = self._t.api_call("query", **params)
        found = [(raw["jobId"]["S"], it.job_from(_deserialize(raw))) for raw in resp.get("Items") or []]
        last = resp.get("LastEvaluatedKey")
        return found, it.job_id_of_sort(last["GSI3SK"]["S"]) if last else None

    def _map_parallel(self, fn: Callable[[int], Any], args: Sequence[int]) -> list[Any]:
        """The shards' first reads at once: a page costs one round trip, not one per shard."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=it.OPEN_JOB_SHARDS, thread_name_prefix="shards")
        return list(self._pool.map(fn, args))

    def list_jobs_of_owner(self, owner: str, limit: int, cursor: dict | None) -> Page[Job]:
        return self._t.page(
            _converter(it.job_from),
            limit,
            cursor,
            index=it.BY_USER_INDEX,
            key_names=("GSI2PK", "GSI2SK"),
            partition=it.owner_partition(owner),
            sort_prefix=it.JOB_PREFIX,
            newest_first=True,
        )

    # --------------------------------------------------------- applications

    def add_application(self, job: Job, app: Application) -> None:
        """Writes the application only while the job is OPEN and not started, and once per nanny and round."""
        now = app.created_at
        try:
            self._t.transact(
                [
                    {
                        "ConditionCheck": {
                            "TableName": self._table,
                            "Key": it.job_key(job.job_id),
                            # Checked in the write, not only by the read before it: a late request cannot
                            # slip in. The round read too: the guard below is written for that round.
                            "ConditionExpression": f"#status = :open AND startsAt > :now AND {_round_is(job.round)}",
                            "ExpressionAttributeNames": {"#status": "status", "#round": "round"},
                            "ExpressionAttributeValues": {
                                ":open": _s(JobStatus.OPEN.value),
                                ":now": _s(now),
                                ":round": {"N": str(job.round)},
                            },
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": _serialize(it.guard_item(app, job.round)),
                            # One application per nanny and round: after a booked nanny backed out
                            # (a new round), the applicants of the earlier round may apply again.
                            "ConditionExpression": "attribute_not_exists(PK) OR #round < :round",
                            "ExpressionAttributeNames": {"#round": "round"},
                            "ExpressionAttributeValues": {":round": {"N": str(job.round)}},
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": _serialize(it.application_item(app)),
                            "ConditionExpression": "attribute_not_exists(PK)",
                        }
                    },
                ],
            )
        except Cancelled as cancelled:
            job_reason, guard_reason = reason_at(cancelled.reasons, 0), reason_at(cancelled.reasons, 1)
            if failed(guard_reason):
                guard = guard_reason.get("Item") or self._t.get(it.guard_key(app.job_id, app.applicant))
                if guard and guard.get("applicationId", {}).get("S") == app.application_id:
                    return  # our own write, committed by an attempt whose answer was lost
            if failed(job_reason):
                old = job_reason.get("Item") or self._t.get(it.job_key(job.job_id))
                if not old:
                    raise JobNotFound("Job not found.") from None
                refuse_not_open(it.job_from(_deserialize(old)), now, "applications")
            if failed(guard_reason):
                raise AlreadyApplied("You have already applied to this job.") from None
            raise ConcurrentUpdate("The job changed while applying; retry.") from None

    def get_application(self, job_id: str, application_id: str) -> Application | None:
        item = self._t.get(it.application_key(job_id, application_id))
        return it.application_from(_deserialize(item)) if item else None

    def list_applications(self, job_id: str, limit: int, cursor: dict | None) -> Page[Application]:
        return self._t.page(
            _converter(it.application_from),
            limit,
            cursor,
            index=None,
            key_names=("PK", "SK"),
            partition=it.job_partition(job_id),
            sort_prefix=it.APPLICATION_PREFIX,
            newest_first=False,
        )

    def list_applications_of_applicant(self, user: str, limit: int, cursor: dict | None) -> Page[Application]:
        return self._t.page(
            _converter(it.application_from),
            limit,
            cursor,
            index=it.BY_USER_INDEX,
            key_names=("GSI2PK", "GSI2SK"),
            partition=it.applicant_partition(user),
            sort_prefix=it.APPLICATION_PREFIX,
            newest_first=True,
        )

    def job_with_pending_applications(self, job_id: str, *, consistent: bool = False) -> tuple[Job | None, list[str]]:
        """The job and its PENDING applications, every page.

        By default through the ``jobApplications`` index, which may lag: it may miss
        a recent application, or show a stale status. ``consistent=True`` reads the
        job's own partition in the base table instead, and misses nothing.
        """
        params: dict[str, Any] = {
            "TableName": self._table,
            # DynamoDB refuses filters on key attributes: match on `type`.
            "FilterExpression": "#type = :job OR #status = :pending",
            "ExpressionAttributeNames": {"#type": "type", "#status": "status"},
            "ExpressionAttributeValues": {
                ":pk": _s(it.job_partition(job_id)),
                ":job": _s("JOB"),
                ":pending": _s(ApplicationStatus.PENDING.value),
            },
        }
        if consistent:
            params.update(KeyConditionExpression="PK = :pk", ConsistentRead=True)
        else:
            params.update(KeyConditionExpression="GSI1PK = :pk", IndexName=it.JOB_APPLICATIONS_INDEX)
        if self._page_size:
            params["Limit"] = self._page_size
        job: Job | None = None
        pending: list[str] = []
        for raw in self._t.read_all_pages("query", params):
            if raw["type"]["S"] == "JOB":
                job = it.job_from(_deserialize(raw))
            else:
                pending.append(raw["applicationId"]["S"])
        return job, pending

    def closed_jobs(self, page_size: int = 500) -> Iterator[Job]:
        """Every job out of OPEN: CLOSED, CANCELLED, EXPIRED, COMPLETED (none may keep a PENDING
        application), by a filtered scan: for operations tools, not request paths."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "#type = :job AND #status IN (:closed, :cancelled, :expired, :completed)",
            "ExpressionAttributeNames": {"#type": "type", "#status": "status"},
            "ExpressionAttributeValues": {
                ":job": _s("JOB"),
                ":closed": _s(JobStatus.CLOSED.value),
                ":cancelled": _s(JobStatus.CANCELLED.value),
                ":expired": _s(JobStatus.EXPIRED.value),
                ":completed": _s(JobStatus.COMPLETED.value),
            },
            "Limit": page_size,
        }
        for raw in self._t.read_all_pages("scan", params):
            yield it.job_from(_deserialize(raw))


def _round_is(round_: int) -> str:
    # A job that never reopened has no round attribute.
    return "#round = :round" if round_ else "(attribute_not_exists(#round) OR #round = :round)"


def _converter(entity_from: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    return lambda raw: entity_from(_deserialize(raw))


def _open_positions(cursor: dict | None) -> dict[int, str]:
    """Each shard's position in a cursor of the open-jobs listing; only what a page could have issued."""
    if cursor is None:
        return {}
    shards = cursor.get("shards") if isinstance(cursor, dict) and set(cursor) == {"shards"} else None
    if not isinstance(shards, dict) or not shards:
        raise invalid_cursor()
    positions: dict[int, str] = {}
    for name, position in shards.items():
        if not (isinstance(name, str) and name.isdigit() and int(name) < it.OPEN_JOB_SHARDS):
            raise invalid_cursor()
        shard = int(name)
        # A resume point must be a job this very shard could have returned.
        if position != EXHAUSTED and not (is_valid_id(position) and it.open_shard(position) == shard):
            raise invalid_cursor()
        positions[shard] = position
    return positions
