"""Single-table DynamoDB adapter: the only module that calls boto3's DynamoDB API.

Key and item shapes live in ``items.py`` (see README "Data model"). Everything read
by id or by job (a job, its applications) is read from the base table, strongly
consistent; indexes serve only the listings and the booking's first pass.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from chalicelib import items as it
from chalicelib.domain import (
    AlreadyApplied,
    Application,
    ApplicationNotFound,
    ApplicationNotPending,
    ApplicationStatus,
    ConcurrentUpdate,
    DeclineOutcome,
    Forbidden,
    IdempotencyKeyReused,
    InvalidInput,
    Job,
    JobNotFound,
    JobNotOpen,
    JobStatus,
    Page,
    Unavailable,
)

_THROTTLE_CODES = {
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingError",
}
# Left over after botocore's own retries: the request may be repeated as it is.
_UNAVAILABLE_CODES = _THROTTLE_CODES | {"InternalServerError", "ServiceUnavailable", "InternalFailure"}
_TRANSACTION_RETRIES = 3
IDEMPOTENCY_TTL_SECONDS = 24 * 3600

_s = it.s
_serialize = it.serialize
_deserialize = it.deserialize


# --------------------------------------------------------------------- errors


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _cancellation_reasons(exc: ClientError) -> list[dict[str, Any]]:
    return exc.response.get("CancellationReasons") or []


def _unavailable(exc: Exception) -> Unavailable:
    cause = _error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    return Unavailable("The database is busy; retry the request.", cause=cause)


def _failed(reason: dict[str, Any]) -> bool:
    return reason.get("Code") == "ConditionalCheckFailed"


class DynamoStore:
    """Reads and writes jobs and applications in one table."""

    def __init__(self, client: Any, table_name: str, query_page_size: int | None = None) -> None:
        self._db = client
        self._table = table_name
        self._page_size = query_page_size

    # ----------------------------------------------------------------- jobs

    def put_job(self, job: Job) -> None:
        """Writes a new job. A botocore retry of a put that had committed finds its own item."""
        item = _serialize(it.job_item(job))
        try:
            self._call(
                "put_item",
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(PK)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item") or self._get(it.job_key(job.job_id))
            # A fresh ULID cannot collide with another job: an item with our id and
            # creation time is ours (numbers come back normalised, so not the whole item).
            if not old or any(old.get(k) != item[k] for k in ("jobId", "owner", "createdAt")):
                raise
        # An item equal to ours: the first attempt committed, the retry is the same write.

    def put_job_once(self, job: Job, client_key: str, fingerprint: str) -> str | None:
        """Writes the job and binds the owner's idempotency key to it, atomically.

        Returns None when this call wrote the job, or the id of the job an earlier
        request with the same key and fingerprint created (within 24 h).
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
        job_put = {
            "Put": {
                "TableName": self._table,
                "Item": _serialize(it.job_item(job)),
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }
        try:
            # The token makes DynamoDB answer a retried, committed call with success.
            self._transact([key_item, job_put], token=job.job_id)
            return None
        except _Cancelled as cancelled:
            if not _failed(cancelled.reasons[0]):
                raise ConcurrentUpdate("The request collided with another; retry.") from None
            old = cancelled.reasons[0].get("Item") or self._get(it.idempotency_key(job.owner, client_key))
        existing = _deserialize(old) if old else {}
        if existing.get("jobId") == job.job_id:
            return None  # our own write, committed by an attempt whose answer was lost
        if existing.get("fingerprint") != fingerprint:
            raise IdempotencyKeyReused("This Idempotency-Key was used with a different request.")
        return str(existing["jobId"])

    def get_job(self, job_id: str) -> Job | None:
        item = self._get(it.job_key(job_id))
        return it.job_from(_deserialize(item)) if item else None

    def list_open_jobs(self, limit: int, cursor: dict | None) -> Page[Job]:
        return self._page(
            it.job_from,
            limit,
            cursor,
            index=it.OPEN_JOBS_INDEX,
            key_names=("GSI3PK", "GSI3SK"),
            partition=it.OPEN_PARTITION,
            newest_first=True,
        )

    def list_jobs_of_owner(self, owner: str, limit: int, cursor: dict | None) -> Page[Job]:
        return self._page(
            it.job_from,
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
        """Writes the application only while the job is OPEN and once per nanny."""
        try:
            self._transact(
                [
                    {
                        "ConditionCheck": {
                            "TableName": self._table,
                            "Key": it.job_key(job.job_id),
                            "ConditionExpression": "#status = :open",
                            "ExpressionAttributeNames": {"#status": "status"},
                            "ExpressionAttributeValues": {":open": _s(JobStatus.OPEN.value)},
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": _serialize(it.guard_item(app)),
                            "ConditionExpression": "attribute_not_exists(PK)",
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
                token=app.application_id,
            )
        except _Cancelled as cancelled:
            job_reason, guard_reason, _ = cancelled.reasons
            if _failed(guard_reason):
                guard = guard_reason.get("Item") or self._get(it.guard_key(app.job_id, app.applicant))
                if guard and guard.get("applicationId", {}).get("S") == app.application_id:
                    return  # our own write, committed by an attempt whose answer was lost
            if _failed(job_reason):
                raise JobNotOpen("The job is not open for applications.") from None
            if _failed(guard_reason):
                raise AlreadyApplied("You have already applied to this job.") from None
            raise ConcurrentUpdate("The job changed while applying; retry.") from None

    def list_applications(self, job_id: str, limit: int, cursor: dict | None) -> Page[Application]:
        return self._page(
            it.application_from,
            limit,
            cursor,
            index=None,
            key_names=("PK", "SK"),
            partition=it.job_partition(job_id),
            sort_prefix=it.APPLICATION_PREFIX,
            newest_first=False,
        )

    def list_applications_of_applicant(self, user: str, limit: int, cursor: dict | None) -> Page[Application]:
        return self._page(
            it.application_from,
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
        for raw in self._all_pages("query", params):
            if raw["type"]["S"] == "JOB":
                job = it.job_from(_deserialize(raw))
            else:
                pending.append(raw["applicationId"]["S"])
        return job, pending

    def closed_jobs(self, page_size: int = 500) -> Iterator[Job]:
        """Every CLOSED job, by a filtered scan: for operations tools, not request paths."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "#type = :job AND #status = :closed",
            "ExpressionAttributeNames": {"#type": "type", "#status": "status"},
            "ExpressionAttributeValues": {":job": _s("JOB"), ":closed": _s(JobStatus.CLOSED.value)},
            "Limit": page_size,
        }
        for raw in self._all_pages("scan", params):
            yield it.job_from(_deserialize(raw))

    # -------------------------------------------------------------- booking

    def close_job_and_accept(self, owner: str, job_id: str, application_id: str, now: str) -> Job | None:
        """Closes the job and accepts the application in one transaction.

        Returns None when this call committed, or the job as stored when the same
        booking had already committed (a replay); raises on any other refusal.
        """
        token = hashlib.sha256(f"book:{job_id}:{application_id}:{now}".encode()).hexdigest()[:36]
        try:
            self._transact(
                [
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": it.job_key(job_id),
                            "ConditionExpression": "attribute_exists(PK) AND #owner = :owner AND #status = :open",
                            "UpdateExpression": (
                                "SET #status = :closed, acceptedApplicationId = :app, closedAt = :now "
                                "REMOVE GSI3PK, GSI3SK"
                            ),
                            "ExpressionAttributeNames": {"#status": "status", "#owner": "owner"},
                            "ExpressionAttributeValues": {
                                ":owner": _s(owner),
                                ":open": _s(JobStatus.OPEN.value),
                                ":closed": _s(JobStatus.CLOSED.value),
                                ":app": _s(application_id),
                                ":now": _s(now),
                            },
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": it.application_key(job_id, application_id),
                            "ConditionExpression": "attribute_exists(PK) AND #status = :pending",
                            "UpdateExpression": "SET #status = :accepted, updatedAt = :now",
                            "ExpressionAttributeNames": {"#status": "status"},
                            "ExpressionAttributeValues": {
                                ":pending": _s(ApplicationStatus.PENDING.value),
                                ":accepted": _s(ApplicationStatus.ACCEPTED.value),
                                ":now": _s(now),
                            },
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    },
                ],
                token=token,
            )
        except _Cancelled as cancelled:
            return self._explain_booking_failure(cancelled.reasons, owner, job_id, application_id)
        return None

    def _explain_booking_failure(
        self, reasons: list[dict[str, Any]], owner: str, job_id: str, application_id: str
    ) -> Job:
        job_reason, app_reason = reasons
        if _failed(job_reason):
            old = job_reason.get("Item") or self._get(it.job_key(job_id))
            if not old:
                raise JobNotFound("Job not found.")
            job = it.job_from(_deserialize(old))
            if job.owner != owner:
                raise Forbidden("Only the job's owner can book it.", code="NOT_JOB_OWNER")
            if job.accepted_application_id == application_id:
                return job  # the same booking again: the caller finishes the declines
            raise JobNotOpen("The job is already booked.", acceptedApplicationId=job.accepted_application_id)
        if _failed(app_reason):
            if not app_reason.get("Item"):
                raise ApplicationNotFound("Application not found for this job.")
            raise ApplicationNotPending("The application is no longer pending.")
        raise ConcurrentUpdate("The job changed during booking; retry.")

    # -------------------------------------------------------------- declines

    def decline_application(self, job_id: str, application_id: str, now: str) -> DeclineOutcome:
        key = it.application_key(job_id, application_id)
        try:
            self._call(
                "update_item",
                TableName=self._table,
                Key=key,
                ConditionExpression="#status = :pending",
                UpdateExpression="SET #status = :declined, updatedAt = :now",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":pending": _s(ApplicationStatus.PENDING.value),
                    ":declined": _s(ApplicationStatus.DECLINED.value),
                    ":now": _s(now),
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _error_code(exc) != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item")  # ALL_OLD: none means the application does not exist
            if not old:
                return DeclineOutcome.UNKNOWN_APPLICATION
            status = old.get("status", {}).get("S")
            if status == ApplicationStatus.ACCEPTED.value:
                return DeclineOutcome.SKIPPED_ACCEPTED
            return DeclineOutcome.ALREADY_DECLINED
        return DeclineOutcome.DECLINED

    # --------------------------------------------------------------- helpers

    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        return self._call("get_item", TableName=self._table, Key=key, ConsistentRead=True).get("Item")

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            return getattr(self._db, operation)(**params)
        except ClientError as exc:
            if _error_code(exc) in _UNAVAILABLE_CODES:
                raise _unavailable(exc) from exc
            raise
        except (HTTPClientError, ConnectionError) as exc:  # timeouts, resets: after botocore's retries
            raise _unavailable(exc) from exc

    def _all_pages(self, operation: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The raw items of every page of a query or scan."""
        params = dict(params)
        while True:
            resp = self._call(operation, **params)
            yield from resp.get("Items") or []
            last = resp.get("LastEvaluatedKey")
            if not last:
                return
            params["ExclusiveStartKey"] = last

    def _transact(self, items: list[dict[str, Any]], token: str | None = None) -> None:
        """Runs a transaction, retrying only when another transaction got in the way.

        ``token`` (ClientRequestToken) lets DynamoDB recognise botocore's own re-send
        of a call that committed; callers still recognise their own items (ALL_OLD),
        for emulators that ignore it.
        """
        params: dict[str, Any] = {"TransactItems": items}
        if token:
            params["ClientRequestToken"] = token
        for attempt in range(_TRANSACTION_RETRIES + 1):
            try:
                self._call("transact_write_items", **params)
                return
            except ClientError as exc:
                code = _error_code(exc)
                if code == "TransactionConflictException":
                    reasons: list[dict[str, Any]] = [{"Code": "TransactionConflict"} for _ in items]
                elif code == "TransactionCanceledException":
                    reasons = _cancellation_reasons(exc)
                else:
                    raise
                reason_codes = {r.get("Code") for r in reasons}
                if "ConditionalCheckFailed" in reason_codes:
                    raise _Cancelled(reasons) from exc
                if reason_codes & _THROTTLE_CODES:
                    raise _unavailable(exc) from exc
                if "TransactionConflict" not in reason_codes or attempt == _TRANSACTION_RETRIES:
                    raise _Cancelled(reasons) from exc
                time.sleep(random.uniform(0.005, 0.02) * (attempt + 1))

    def _page(
        self,
        convert: Any,
        limit: int,
        cursor: dict | None,
        *,
        index: str | None,
        key_names: tuple[str, str],
        partition: str,
        newest_first: bool,
        sort_prefix: str | None = None,
    ) -> Page:
        pk_name, sk_name = key_names
        condition = f"{pk_name} = :pk"
        values = {":pk": _s(partition)}
        if sort_prefix:
            condition += f" AND begins_with({sk_name}, :prefix)"
            values[":prefix"] = _s(sort_prefix)
        params: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": not newest_first,
            "Limit": limit,
        }
        if index:
            params["IndexName"] = index
        else:
            params["ConsistentRead"] = True  # the base table can: a listing sees its own writes
        if cursor is not None:
            params["ExclusiveStartKey"] = self._start_key(cursor, index, key_names, partition, sort_prefix)
        resp = self._call("query", **params)
        items = [convert(_deserialize(i)) for i in resp.get("Items") or []]
        last = resp.get("LastEvaluatedKey")
        next_cursor = {k: v["S"] for k, v in last.items()} if last else None
        return Page(items=items, cursor=next_cursor)

    @staticmethod
    def _start_key(
        cursor: dict,
        index: str | None,
        key_names: tuple[str, str],
        partition: str,
        sort_prefix: str | None,
    ) -> dict[str, Any]:
        """Accepts only a key this very query could have returned."""
        expected = {"PK", "SK", *key_names}
        pk_name, sk_name = key_names
        if (
            not isinstance(cursor, dict)
            or set(cursor) != expected
            or not all(isinstance(v, str) and 0 < len(v) <= 600 for v in cursor.values())
            or cursor[pk_name] != partition
            or (sort_prefix is not None and not cursor[sk_name].startswith(sort_prefix))
        ):
            raise InvalidInput("nextToken is not valid for this request.", code="INVALID_NEXT_TOKEN")
        return {k: _s(v) for k, v in cursor.items()}


class _Cancelled(Exception):
    def __init__(self, reasons: list[dict[str, Any]]) -> None:
        super().__init__("transaction cancelled")
        self.reasons = reasons
