"""The state changes of a job and its applications, each one conditional write.

Book (OPEN → CLOSED, PENDING → ACCEPTED), cancel (OPEN or CLOSED → CANCELLED, an
ACCEPTED application → CANCELLED), withdraw (PENDING or ACCEPTED → WITHDRAWN, the
latter reopening the job), decline (PENDING → DECLINED), expire (OPEN → EXPIRED) and
complete (CLOSED → COMPLETED): the arrows of ``domain.JOB_TRANSITIONS`` and
``domain.APPLICATION_TRANSITIONS``. Each is conditioned on the state it leaves, so of
two racing changes exactly one commits; a refusal reads the refusing item back
(``ALL_OLD``) to say why, and recognises a replay of itself. A booking also writes the
nanny's calendar, conditioned on the version it read, so no nanny is booked twice at
one time. Part of ``DynamoStore`` (``store.py``); keys come from ``items.py``.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
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
    NannyUnavailable,
    Reason,
    Slot,
    Unavailable,
    clash,
    past_slots,
)
from chalicelib.dynamo import Cancelled, Table, error_code, failed, reason_at

_s = it.s
_deserialize = it.deserialize
_CONFLICT_RETRIES = 3
# A booking that lost its calendar's version to another booking of the same nanny reads it again.
_CALENDAR_RETRIES = 5
# Past bookings dropped from a calendar per booking: bounds the write's expression.
_PRUNE_PER_WRITE = 25
# A booking reads (job, application, calendar) before its transaction. What follows the
# reads takes at most 8.6 s (docs/api.md#timeouts-and-retries) of the API's 10 s: reads slower
# than this leave no room, so the booking answers 503 before writing anything.
BOOKING_READ_BUDGET_SECONDS = 1.4

# The job must still be OPEN and not started: `now` is the request's time, checked in the write itself.
_OPEN_AND_OWNED = "attribute_exists(PK) AND #owner = :owner AND #status = :open"
_NOT_STARTED = "startsAt > :now"


class Transitions:
    """Mixed into ``DynamoStore``: needs ``self._t`` (a ``dynamo.Table``)."""

    _t: Table
    _monotonic: Any = staticmethod(time.monotonic)  # tests move it

    def _delete_listing(self, job_id: str) -> dict[str, Any]:
        # Unconditional: TTL may already have deleted it (the job had started).
        return {"Delete": {"TableName": self._t.name, "Key": it.listing_key(job_id)}}

    def _read_job(self, job_id: str) -> Job:
        raw = self._t.get(it.job_key(job_id))
        if not raw:
            raise JobNotFound("Job not found.")
        return it.job_from(_deserialize(raw))

    def _read_application(self, job_id: str, application_id: str) -> Application | None:
        raw = self._t.get(it.application_key(job_id, application_id))
        return it.application_from(_deserialize(raw)) if raw else None

    def _job_and_application(self, job_id: str, application_id: str) -> tuple[Job, Application | None]:
        """Both in one consistent round trip (a transactional read)."""
        resp = self._t.api_call(
            "transact_get_items",
            TransactItems=[
                {"Get": {"TableName": self._t.name, "Key": it.job_key(job_id)}},
                {"Get": {"TableName": self._t.name, "Key": it.application_key(job_id, application_id)}},
            ],
        )
        job_raw, app_raw = ((r or {}).get("Item") for r in resp.get("Responses") or [{}, {}])
        if not job_raw:
            raise JobNotFound("Job not found.")
        app = it.application_from(_deserialize(app_raw)) if app_raw else None
        return it.job_from(_deserialize(job_raw)), app

    def _booked_nanny(self, job: Job) -> str | None:
        """Whose calendar holds a CLOSED job (jobs booked before calendars existed: from the application)."""
        if job.accepted_applicant or not job.accepted_application_id:
            return job.accepted_applicant
        app = self._read_application(job.job_id, job.accepted_application_id)
        return app.applicant if app else None

    # ------------------------------------------------------------- calendar

    def calendar(self, user: str) -> tuple[int, list[Slot]]:
        """A nanny's bookings, read consistently, with the version a booking conditions on."""
        return it.calendar_from(self._t.get(it.calendar_key(user)))

    def _calendar_add(self, user: str, version: int, slot: Slot, drop: list[Slot]) -> dict[str, Any]:
        names = {"#slot": it.slot_attribute(slot.job_id), "#version": "version"}
        update = "SET #slot = :slot, #version = :next, #type = :type"
        names["#type"] = "type"
        if drop:
            names.update({f"#old{i}": it.slot_attribute(s.job_id) for i, s in enumerate(drop)})
            update += " REMOVE " + ", ".join(f"#old{i}" for i in range(len(drop)))
        values: dict[str, Any] = {
            ":slot": it.slot_value(slot),
            ":next": {"N": str(version + 1)},
            ":type": _s("NANNY_CALENDAR"),
        }
        if version:
            condition = "#version = :read"
            values[":read"] = {"N": str(version)}
        else:
            condition = "attribute_not_exists(#version)"
        return {
            "Update": {
                "TableName": self._t.name,
                "Key": it.calendar_key(user),
                # The version read: a booking of the same nanny in between makes this one read again.
                "ConditionExpression": condition,
                "UpdateExpression": update,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def _calendar_release(self, user: str, job_id: str) -> dict[str, Any]:
        # Unconditional, but a new version: a booking that read the entry must not write it back.
        return {
            "Update": {
                "TableName": self._t.name,
                "Key": it.calendar_key(user),
                "UpdateExpression": "REMOVE #slot SET #version = if_not_exists(#version, :zero) + :one, #type = :type",
                "ExpressionAttributeNames": {
                    "#slot": it.slot_attribute(job_id),
                    "#version": "version",
                    "#type": "type",
                },
                "ExpressionAttributeValues": {":zero": {"N": "0"}, ":one": {"N": "1"}, ":type": _s("NANNY_CALENDAR")},
            }
        }

    # ------------------------------------------------------------- booking

    def close_job_and_accept(self, owner: str, job_id: str, application_id: str, now: str) -> Job | None:
        """Closes the job, accepts the application and books the nanny's time, in one transaction.

        Returns None when this call committed, or the job as stored when the same
        booking had already committed (a replay); raises on any other refusal, and
        ``NannyUnavailable`` when the applicant is booked elsewhere at an overlapping time.
        """
        started = self._monotonic()
        for _ in range(_CALENDAR_RETRIES + 1):
            job, app = self._job_and_application(job_id, application_id)
            if job.owner != owner:
                raise Forbidden("Only the job's owner can book it.", code="NOT_JOB_OWNER")
            if job.status is JobStatus.CLOSED and job.accepted_application_id == application_id:
                return job  # the same booking again: the caller finishes the declines
            if job.status is not JobStatus.OPEN or job.has_started(now):
                refuse_not_open(job, now, "bookings")
            if app is None:
                raise ApplicationNotFound("Application not found for this job.")
            if app.status is not ApplicationStatus.PENDING:
                raise ApplicationNotPending("The application is no longer pending.", status=app.status.value)
            version, booked = self.calendar(app.applicant)
            other = clash(booked, job.slot())
            if other is not None:
                raise NannyUnavailable(
                    "This nanny is already booked at an overlapping time.",
                    jobId=other.job_id,
                    startsAt=other.starts_at,
                    endsAt=other.ends_at,
                )
            if self._monotonic() - started > BOOKING_READ_BUDGET_SECONDS:
                raise Unavailable("The database is slow; retry the booking (nothing was written).", cause="slow reads")
            drop = past_slots(booked, now)[:_PRUNE_PER_WRITE]
            try:
                self._t.transact(
                    [
                        self._close_job(owner, job, application_id, app.applicant, now),
                        self._accept_application(job_id, application_id, app.applicant, now),
                        self._delete_listing(job_id),
                        self._calendar_add(app.applicant, version, job.slot(), drop),
                    ]
                )
            except Cancelled as cancelled:
                reasons = cancelled.reasons
                if failed(reason_at(reasons, 3)) and not any(failed(reason_at(reasons, i)) for i in (0, 1)):
                    continue  # the nanny's calendar changed since it was read: check again
                return self._explain_booking_failure(reasons, owner, job_id, application_id, now)
            return None
        raise ConcurrentUpdate("The nanny's bookings kept changing during booking; retry.")

    def _close_job(self, owner: str, job: Job, application_id: str, applicant: str, now: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._t.name,
                "Key": it.job_key(job.job_id),
                "ConditionExpression": f"{_OPEN_AND_OWNED} AND {_NOT_STARTED}",
                "UpdateExpression": "SET #status = :closed, acceptedApplicationId = :app, acceptedApplicant = :nanny, "
                "closedAt = :now, updatedAt = :now, GSI4PK = :due, GSI4SK = :ends",
                "ExpressionAttributeNames": {"#status": "status", "#owner": "owner"},
                "ExpressionAttributeValues": {
                    ":owner": _s(owner),
                    ":open": _s(JobStatus.OPEN.value),
                    ":closed": _s(JobStatus.CLOSED.value),
                    ":app": _s(application_id),
                    ":nanny": _s(applicant),
                    ":now": _s(now),
                    ":due": _s(it.due_partition(job.job_id)),
                    ":ends": _s(job.ends_at),
                },
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _accept_application(self, job_id: str, application_id: str, applicant: str, now: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._t.name,
                "Key": it.application_key(job_id, application_id),
                # The applicant read: the calendar written is hers.
                "ConditionExpression": "attribute_exists(PK) AND #status = :pending AND applicant = :nanny",
                "UpdateExpression": "SET #status = :accepted, updatedAt = :now",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {
                    ":pending": _s(ApplicationStatus.PENDING.value),
                    ":accepted": _s(ApplicationStatus.ACCEPTED.value),
                    ":nanny": _s(applicant),
                    ":now": _s(now),
                },
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _explain_booking_failure(
        self, reasons: list[dict[str, Any]], owner: str, job_id: str, application_id: str, now: str
    ) -> Job:
        job_reason, app_reason = reason_at(reasons, 0), reason_at(reasons, 1)
        if failed(job_reason):
            job = self._refusing_job(job_reason, owner, job_id, "Only the job's owner can book it.")
            if job.accepted_application_id == application_id and job.status is JobStatus.CLOSED:
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
        """Cancels an OPEN job (started or not), or a CLOSED one before it starts.

        An OPEN job leaves the listing; a CLOSED one's accepted application becomes
        CANCELLED (``BOOKING_CANCELLED``) and the nanny's time is freed, atomically.
        Returns None when this call committed, or the job as stored when it was already
        CANCELLED (a replay: the caller re-queues what is still PENDING).
        """
        values: dict[str, Any] = {
            ":owner": _s(owner),
            ":open": _s(JobStatus.OPEN.value),
            ":cancelled": _s(JobStatus.CANCELLED.value),
            ":now": _s(now),
        }
        update = "SET #status = :cancelled, cancelledAt = :now, updatedAt = :now"
        if reason:
            update += ", cancelReason = :reason"
            values[":reason"] = _s(reason)
        job_update = {
            "Update": {
                "TableName": self._t.name,
                "Key": it.job_key(job_id),
                "ConditionExpression": _OPEN_AND_OWNED,
                "UpdateExpression": update + " REMOVE GSI4PK, GSI4SK",
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
            if job.status is JobStatus.CLOSED:
                return self._cancel_booked_job(job, reason, now)
            refuse_not_open(job, now, "changes")
        return None

    def _cancel_booked_job(self, job: Job, reason: str | None, now: str) -> Job | None:
        """CLOSED → CANCELLED before the start, its ACCEPTED application → CANCELLED.

        Conditioned on the booking read (its application still ACCEPTED): of this and
        the nanny's withdrawal, exactly one commits.
        """
        if job.has_started(now):
            raise JobStarted("The job has started; it can no longer be cancelled.", startsAt=job.starts_at)
        application_id = job.accepted_application_id or ""
        nanny = self._booked_nanny(job)
        values: dict[str, Any] = {
            ":owner": _s(job.owner),
            ":closed": _s(JobStatus.CLOSED.value),
            ":cancelled": _s(JobStatus.CANCELLED.value),
            ":app": _s(application_id),
            ":now": _s(now),
        }
        update = "SET #status = :cancelled, cancelledAt = :now, updatedAt = :now"
        if reason:
            update += ", cancelReason = :reason"
            values[":reason"] = _s(reason)
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._t.name,
                    "Key": it.job_key(job.job_id),
                    "ConditionExpression": "#owner = :owner AND #status = :closed AND acceptedApplicationId = :app "
                    f"AND {_NOT_STARTED}",
                    "UpdateExpression": update + " REMOVE GSI4PK, GSI4SK",
                    "ExpressionAttributeNames": {"#status": "status", "#owner": "owner"},
                    "ExpressionAttributeValues": values,
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            {
                "Update": {
                    "TableName": self._t.name,
                    "Key": it.application_key(job.job_id, application_id),
                    "ConditionExpression": "#status = :accepted",
                    "UpdateExpression": "SET #status = :cancelled, reason = :why, updatedAt = :now",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {
                        ":accepted": _s(ApplicationStatus.ACCEPTED.value),
                        ":cancelled": _s(ApplicationStatus.CANCELLED.value),
                        ":why": _s(Reason.BOOKING_CANCELLED.value),
                        ":now": _s(now),
                    },
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
        ]
        if nanny:
            items.append(self._calendar_release(nanny, job.job_id))
        try:
            self._t.transact(items)
        except Cancelled as cancelled:
            job_reason = reason_at(cancelled.reasons, 0)
            current = self._refusing_job(job_reason, job.owner, job.job_id, "Only the job's owner can cancel it.")
            if current.status is JobStatus.CANCELLED:
                return current
            if current.status is JobStatus.CLOSED and current.has_started(now):
                raise JobStarted(
                    "The job has started; it can no longer be cancelled.", startsAt=current.starts_at
                ) from None
            # The booked nanny withdrew (the job is OPEN again) or another booking replaced hers.
            raise ConcurrentUpdate(
                "The booking changed while cancelling; look at the job and retry.", status=current.status.value
            ) from None
        return None

    # ---------------------------------------------------------- withdrawing

    def withdraw_application(
        self, applicant: str, job_id: str, application_id: str, now: str
    ) -> tuple[Application, bool]:
        """PENDING or ACCEPTED → WITHDRAWN, only by its applicant; an ACCEPTED one reopens the job.

        Returns the application and whether it was already WITHDRAWN (a replay)."""
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
            if app.status is ApplicationStatus.ACCEPTED:
                return self._back_out(app, now), False
            raise ApplicationNotPending("The application is no longer pending.", status=app.status.value) from None
        return it.application_from(_deserialize(resp["Attributes"])), False

    def _back_out(self, app: Application, now: str) -> Application:
        """The booked nanny withdraws before the start: ACCEPTED → WITHDRAWN, the job CLOSED → OPEN
        (listed again, a new round), her time freed, in one transaction."""
        job = self._read_job(app.job_id)
        if job.status is not JobStatus.CLOSED or job.accepted_application_id != app.application_id:
            # The parent cancelled the booking (or the job completed) since the application was read.
            current = self._read_application(app.job_id, app.application_id) or app
            if current.status is ApplicationStatus.WITHDRAWN:
                return current
            if current.status is not ApplicationStatus.ACCEPTED:
                raise ApplicationNotPending("The application is no longer active.", status=current.status.value)
            raise JobNotOpen(f"The job is {job.status.value.lower()}.", status=job.status.value)
        if job.has_started(now):
            raise JobStarted("The job has started; the booking can no longer be withdrawn.", startsAt=job.starts_at)
        reopened = replace(
            job,
            status=JobStatus.OPEN,
            accepted_application_id=None,
            accepted_applicant=None,
            closed_at=None,
            round=job.round + 1,
        )
        try:
            self._t.transact(
                [
                    {
                        "Update": {
                            "TableName": self._t.name,
                            "Key": it.application_key(app.job_id, app.application_id),
                            "ConditionExpression": "applicant = :user AND #status = :accepted",
                            "UpdateExpression": "SET #status = :withdrawn, updatedAt = :now",
                            "ExpressionAttributeNames": {"#status": "status"},
                            "ExpressionAttributeValues": {
                                ":user": _s(app.applicant),
                                ":accepted": _s(ApplicationStatus.ACCEPTED.value),
                                ":withdrawn": _s(ApplicationStatus.WITHDRAWN.value),
                                ":now": _s(now),
                            },
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._t.name,
                            "Key": it.job_key(app.job_id),
                            "ConditionExpression": "#status = :closed AND acceptedApplicationId = :app "
                            f"AND {_NOT_STARTED}",
                            "UpdateExpression": "SET #status = :open, #round = :round, reopenedAt = :now, "
                            "updatedAt = :now, GSI4PK = :due, GSI4SK = :starts "
                            "REMOVE acceptedApplicationId, acceptedApplicant, closedAt",
                            "ExpressionAttributeNames": {"#status": "status", "#round": "round"},
                            "ExpressionAttributeValues": {
                                ":closed": _s(JobStatus.CLOSED.value),
                                ":open": _s(JobStatus.OPEN.value),
                                ":app": _s(app.application_id),
                                ":round": {"N": str(reopened.round)},
                                ":now": _s(now),
                                ":due": _s(it.due_partition(job.job_id)),
                                ":starts": _s(job.starts_at),
                            },
                        }
                    },
                    {"Put": {"TableName": self._t.name, "Item": it.serialize(it.listing_item(reopened))}},
                    self._calendar_release(app.applicant, app.job_id),
                ]
            )
        except Cancelled as cancelled:
            old = reason_at(cancelled.reasons, 0).get("Item")
            current = (
                it.application_from(_deserialize(old))
                if old
                else self._read_application(app.job_id, app.application_id)
            )
            if current is not None and current.status is ApplicationStatus.WITHDRAWN:
                return current
            if current is not None and current.status is not ApplicationStatus.ACCEPTED:
                # The parent cancelled the booking first.
                raise ApplicationNotPending(
                    "The application is no longer active.", status=current.status.value
                ) from None
            if self._read_job(app.job_id).has_started(now):
                raise JobStarted(
                    "The job has started; the booking can no longer be withdrawn.", startsAt=job.starts_at
                ) from None
            raise ConcurrentUpdate("The booking changed while withdrawing; retry.") from None
        return replace(app, status=ApplicationStatus.WITHDRAWN, updated_at=now)

    # ------------------------------------------------------ expiry, completion

    def due_job_ids(self, now: str, limit: int) -> list[str]:
        """Jobs whose start (OPEN) or end (CLOSED) is at or before ``now``, from the sparse
        ``dueJobs`` index: at most ``limit`` per shard, earliest first. The index may lag:
        callers re-read each job and act only on what its state says."""
        found: list[str] = []
        for shard in range(it.OPEN_JOB_SHARDS):
            resp = self._t.api_call(
                "query",
                TableName=self._t.name,
                IndexName=it.DUE_JOBS_INDEX,
                KeyConditionExpression="GSI4PK = :pk AND GSI4SK <= :now",
                ExpressionAttributeValues={":pk": _s(f"{it.DUE_PARTITION_PREFIX}{shard}"), ":now": _s(now)},
                Limit=limit,
            )
            found.extend(raw["PK"]["S"].removeprefix("JOB#") for raw in resp.get("Items") or [])
        return found

    def expire_job(self, job_id: str, now: str) -> bool:
        """OPEN → EXPIRED once started, leaving the listing. It stays in ``dueJobs`` until
        ``forget_due`` (after its declines are queued), so an interrupted run resumes.
        Returns whether this call expired it."""
        try:
            self._t.transact(
                [
                    {
                        "Update": {
                            "TableName": self._t.name,
                            "Key": it.job_key(job_id),
                            "ConditionExpression": "#status = :open AND startsAt <= :now",
                            "UpdateExpression": "SET #status = :expired, expiredAt = :now, updatedAt = :now",
                            "ExpressionAttributeNames": {"#status": "status"},
                            "ExpressionAttributeValues": {
                                ":open": _s(JobStatus.OPEN.value),
                                ":expired": _s(JobStatus.EXPIRED.value),
                                ":now": _s(now),
                            },
                        }
                    },
                    self._delete_listing(job_id),
                ]
            )
        except Cancelled:
            return False
        return True

    def forget_due(self, job_id: str, status: JobStatus) -> None:
        """Takes a settled job out of ``dueJobs`` (only while it still has ``status``)."""
        try:
            self._t.api_call(
                "update_item",
                TableName=self._t.name,
                Key=it.job_key(job_id),
                ConditionExpression="#status = :status",
                UpdateExpression="REMOVE GSI4PK, GSI4SK",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":status": _s(status.value)},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def complete_job(self, job: Job, now: str) -> bool:
        """CLOSED → COMPLETED once ended, out of ``dueJobs``, the nanny's entry dropped. Returns
        whether this call completed it."""
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._t.name,
                    "Key": it.job_key(job.job_id),
                    "ConditionExpression": "#status = :closed AND endsAt <= :now",
                    "UpdateExpression": "SET #status = :completed, completedAt = :now, updatedAt = :now "
                    "REMOVE GSI4PK, GSI4SK",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {
                        ":closed": _s(JobStatus.CLOSED.value),
                        ":completed": _s(JobStatus.COMPLETED.value),
                        ":now": _s(now),
                    },
                }
            }
        ]
        nanny = self._booked_nanny(job)
        if nanny:
            items.append(self._calendar_release(nanny, job.job_id))
        try:
            self._t.transact(items)
        except Cancelled:
            return False
        return True

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

    def decline_application(
        self, job_id: str, application_id: str, now: str, reason: Reason | None = None
    ) -> DeclineOutcome:
        """PENDING → DECLINED (with why); anything else (ACCEPTED, WITHDRAWN, CANCELLED, DECLINED) is left as it is."""
        update = "SET #status = :declined, updatedAt = :now"
        values = {
            ":pending": _s(ApplicationStatus.PENDING.value),
            ":declined": _s(ApplicationStatus.DECLINED.value),
            ":now": _s(now),
        }
        if reason is not None:
            update += ", reason = :why"
            values[":why"] = _s(reason.value)
        try:
            self._t.api_call(
                "update_item",
                TableName=self._t.name,
                Key=it.application_key(job_id, application_id),
                ConditionExpression="#status = :pending",
                UpdateExpression=update,
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values,
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
            if status == ApplicationStatus.CANCELLED.value:
                return DeclineOutcome.SKIPPED_CANCELLED
            return DeclineOutcome.ALREADY_DECLINED
        return DeclineOutcome.DECLINED


def refuse_not_open(job: Job, now: str, what: str) -> None:
    """Why an OPEN-only write was refused by this job: always raises."""
    if job.status is JobStatus.OPEN and job.has_started(now):
        raise JobStarted(f"The job has started; it takes no more {what}.", startsAt=job.starts_at)
    if job.status is JobStatus.OPEN:
        raise ConcurrentUpdate("The job changed meanwhile; retry.")
    if job.status is JobStatus.CLOSED:
        raise JobNotOpen("The job is already booked.", acceptedApplicationId=job.accepted_application_id)
    raise JobNotOpen(f"The job is {job.status.value.lower()}.", status=job.status.value)
