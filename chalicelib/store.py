"""Single-table DynamoDB adapter: the only module that knows keys or boto3's DynamoDB API.

Items (see README "Data model"):
  job          PK=USER#<owner>            SK=JOB#<jobId>
               GSI1 jobApplications:  GSI1PK=JOB#<jobId>  GSI1SK=JOB
               GSI3 openJobs (only while OPEN): GSI3PK=JOBS#OPEN  GSI3SK=JOB#<jobId>
  application  PK=SK=JOB#<jobId>#APPLICATION#<applicationId>
               GSI1 jobApplications:  GSI1PK=JOB#<jobId>  GSI1SK=APPLICATION#<applicationId>
               GSI2 applicantApplications: GSI2PK=APPLICANT#<user>  GSI2SK=APPLICATION#<applicationId>
  guard        PK=SK=JOB#<jobId>#APPLICANT#<user>   (one application per nanny and job)

Ids are ULIDs, so sorting by id sorts by creation time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from chalicelib.domain import (
    AlreadyApplied,
    Application,
    ApplicationNotFound,
    ApplicationNotPending,
    ApplicationStatus,
    ConcurrentUpdate,
    DeclineOutcome,
    Forbidden,
    InvalidInput,
    Job,
    JobNotFound,
    JobNotOpen,
    JobStatus,
    Page,
    Unavailable,
)

JOB_APPLICATIONS_INDEX = "jobApplications"
APPLICANT_APPLICATIONS_INDEX = "applicantApplications"
OPEN_JOBS_INDEX = "openJobs"

_OPEN_PARTITION = "JOBS#OPEN"
_JOB_SORT = "JOB"
_THROTTLE_CODES = {
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingError",
}
_TRANSACTION_RETRIES = 3

_ser = TypeSerializer()
_de = TypeDeserializer()


# ------------------------------------------------------------------------- keys


def _user_pk(user: str) -> str:
    return f"USER#{user}"


def _job_sk(job_id: str) -> str:
    return f"JOB#{job_id}"


def _job_partition(job_id: str) -> str:
    return f"JOB#{job_id}"


def _application_key(job_id: str, application_id: str) -> str:
    return f"JOB#{job_id}#APPLICATION#{application_id}"


def _application_sort(application_id: str) -> str:
    return f"APPLICATION#{application_id}"


def _guard_key(job_id: str, user: str) -> str:
    return f"JOB#{job_id}#APPLICANT#{user}"


def _applicant_partition(user: str) -> str:
    return f"APPLICANT#{user}"


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _key(pk: str, sk: str) -> dict[str, dict[str, str]]:
    return {"PK": _s(pk), "SK": _s(sk)}


def _serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in item.items() if v is not None}


def _deserialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


# ------------------------------------------------------------------- mapping


def _job_item(job: Job) -> dict[str, Any]:
    item: dict[str, Any] = {
        "PK": _user_pk(job.owner),
        "SK": _job_sk(job.job_id),
        "GSI1PK": _job_partition(job.job_id),
        "GSI1SK": _JOB_SORT,
        "type": "JOB",
        "jobId": job.job_id,
        "owner": job.owner,
        "status": job.status.value,
        "title": job.title,
        "startsAt": job.starts_at,
        "endsAt": job.ends_at,
        "createdAt": job.created_at,
        "description": job.description,
        "hourlyRate": job.hourly_rate,
        "location": job.location,
    }
    if job.status is JobStatus.OPEN:
        item["GSI3PK"] = _OPEN_PARTITION
        item["GSI3SK"] = _job_sk(job.job_id)
    return item


def _job_from(item: dict[str, Any]) -> Job:
    rate = item.get("hourlyRate")
    return Job(
        job_id=item["jobId"],
        owner=item["owner"],
        status=JobStatus(item["status"]),
        title=item["title"],
        starts_at=item["startsAt"],
        ends_at=item["endsAt"],
        created_at=item["createdAt"],
        description=item.get("description"),
        hourly_rate=Decimal(rate) if rate is not None else None,
        location=item.get("location"),
        accepted_application_id=item.get("acceptedApplicationId"),
        closed_at=item.get("closedAt"),
    )


def _application_item(app: Application) -> dict[str, Any]:
    key = _application_key(app.job_id, app.application_id)
    return {
        "PK": key,
        "SK": key,
        "GSI1PK": _job_partition(app.job_id),
        "GSI1SK": _application_sort(app.application_id),
        "GSI2PK": _applicant_partition(app.applicant),
        "GSI2SK": _application_sort(app.application_id),
        "type": "APPLICATION",
        "applicationId": app.application_id,
        "jobId": app.job_id,
        "applicant": app.applicant,
        "status": app.status.value,
        "createdAt": app.created_at,
        "updatedAt": app.updated_at,
        "message": app.message,
    }


def _application_from(item: dict[str, Any]) -> Application:
    return Application(
        application_id=item["applicationId"],
        job_id=item["jobId"],
        applicant=item["applicant"],
        status=ApplicationStatus(item["status"]),
        created_at=item["createdAt"],
        updated_at=item["updatedAt"],
        message=item.get("message"),
    )


# --------------------------------------------------------------------- errors


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _cancellation_reasons(exc: ClientError) -> list[dict[str, Any]]:
    return exc.response.get("CancellationReasons") or []


def _raise_unavailable(exc: ClientError) -> None:
    raise Unavailable("The database is busy; retry the request.", cause=_error_code(exc)) from exc


class DynamoStore:
    """Reads and writes jobs and applications in one table."""

    def __init__(self, client: Any, table_name: str, query_page_size: int | None = None) -> None:
        self._db = client
        self._table = table_name
        self._page_size = query_page_size

    # ----------------------------------------------------------------- jobs

    def put_job(self, job: Job) -> None:
        try:
            self._db.put_item(
                TableName=self._table,
                Item=_serialize(_job_item(job)),
                ConditionExpression="attribute_not_exists(PK)",
            )
        except ClientError as exc:
            if _error_code(exc) in _THROTTLE_CODES:
                _raise_unavailable(exc)
            raise

    def get_job(self, job_id: str) -> Job | None:
        """Looks a job up by id alone, through the (eventually consistent) index."""
        resp = self._call(
            "query",
            TableName=self._table,
            IndexName=JOB_APPLICATIONS_INDEX,
            KeyConditionExpression="GSI1PK = :pk AND GSI1SK = :sk",
            ExpressionAttributeValues={":pk": _s(_job_partition(job_id)), ":sk": _s(_JOB_SORT)},
        )
        items = resp.get("Items") or []
        return _job_from(_deserialize(items[0])) if items else None

    def list_open_jobs(self, limit: int, cursor: dict | None) -> Page[Job]:
        return self._page(
            _job_from,
            limit,
            cursor,
            index=OPEN_JOBS_INDEX,
            key_names=("GSI3PK", "GSI3SK"),
            partition=_OPEN_PARTITION,
            newest_first=True,
        )

    def list_jobs_of_owner(self, owner: str, limit: int, cursor: dict | None) -> Page[Job]:
        return self._page(
            _job_from,
            limit,
            cursor,
            index=None,
            key_names=("PK", "SK"),
            partition=_user_pk(owner),
            sort_prefix="JOB#",
            newest_first=True,
        )

    # --------------------------------------------------------- applications

    def add_application(self, job: Job, app: Application) -> None:
        """Writes the application only while the job is OPEN and once per nanny."""
        guard = _guard_key(app.job_id, app.applicant)
        try:
            self._transact(
                [
                    {
                        "ConditionCheck": {
                            "TableName": self._table,
                            "Key": _key(_user_pk(job.owner), _job_sk(job.job_id)),
                            "ConditionExpression": "#status = :open",
                            "ExpressionAttributeNames": {"#status": "status"},
                            "ExpressionAttributeValues": {":open": _s(JobStatus.OPEN.value)},
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": _serialize(
                                {
                                    "PK": guard,
                                    "SK": guard,
                                    "type": "APPLICATION_GUARD",
                                    "applicationId": app.application_id,
                                }
                            ),
                            "ConditionExpression": "attribute_not_exists(PK)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": _serialize(_application_item(app)),
                            "ConditionExpression": "attribute_not_exists(PK)",
                        }
                    },
                ]
            )
        except _Cancelled as cancelled:
            job_reason, guard_reason, _ = cancelled.reasons
            if job_reason.get("Code") == "ConditionalCheckFailed":
                raise JobNotOpen("The job is not open for applications.") from None
            if guard_reason.get("Code") == "ConditionalCheckFailed":
                raise AlreadyApplied("You have already applied to this job.") from None
            raise ConcurrentUpdate("The job changed while applying; retry.") from None

    def list_applications(self, job_id: str, limit: int, cursor: dict | None) -> Page[Application]:
        return self._page(
            _application_from,
            limit,
            cursor,
            index=JOB_APPLICATIONS_INDEX,
            key_names=("GSI1PK", "GSI1SK"),
            partition=_job_partition(job_id),
            sort_prefix="APPLICATION#",
            newest_first=False,
        )

    def list_applications_of_applicant(self, user: str, limit: int, cursor: dict | None) -> Page[Application]:
        return self._page(
            _application_from,
            limit,
            cursor,
            index=APPLICANT_APPLICATIONS_INDEX,
            key_names=("GSI2PK", "GSI2SK"),
            partition=_applicant_partition(user),
            newest_first=True,
        )

    def job_with_pending_applications(self, job_id: str) -> tuple[Job | None, list[str]]:
        """Reads the job's index partition, every page: the job and its PENDING applications.

        One query serves both, so a booking costs no extra read for the job.
        """
        params: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": JOB_APPLICATIONS_INDEX,
            "KeyConditionExpression": "GSI1PK = :pk",
            # DynamoDB refuses filters on the index's own key attributes: match on `type`.
            "FilterExpression": "#type = :job OR #status = :pending",
            "ExpressionAttributeNames": {"#type": "type", "#status": "status"},
            "ExpressionAttributeValues": {
                ":pk": _s(_job_partition(job_id)),
                ":job": _s("JOB"),
                ":pending": _s(ApplicationStatus.PENDING.value),
            },
        }
        if self._page_size:
            params["Limit"] = self._page_size
        job: Job | None = None
        pending: list[str] = []
        for raw in self._all_pages("query", params):
            if raw["GSI1SK"]["S"] == _JOB_SORT:
                job = _job_from(_deserialize(raw))
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
            yield _job_from(_deserialize(raw))

    # -------------------------------------------------------------- booking

    def close_job_and_accept(self, owner: str, job_id: str, application_id: str, now: str) -> Job | None:
        """Closes the job and accepts the application in one transaction.

        Returns None when this call committed, or the job as stored when the same
        booking had already committed (a replay); raises on any other refusal.
        """
        app_key = _application_key(job_id, application_id)
        try:
            self._transact(
                [
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": _key(_user_pk(owner), _job_sk(job_id)),
                            "ConditionExpression": "attribute_exists(PK) AND #status = :open",
                            "UpdateExpression": (
                                "SET #status = :closed, acceptedApplicationId = :app, closedAt = :now "
                                "REMOVE GSI3PK, GSI3SK"
                            ),
                            "ExpressionAttributeNames": {"#status": "status"},
                            "ExpressionAttributeValues": {
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
                            "Key": _key(app_key, app_key),
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
                ]
            )
        except _Cancelled as cancelled:
            return self._explain_booking_failure(cancelled.reasons, owner, job_id, application_id)
        return None

    def get_job_of_owner(self, owner: str, job_id: str) -> Job | None:
        resp = self._call(
            "get_item",
            TableName=self._table,
            Key=_key(_user_pk(owner), _job_sk(job_id)),
            ConsistentRead=True,
        )
        item = resp.get("Item")
        return _job_from(_deserialize(item)) if item else None

    def _explain_booking_failure(
        self, reasons: list[dict[str, Any]], owner: str, job_id: str, application_id: str
    ) -> Job:
        job_reason, app_reason = reasons
        if job_reason.get("Code") == "ConditionalCheckFailed":
            old = job_reason.get("Item")
            if not old:
                if self.get_job(job_id) is not None:
                    raise Forbidden("Only the job's owner can book it.", code="NOT_JOB_OWNER")
                raise JobNotFound("Job not found.")
            job = _job_from(_deserialize(old))
            if job.accepted_application_id == application_id:
                return job  # the same booking again: the caller finishes the declines
            raise JobNotOpen("The job is already booked.", acceptedApplicationId=job.accepted_application_id)
        if app_reason.get("Code") == "ConditionalCheckFailed":
            if not app_reason.get("Item"):
                raise ApplicationNotFound("Application not found for this job.")
            raise ApplicationNotPending("The application is no longer pending.")
        raise ConcurrentUpdate("The job changed during booking; retry.")

    # -------------------------------------------------------------- declines

    def decline_application(self, job_id: str, application_id: str, now: str) -> DeclineOutcome:
        key = _application_key(job_id, application_id)
        try:
            self._db.update_item(
                TableName=self._table,
                Key=_key(key, key),
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
            old = exc.response.get("Item")
            if old is None:
                # Emulators without ReturnValuesOnConditionCheckFailure: read it instead.
                current = self._call("get_item", TableName=self._table, Key=_key(key, key), ConsistentRead=True)
                old = current.get("Item")
            if not old:
                return DeclineOutcome.UNKNOWN_APPLICATION
            status = old.get("status", {}).get("S")
            if status == ApplicationStatus.ACCEPTED.value:
                return DeclineOutcome.SKIPPED_ACCEPTED
            return DeclineOutcome.ALREADY_DECLINED
        return DeclineOutcome.DECLINED

    # --------------------------------------------------------------- helpers

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            return getattr(self._db, operation)(**params)
        except ClientError as exc:
            if _error_code(exc) in _THROTTLE_CODES:
                _raise_unavailable(exc)
            raise

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

    def _transact(self, items: list[dict[str, Any]]) -> None:
        """Runs a transaction, retrying only when another transaction got in the way."""
        for attempt in range(_TRANSACTION_RETRIES + 1):
            try:
                self._db.transact_write_items(TransactItems=items)
                return
            except ClientError as exc:
                code = _error_code(exc)
                if code in _THROTTLE_CODES:
                    _raise_unavailable(exc)
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
                    _raise_unavailable(exc)
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
