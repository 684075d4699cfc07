"""The state changes of a job and its applications, each one conditional write.

Book (OPEN → CLOSED, PENDING → ACCEPTED), cancel (OPEN → CANCELLED), withdraw
(PENDING → WITHDRAWN) and decline (PENDING → DECLINED). Each is conditioned on the
state it leaves, so of two racing changes exactly one commits; a refusal reads the
refusing item back (``ALL_OLD``) to say why, and recognises a replay of itself.
Part of ``DynamoStore`` (``store.py``); keys come from ``items.py``.
"""

from __future__ import annotations

import random
import time
from typing import Any

from botocore.exceptions import ClientError

from chalicelib import items as it
from chalicelib.domain import (
    Application,
    ApplicationNotFound,
    ApplicationNotPending,
    ApplicationStatus,
    ConcurrentUpdate,
    DeclineOutcome,
    Forbidden,
    Job,
    JobNotFound,
    JobNotOpen,
    JobStarted,
    JobStatus,
)
from chalicelib.dynamo import Cancelled, Table, error_code, failed, reason_at

_s = it.s
_deserialize = it.deserialize
_CONFLICT_RETRIES = 3

# The job must still be OPEN and not started: `now` is the request's time, checked in the write itself.
_OPEN_AND_OWNED = "attribute_exists(PK) AND #owner = :owner AND #status = :open"
_NOT_STARTED = "startsAt > :now"


class Transitions:
    """Mixed into ``DynamoStore``: needs ``self._t`` (a ``dynamo.Table``)."""

    _t: Table

    def _delete_listing(self, job_id: str) -> dict[str, Any]:
        # Unconditional: TTL may already have deleted it (the job had started).
        return {"Delete": {"TableName": self._t.name, "Key": it.listing_key(job_id)}}

    # ------------------------------------------------------------- booking

    def close_job_and_accept(self, owner: str, job_id: str, application_id: str, now: str) -> Job | None:
        """Closes the job and accepts the application in one transaction.

        Returns None when this call committed, or the job as stored when the same
        booking had already committed (a replay); raises on any other refusal.
        """
        job_update = {
            "Update": {
                "TableName": self._t.name,
                "Key": it.job_key(job_id),
                "ConditionExpression": f"{_OPEN_AND_OWNED} AND {_NOT_STARTED}",
                "UpdateExpression": "SET #status = :closed, acceptedApplicationId = :app, closedAt = :now",
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
        }
        app_update = {
            "Update": {
                "TableName": self._t.name,
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
        }
        try:
            self._t.transact([job_update, app_update, self._delete_listing(job_id)])
        except Cancelled as cancelled:
            return self._explain_booking_failure(cancelled.reasons, owner, job_id, application_id, now)
        return None

    def _explain_booking_failure(
        self, reasons: list[dict[str, Any]], owner: str, job_id: str, application_id: str, now: str
    ) -> Job:
        job_reason, app_reason = reason_at(reasons, 0), reason_at(reasons, 1)
        if failed(job_reason):
            job = self._refusing_job(job_reason, owner, job_id, "Only the job's owner can book it.")
            if job.accepted_application_id == application_id:
                return job  # the same booking again: the caller finishes the declines
            refuse_not_open(job, now, "bookings")
        if failed(app_reason):
            old = app_reason.get("Item")
            if not old:
                raise ApplicationNotFound("Application not found for this job.")
            status = old.get("status", {}).get("S")
            raise ApplicationNotPending("The application is no longer pending.", status=status)
        raise ConcurrentUpdate("The job changed during booking; retry.")

    def _refusing_job(self, reason: dict[str, Any], owner: str, job_id: str, not_owner: str) -> Job:
        """The job item that refused a transaction: 404 if none, 403 if another owner's."""
        old = reason.get("Item") or self._t.get(it.job_key(job_id))
        if not old:
            raise JobNotFound("Job not found.")
        job = it.job_from(_deserialize(old))
        if job.owner != owner:
            raise Forbidden(not_owner, code="NOT_JOB_OWNER")
        return job

    # ---------------------------------------------------------- cancelling

    def cancel_job(self, owner: str, job_id: str, reason: str | None, now: str) -> Job | None:
        """Cancels an OPEN job (started or not) and drops it from the listing, atomically.

        Returns None when this call committed, or the job as stored when it was already
        CANCELLED (a replay: the caller re-queues what is still PENDING).
        """
        values: dict[str, Any] = {
            ":owner": _s(owner),
            ":open": _s(JobStatus.OPEN.value),
            ":cancelled": _s(JobStatus.CANCELLED.value),
            ":now": _s(now),
        }
        update = "SET #status = :cancelled, cancelledAt = :now"
        if reason:
            update += ", cancelReason = :reason"
            values[":reason"] = _s(reason)
        job_update = {
            "Update": {
                "TableName": self._t.name,
                "Key": it.job_key(job_id),
                "ConditionExpression": _OPEN_AND_OWNED,
                "UpdateExpression": update,
                "ExpressionAttributeNames": {"#status": "status", "#owner": "owner"},
                "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
        try:
            self._t.transact([job_update, self._delete_listing(job_id)])
        except Cancelled as cancelled:
            job_reason = reason_at(cancelled.reasons, 0)
            if not failed(job_reason):
                raise ConcurrentUpdate("The job changed while cancelling; retry.") from None
            job = self._refusing_job(job_reason, owner, job_id, "Only the job's owner can cancel it.")
            if job.status is JobStatus.CANCELLED:
                return job
            raise JobNotOpen("The job is already booked.", acceptedApplicationId=job.accepted_application_id) from None
        return None

    # ---------------------------------------------------------- withdrawing

    def withdraw_application(
        self, applicant: str, job_id: str, application_id: str, now: str
    ) -> tuple[Application, bool]:
        """PENDING → WITHDRAWN, only by its applicant. Returns the application and whether
        it was already WITHDRAWN (a replay)."""
        params = {
            "TableName": self._t.name,
            "Key": it.application_key(job_id, application_id),
            "ConditionExpression": "attribute_exists(PK) AND applicant = :user AND #status = :pending",
            "UpdateExpression": "SET #status = :withdrawn, updatedAt = :now",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":user": _s(applicant),
                ":pending": _s(ApplicationStatus.PENDING.value),
                ":withdrawn": _s(ApplicationStatus.WITHDRAWN.value),
                ":now": _s(now),
            },
            "ReturnValues": "ALL_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        try:
            resp = self._update_retrying_conflicts(params)
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item")
            if not old:
                if self._t.get(it.job_key(job_id)) is None:
                    raise JobNotFound("Job not found.") from None
                raise ApplicationNotFound("Application not found for this job.") from None
            app = it.application_from(_deserialize(old))
            if app.applicant != applicant:
                raise Forbidden("Only the applicant can withdraw an application.", code="NOT_APPLICANT") from None
            if app.status is ApplicationStatus.WITHDRAWN:
                return app, True
            raise ApplicationNotPending("The application is no longer pending.", status=app.status.value) from None
        return it.application_from(_deserialize(resp["Attributes"])), False

    def _update_retrying_conflicts(self, params: dict[str, Any]) -> dict[str, Any]:
        """An UpdateItem that meets a transaction in flight on its item is refused: try again."""
        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                return self._t.api_call("update_item", **params)
            except ClientError as exc:
                if error_code(exc) != "TransactionConflictException":
                    raise
                if attempt == _CONFLICT_RETRIES:
                    raise ConcurrentUpdate("The application changed meanwhile; retry.") from None
                time.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------ declines

    def decline_application(self, job_id: str, application_id: str, now: str) -> DeclineOutcome:
        """PENDING → DECLINED; anything else (ACCEPTED, WITHDRAWN, DECLINED) is left as it is."""
        try:
            self._t.api_call(
                "update_item",
                TableName=self._t.name,
                Key=it.application_key(job_id, application_id),
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
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item")  # ALL_OLD: none means the application does not exist
            if not old:
                return DeclineOutcome.UNKNOWN_APPLICATION
            status = old.get("status", {}).get("S")
            if status == ApplicationStatus.ACCEPTED.value:
                return DeclineOutcome.SKIPPED_ACCEPTED
            if status == ApplicationStatus.WITHDRAWN.value:
                return DeclineOutcome.SKIPPED_WITHDRAWN
            return DeclineOutcome.ALREADY_DECLINED
        return DeclineOutcome.DECLINED


def refuse_not_open(job: Job, now: str, what: str) -> None:
    """Why an OPEN-only write was refused by this job: always raises."""
    if job.status is JobStatus.OPEN and job.has_started(now):
        raise JobStarted(f"The job has started; it takes no more {what}.", startsAt=job.starts_at)
    if job.status is JobStatus.CANCELLED:
        raise JobNotOpen("The job was cancelled.", status=job.status.value)
    raise JobNotOpen("The job is already booked.", acceptedApplicationId=job.accepted_application_id)
