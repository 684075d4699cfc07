"""Jobs and their PENDING applications, written straight to the table before a measurement.

Items are built by ``chalicelib.store``'s own mapping functions, so they are shaped
exactly as the service writes them (the guard item as ``DynamoStore.add_application``
writes it). ``BatchWriteItem`` is used for speed: setup is never timed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from chalicelib import items as store_module  # the table's key and item shapes
from chalicelib.domain import Application, ApplicationStatus, Job, JobStatus, format_time, new_id, utc_now
from tools.local.tokens import local_user_id  # the sub local tokens carry for a name

BATCH_WRITE_LIMIT = 25
WRITE_THREADS = 4


@dataclass(frozen=True)
class PreparedJob:
    job_id: str
    owner: str
    application_ids: tuple[str, ...]

    @property
    def accepted(self) -> str:
        """The application the benchmark books: the middle one, so neither end of the partition."""
        return self.application_ids[len(self.application_ids) // 2]

    @property
    def declined(self) -> list[str]:
        return [a for a in self.application_ids if a != self.accepted]


def build_job(
    owner: str, applicants: Sequence[str], user_id: Callable[[str], str] = local_user_id
) -> tuple[PreparedJob, list[dict[str, Any]]]:
    """One OPEN job with one PENDING application per applicant, as DynamoDB items.

    ``user_id`` gives a username's id: the local tokens' by default, a user pool's ``sub`` else."""
    now = utc_now()
    created = format_time(now)
    starts = now + timedelta(days=3)
    job = Job(
        job_id=new_id(),
        owner=user_id(owner),
        owner_name=owner,
        status=JobStatus.OPEN,
        title="Evening sitter (benchmark)",
        starts_at=format_time(starts),
        ends_at=format_time(starts + timedelta(hours=4)),
        created_at=created,
        hourly_rate=Decimal("15.00"),
    )
    items = [store_module.job_item(job)]
    app_ids = []
    for applicant in applicants:
        app = Application(
            application_id=new_id(),
            job_id=job.job_id,
            applicant=user_id(applicant),
            applicant_name=applicant,
            status=ApplicationStatus.PENDING,
            created_at=created,
            updated_at=created,
            message="Happy to help.",
        )
        app_ids.append(app.application_id)
        items.append(store_module.guard_item(app))
        items.append(store_module.application_item(app))
    return PreparedJob(job.job_id, owner, tuple(app_ids)), [store_module.serialize(i) for i in items]


def prepare_jobs(
    dynamodb: Any,
    table: str,
    count: int,
    apps_per_job: int,
    owners: Sequence[str],
    tag: str,
    user_id: Callable[[str], str] = local_user_id,
) -> list[PreparedJob]:
    """Writes ``count`` OPEN jobs with ``apps_per_job`` PENDING applications each."""
    jobs: list[PreparedJob] = []
    items: list[dict[str, Any]] = []
    for i in range(count):
        applicants = [f"{tag}-nanny-{k}" for k in range(apps_per_job)]
        # The one booked is the job's own: all jobs share a time, and a nanny is booked once at a time.
        applicants[apps_per_job // 2] = f"{tag}-job-{i}-nanny"
        job, job_items = build_job(owners[i % len(owners)], applicants, user_id)
        jobs.append(job)
        items.extend(job_items)
    write_items(dynamodb, table, items)
    return jobs


def write_items(dynamodb: Any, table: str, items: list[dict[str, Any]]) -> None:
    chunks = [items[i : i + BATCH_WRITE_LIMIT] for i in range(0, len(items), BATCH_WRITE_LIMIT)]

    def write(chunk: list[dict[str, Any]]) -> None:
        request = {table: [{"PutRequest": {"Item": item}} for item in chunk]}
        for attempt in range(20):
            unprocessed = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
            if not unprocessed:
                return
            request = unprocessed
            time.sleep(0.05 * (attempt + 1))
        raise RuntimeError("BatchWriteItem kept leaving items unprocessed")

    with ThreadPoolExecutor(WRITE_THREADS) as pool:
        list(pool.map(write, chunks))


def statuses_of(dynamodb: Any, table: str, job_id: str) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The job item and ``{applicationId: status}`` of one job, read consistently from its partition."""
    params: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "PK = :pk",
        "ConsistentRead": True,
        "ExpressionAttributeValues": {":pk": {"S": store_module.job_partition(job_id)}},
    }
    job: dict[str, Any] | None = None
    apps: dict[str, str] = {}
    while True:
        resp = dynamodb.query(**params)
        for item in resp.get("Items") or []:
            kind = item.get("type", {}).get("S")
            if kind == "JOB":
                job = item
            elif kind == "APPLICATION":
                apps[item["applicationId"]["S"]] = item["status"]["S"]
        if not resp.get("LastEvaluatedKey"):
            return job, apps
        params["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def job_key(job: PreparedJob) -> dict[str, Any]:
    return store_module.job_key(job.job_id)


def application_key(job_id: str, application_id: str) -> dict[str, Any]:
    return store_module.application_key(job_id, application_id)


def chunked(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
