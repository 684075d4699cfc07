"""What the store reads: jobs and applications by id, the listings, a job's pending
applications, and the jobs due for settling.

Everything read by id or by job (a job, its applications) is read from the base table,
strongly consistent; indexes serve only the listings and the booking's first pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from chalicelib import items as item_shapes
from chalicelib.domain import Application, ApplicationStatus, Cursor, Job, JobStatus, Page, is_valid_id
from chalicelib.dynamo import Table, invalid_cursor
from chalicelib.shards import EXHAUSTED, merge_newest_first

T = TypeVar("T")


class Reads:
    """Reads jobs and applications from one table."""

    def __init__(self, table: Table) -> None:
        self._table = table
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # ----------------------------------------------------------------- jobs

    def get_job(self, job_id: str) -> Job | None:
        raw = self._table.get(item_shapes.job_key(job_id))
        return item_shapes.job_from(item_shapes.deserialize(raw)) if raw else None

    def list_open_jobs(self, limit: int, cursor: Cursor | None, now: str) -> Page[Job]:
        """OPEN jobs not started by ``now``, newest first, merged from every shard of ``openJobs``."""

        def fetch(shard: int, after: str | None, count: int) -> tuple[list[tuple[str, Job]], str | None]:
            return self._open_shard_page(shard, after, count, now)

        page = merge_newest_first(
            _open_positions(cursor), item_shapes.OPEN_JOB_SHARDS, limit, fetch, self._map_parallel
        )
        if page.cursor is None:
            return Page(items=page.items)
        return Page(items=page.items, cursor={"shards": {str(n): p for n, p in sorted(page.cursor.items())}})

    def _open_shard_page(
        self, shard: int, after: str | None, limit: int, now: str
    ) -> tuple[list[tuple[str, Job]], str | None]:
        params: dict[str, Any] = {
            "IndexName": item_shapes.OPEN_JOBS_INDEX,
            "KeyConditionExpression": "GSI3PK = :pk",
            # A job leaves the listing when it starts: hidden here at once, deleted by TTL later.
            "FilterExpression": "startsAt > :now",
            "ExpressionAttributeValues": {
                ":pk": item_shapes.string(item_shapes.open_partition(shard)),
                ":now": item_shapes.string(now),
            },
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if after is not None:
            params["ExclusiveStartKey"] = item_shapes.open_listing_key(after)
        resp = self._table.query(**params)
        found = [
            (raw["jobId"]["S"], item_shapes.job_from(item_shapes.deserialize(raw))) for raw in resp.get("Items") or []
        ]
        last = resp.get("LastEvaluatedKey")
        return found, item_shapes.job_id_of_sort(last["GSI3SK"]["S"]) if last else None

    def _map_parallel(self, fn: Callable[[int], T], args: Sequence[int]) -> list[T]:
        """The shards' first reads at once: a page costs one round trip, not one per shard."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=item_shapes.OPEN_JOB_SHARDS, thread_name_prefix="shards")
        return list(self._pool.map(fn, args))

    def list_jobs_of_owner(self, owner: str, limit: int, cursor: Cursor | None) -> Page[Job]:
        return self._table.page(
            _converter(item_shapes.job_from),
            limit,
            cursor,
            index=item_shapes.BY_USER_INDEX,
            key_names=("GSI2PK", "GSI2SK"),
            partition=item_shapes.owner_partition(owner),
            sort_prefix=item_shapes.JOB_PREFIX,
            newest_first=True,
        )

    def due_job_ids(self, now: str, limit: int) -> list[str]:
        """Jobs whose start (OPEN) or end (CLOSED) is at or before ``now``, from the sparse
        ``dueJobs`` index: at most ``limit`` per shard, earliest first. The index may lag:
        callers re-read each job and act only on what its state says."""
        found: list[str] = []
        for shard in range(item_shapes.OPEN_JOB_SHARDS):
            resp = self._table.query(
                IndexName=item_shapes.DUE_JOBS_INDEX,
                KeyConditionExpression="GSI4PK = :pk AND GSI4SK <= :now",
                ExpressionAttributeValues={
                    ":pk": item_shapes.string(f"{item_shapes.DUE_PARTITION_PREFIX}{shard}"),
                    ":now": item_shapes.string(now),
                },
                Limit=limit,
            )
            found.extend(raw["PK"]["S"].removeprefix("JOB#") for raw in resp.get("Items") or [])
        return found

    def closed_jobs(self, page_size: int = 500) -> Iterator[Job]:
        """Every job out of OPEN: CLOSED, CANCELLED, EXPIRED, COMPLETED (none may keep a PENDING
        application), by a filtered scan: for operations tools, not request paths."""
        params: dict[str, Any] = {
            "TableName": self._table.name,
            "FilterExpression": "#type = :job AND #status IN (:closed, :cancelled, :expired, :completed)",
            "ExpressionAttributeNames": {"#type": "type", "#status": "status"},
            "ExpressionAttributeValues": {
                ":job": item_shapes.string("JOB"),
                ":closed": item_shapes.string(JobStatus.CLOSED.value),
                ":cancelled": item_shapes.string(JobStatus.CANCELLED.value),
                ":expired": item_shapes.string(JobStatus.EXPIRED.value),
                ":completed": item_shapes.string(JobStatus.COMPLETED.value),
            },
            "Limit": page_size,
        }
        for raw in self._table.read_all_pages("scan", params):
            yield item_shapes.job_from(item_shapes.deserialize(raw))

    # --------------------------------------------------------- applications

    def get_application(self, job_id: str, application_id: str) -> Application | None:
        raw = self._table.get(item_shapes.application_key(job_id, application_id))
        return item_shapes.application_from(item_shapes.deserialize(raw)) if raw else None

    def list_applications(self, job_id: str, limit: int, cursor: Cursor | None) -> Page[Application]:
        return self._table.page(
            _converter(item_shapes.application_from),
            limit,
            cursor,
            index=None,
            key_names=("PK", "SK"),
            partition=item_shapes.job_partition(job_id),
            sort_prefix=item_shapes.APPLICATION_PREFIX,
            newest_first=False,
        )

    def list_applications_of_applicant(self, user: str, limit: int, cursor: Cursor | None) -> Page[Application]:
        return self._table.page(
            _converter(item_shapes.application_from),
            limit,
            cursor,
            index=item_shapes.BY_USER_INDEX,
            key_names=("GSI2PK", "GSI2SK"),
            partition=item_shapes.applicant_partition(user),
            sort_prefix=item_shapes.APPLICATION_PREFIX,
            newest_first=True,
        )

    def job_with_pending_applications(self, job_id: str) -> tuple[Job | None, list[str]]:
        """The job and its PENDING applications, every page, read consistently from the
        job's own partition: it misses nothing, so the sweep and reconciliation rely on it."""
        params: dict[str, Any] = {
            "TableName": self._table.name,
            "KeyConditionExpression": "PK = :pk",
            "ConsistentRead": True,
            # DynamoDB refuses filters on key attributes: match on `type`.
            "FilterExpression": "#type = :job OR #status = :pending",
            "ExpressionAttributeNames": {"#type": "type", "#status": "status"},
            "ExpressionAttributeValues": {
                ":pk": item_shapes.string(item_shapes.job_partition(job_id)),
                ":job": item_shapes.string("JOB"),
                ":pending": item_shapes.string(ApplicationStatus.PENDING.value),
            },
        }
        if self._table.page_size:
            params["Limit"] = self._table.page_size
        job: Job | None = None
        pending: list[str] = []
        for raw in self._table.read_all_pages("query", params):
            if raw["type"]["S"] == "JOB":
                job = item_shapes.job_from(item_shapes.deserialize(raw))
            else:
                pending.append(raw["applicationId"]["S"])
        return job, pending

    def indexed_application_ids(self, job_id: str) -> list[str]:
        """Every application of the job the ``jobApplications`` index lists, whatever its status.

        The index holds keys only, so that a decline (a change of status) writes no copy
        of it; a reader of it learns which applications exist, not which are PENDING. It
        may lag: it may miss an application written a moment ago.
        """
        params: dict[str, Any] = {
            "TableName": self._table.name,
            "IndexName": item_shapes.JOB_APPLICATIONS_INDEX,
            "KeyConditionExpression": "GSI1PK = :pk AND begins_with(GSI1SK, :application)",
            "ExpressionAttributeValues": {
                ":pk": item_shapes.string(item_shapes.job_partition(job_id)),
                ":application": item_shapes.string(item_shapes.APPLICATION_PREFIX),
            },
        }
        if self._table.page_size:
            params["Limit"] = self._table.page_size
        return [
            item_shapes.application_id_of(raw["GSI1SK"]["S"]) for raw in self._table.read_all_pages("query", params)
        ]


def _converter(entity_from: Callable[[dict[str, Any]], T]) -> Callable[[dict[str, Any]], T]:
    return lambda raw: entity_from(item_shapes.deserialize(raw))


def _open_positions(cursor: Cursor | None) -> dict[int, str]:
    """Each shard's position in a cursor of the open-jobs listing; only what a page could have issued."""
    if cursor is None:
        return {}
    shards = cursor.get("shards") if isinstance(cursor, dict) and set(cursor) == {"shards"} else None
    if not isinstance(shards, dict) or not shards:
        raise invalid_cursor()
    positions: dict[int, str] = {}
    for name, position in shards.items():
        if not (isinstance(name, str) and name.isdigit() and int(name) < item_shapes.OPEN_JOB_SHARDS):
            raise invalid_cursor()
        shard = int(name)
        # A resume point must be a job this very shard could have returned.
        if position != EXHAUSTED and not (is_valid_id(position) and item_shapes.open_shard(position) == shard):
            raise invalid_cursor()
        positions[shard] = position
    return positions
