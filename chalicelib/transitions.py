"""The state changes of a job and its applications, each one conditional write.

Apply (while OPEN and not started), book (OPEN → CLOSED, PENDING → ACCEPTED), cancel
(OPEN or CLOSED → CANCELLED, an ACCEPTED application → CANCELLED), withdraw (PENDING or
ACCEPTED → WITHDRAWN, the latter reopening the job), decline (PENDING → DECLINED), expire
(OPEN → EXPIRED) and complete (CLOSED → COMPLETED): the rules of ``domain.py``
(``domain.BOOK``, ``domain.EXPIRE``, ...). Each write's condition is built from its rule
(``job_condition``), so of two racing changes exactly one commits; a refusal reads the
refusing item back (``ALL_OLD``) and is explained by the same rule (``domain.refusal``),
and recognises a replay of itself. A booking also writes the nanny's calendar,
conditioned on the version it read, so no nanny is booked twice at one time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from chalicelib import items as item_shapes
from chalicelib.domain import (
    ACCEPT,
    APPLY,
    BACK_OUT,
    BOOK,
    CANCEL_BOOKED,
    CANCEL_BOOKING,
    CANCEL_OPEN,
    COMPLETE,
    DECLINE,
    EXPIRE,
    WITHDRAW,
    WITHDRAW_BOOKED,
    AlreadyApplied,
    Application,
    ApplicationNotFound,
    ApplicationNotPending,
    ApplicationRule,
    ApplicationStatus,
    Commit,
    ConcurrentUpdate,
    DeclineOutcome,
    Forbidden,
    Job,
    JobNotFound,
    JobNotOpen,
    JobRule,
    JobStarted,
    JobStatus,
    NannyUnavailable,
    Reason,
    Slot,
    Timing,
    Unavailable,
    Unmet,
    clash,
    past_slots,
    refusal,
)
from chalicelib.dynamo import Cancelled, Table, error_code, failed, reason_at, refused_item

# A booking that lost its calendar's version to another booking of the same nanny reads it again.
_CALENDAR_RETRIES = 5
# Past bookings dropped from a calendar per booking: bounds the write's expression.
_PRUNE_PER_WRITE = 25
# A booking reads (job, application, calendar) before its transaction. What follows the
# reads takes at most 8.6 s (docs/api.md#timeouts-and-retries) of the API's 10 s: reads slower
# than this leave no room, so the booking answers 503 before writing anything.
BOOKING_READ_BUDGET_SECONDS = 1.4

# ---------------------------------------------------- conditions from the domain's rules

# A job's times against the request's (`:now`), as DynamoDB compares them (ISO times sort as text).
TIMING_CONDITIONS: dict[Timing, str | None] = {
    Timing.ANY: None,
    Timing.BEFORE_START: "startsAt > :now",
    Timing.FROM_START: "startsAt <= :now",
    Timing.FROM_END: "endsAt <= :now",
}


def placeholder(status: JobStatus | ApplicationStatus) -> str:
    """The expression value standing for a status: ``:open``, ``:pending``, ..."""
    return f":{status.value.lower()}"


def job_condition(rule: JobRule, *also: str) -> str:
    """The ConditionExpression of a write under ``rule``: the clauses ``also`` (who may write,
    what was read), then the job's status and its times against ``:now``."""
    timing = TIMING_CONDITIONS[rule.timing]
    clauses = [*also, f"#status = {placeholder(rule.status)}", *([timing] if timing else [])]
    return " AND ".join(clauses)


def application_condition(rule: ApplicationRule, *also: str) -> str:
    return " AND ".join([*also, f"#status = {placeholder(rule.status)}"])


def rule_values(rule: JobRule | ApplicationRule, now: str) -> dict[str, Any]:
    """The values ``job_condition``/``application_condition`` and the update name: both statuses and ``:now``."""
    values = {placeholder(rule.status): item_shapes.string(rule.status.value), ":now": item_shapes.string(now)}
    if rule.moves_to is not None:
        values[placeholder(rule.moves_to)] = item_shapes.string(rule.moves_to.value)
    return values


# Clauses a write adds to its rule's: the item exists, the caller owns the job, the booking read is still the job's.
_EXISTS = "attribute_exists(PK)"
_OWNED = "#owner = :owner"
_BOOKED_READ = "acceptedApplicationId = :app"


class Transitions:
    """The conditional writes of a job's life, on one table."""

    def __init__(self, table: Table, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._table = table
        # Times a booking's reads against BOOKING_READ_BUDGET_SECONDS.
        self._monotonic = monotonic

    # ---------------------------------------------------------------- reads

    def _delete_listing(self, job_id: str) -> dict[str, Any]:
        # Unconditional: TTL may already have deleted it (the job had started).
        return {"Delete": {"TableName": self._table.name, "Key": item_shapes.listing_key(job_id)}}

    def _read_job(self, job_id: str) -> Job:
        raw = self._table.get(item_shapes.job_key(job_id))
        if not raw:
            raise JobNotFound("Job not found.")
        return item_shapes.job_from(item_shapes.deserialize(raw))

    def _read_application(self, job_id: str, application_id: str) -> Application | None:
        raw = self._table.get(item_shapes.application_key(job_id, application_id))
        return item_shapes.application_from(item_shapes.deserialize(raw)) if raw else None

    def _job_and_application(self, job_id: str, application_id: str) -> tuple[Job, Application | None]:
        """Both in one consistent round trip (a transactional read)."""
        resp = self._table.api_call(
            "transact_get_items",
            TransactItems=[
                {"Get": {"TableName": self._table.name, "Key": item_shapes.job_key(job_id)}},
                {"Get": {"TableName": self._table.name, "Key": item_shapes.application_key(job_id, application_id)}},
            ],
        )
        job_raw, app_raw = ((r or {}).get("Item") for r in resp.get("Responses") or [{}, {}])
        if not job_raw:
            raise JobNotFound("Job not found.")
        app = item_shapes.application_from(item_shapes.deserialize(app_raw)) if app_raw else None
        return item_shapes.job_from(item_shapes.deserialize(job_raw)), app

    def _booked_nanny(self, job: Job) -> str | None:
        """Whose calendar holds a CLOSED job (jobs booked before calendars existed: from the application)."""
        if job.accepted_applicant or not job.accepted_application_id:
            return job.accepted_applicant
        app = self._read_application(job.job_id, job.accepted_application_id)
        return app.applicant if app else None

    # --------------------------------------------------------- applications

    def add_application(self, job: Job, app: Application) -> None:
        """Writes the application only while the job is OPEN and not started (``domain.APPLY``),
        and once per nanny and round."""
        now = app.created_at
        try:
            self._table.transact(
                [
                    {
                        "ConditionCheck": {
                            "TableName": self._table.name,
                            "Key": item_shapes.job_key(job.job_id),
                            # Checked in the write, not only by the read before it: a late request cannot
                            # slip in. The round read too: the guard below is written for that round.
                            "ConditionExpression": f"{job_condition(APPLY)} AND {_round_is(job.round)}",
                            "ExpressionAttributeNames": {"#status": "status", "#round": "round"},
                            "ExpressionAttributeValues": {
                                **rule_values(APPLY, now),
                                ":round": {"N": str(job.round)},
                            },
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table.name,
                            "Item": item_shapes.serialize(item_shapes.guard_item(app, job.round)),
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
                            "TableName": self._table.name,
                            "Item": item_shapes.serialize(item_shapes.application_item(app)),
                            "ConditionExpression": "attribute_not_exists(PK)",
                        }
                    },
                ],
            )
        except Cancelled as cancelled:
            job_reason, guard_reason = reason_at(cancelled.reasons, 0), reason_at(cancelled.reasons, 1)
            if failed(guard_reason):
                guard = guard_reason.get("Item") or self._table.get(item_shapes.guard_key(app.job_id, app.applicant))
                if guard and guard.get("applicationId", {}).get("S") == app.application_id:
                    return  # our own write, committed by an attempt whose answer was lost
            if failed(job_reason):
                old = job_reason.get("Item") or self._table.get(item_shapes.job_key(job.job_id))
                if not old:
                    raise JobNotFound("Job not found.") from None
                raise refusal(APPLY, item_shapes.job_from(item_shapes.deserialize(old)), now, "applications") from None
            if failed(guard_reason):
                raise AlreadyApplied("You have already applied to this job.") from None
            raise ConcurrentUpdate("The job changed while applying; retry.") from None

    # ------------------------------------------------------------- calendar

    def calendar(self, user: str) -> tuple[int, list[Slot]]:
        """A nanny's bookings, read consistently, with the version a booking conditions on."""
        return item_shapes.calendar_from(self._table.get(item_shapes.calendar_key(user)))

    def _calendar_add(self, user: str, version: int, slot: Slot, drop: list[Slot]) -> dict[str, Any]:
        names = {"#slot": item_shapes.slot_attribute(slot.job_id), "#version": "version"}
        update = "SET #slot = :slot, #version = :next, #type = :type"
        names["#type"] = "type"
        if drop:
            names.update({f"#old{i}": item_shapes.slot_attribute(s.job_id) for i, s in enumerate(drop)})
            update += " REMOVE " + ", ".join(f"#old{i}" for i in range(len(drop)))
        values: dict[str, Any] = {
            ":slot": item_shapes.slot_value(slot),
            ":next": {"N": str(version + 1)},
            ":type": item_shapes.string("NANNY_CALENDAR"),
        }
        if version:
            condition = "#version = :read"
            values[":read"] = {"N": str(version)}
        else:
            condition = "attribute_not_exists(#version)"
        return {
            "Update": {
                "TableName": self._table.name,
                "Key": item_shapes.calendar_key(user),
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
                "TableName": self._table.name,
                "Key": item_shapes.calendar_key(user),
                "UpdateExpression": "REMOVE #slot SET #version = if_not_exists(#version, :zero) + :one, #type = :type",
                "ExpressionAttributeNames": {
                    "#slot": item_shapes.slot_attribute(job_id),
                    "#version": "version",
                    "#type": "type",
                },
                "ExpressionAttributeValues": {
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                    ":type": item_shapes.string("NANNY_CALENDAR"),
                },
            }
        }

    # ------------------------------------------------------------- booking

    def close_job_and_accept(self, owner: str, job_id: str, application_id: str, now: str) -> Commit:
        """Closes the job, accepts the application and books the nanny's time, in one transaction.

        Returns the job as this call left it, or as stored when the same booking had
        already committed (a replay); raises on any other refusal, and
        ``NannyUnavailable`` when the applicant is booked elsewhere at an overlapping time.
        """
        started = self._monotonic()
        for _ in range(_CALENDAR_RETRIES + 1):
            job, app = self._job_and_application(job_id, application_id)
            if job.owner != owner:
                raise Forbidden("Only the job's owner can book it.", code="NOT_JOB_OWNER")
            if job.status is JobStatus.CLOSED and job.accepted_application_id == application_id:
                return Commit(replayed=True, job=job)  # the same booking again: the caller finishes the declines
            if not BOOK.allows(job, now):
                raise refusal(BOOK, job, now, "bookings")
            if app is None:
                raise ApplicationNotFound("Application not found for this job.")
            if not ACCEPT.allows(app):
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
                self._table.transact(
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
                return Commit(
                    replayed=True, job=self._explain_booking_failure(reasons, owner, job_id, application_id, now)
                )
            committed = replace(
                job,
                status=JobStatus.CLOSED,
                accepted_application_id=application_id,
                accepted_applicant=app.applicant,
                closed_at=now,
            )
            return Commit(replayed=False, job=committed)
        raise ConcurrentUpdate("The nanny's bookings kept changing during booking; retry.")

    def _close_job(self, owner: str, job: Job, application_id: str, applicant: str, now: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._table.name,
                "Key": item_shapes.job_key(job.job_id),
                # The job must still be OPEN and not started: `now` is the request's time, checked in the write.
                "ConditionExpression": job_condition(BOOK, _EXISTS, _OWNED),
                "UpdateExpression": "SET #status = :closed, acceptedApplicationId = :app, acceptedApplicant = :nanny, "
                "closedAt = :now, updatedAt = :now, GSI4PK = :due, GSI4SK = :ends",
                "ExpressionAttributeNames": {"#status": "status", "#owner": "owner"},
                "ExpressionAttributeValues": {
                    **rule_values(BOOK, now),
                    ":owner": item_shapes.string(owner),
                    ":app": item_shapes.string(application_id),
                    ":nanny": item_shapes.string(applicant),
                    ":due": item_shapes.string(item_shapes.due_partition(job.job_id)),
                    ":ends": item_shapes.string(job.ends_at),
                },
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _accept_application(self, job_id: str, application_id: str, applicant: str, now: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._table.name,
                "Key": item_shapes.application_key(job_id, application_id),
                # The applicant read: the calendar written is hers.
                "ConditionExpression": application_condition(ACCEPT, _EXISTS, "applicant = :nanny"),
                "UpdateExpression": "SET #status = :accepted, updatedAt = :now",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {**rule_values(ACCEPT, now), ":nanny": item_shapes.string(applicant)},
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
            raise refusal(BOOK, job, now, "bookings")
        if failed(app_reason):
            old = app_reason.get("Item")
            if not old:
                raise ApplicationNotFound("Application not found for this job.")
            status = old.get("status", {}).get("S")
            raise ApplicationNotPending("The application is no longer pending.", status=status)
        raise ConcurrentUpdate("The job changed during booking; retry.")

    def _refusing_job(self, reason: dict[str, Any], owner: str, job_id: str, not_owner: str) -> Job:
        """The job item that refused a transaction: 404 if none, 403 if another owner's."""
        old = reason.get("Item") or self._table.get(item_shapes.job_key(job_id))
        if not old:
            raise JobNotFound("Job not found.")
        job = item_shapes.job_from(item_shapes.deserialize(old))
        if job.owner != owner:
            raise Forbidden(not_owner, code="NOT_JOB_OWNER")
        return job

    # ---------------------------------------------------------- cancelling

    def cancel_job(self, owner: str, job_id: str, reason: str | None, now: str) -> Commit:
        """Cancels an OPEN job (started or not), or a CLOSED one before it starts.

        An OPEN job leaves the listing; a CLOSED one's accepted application becomes
        CANCELLED (``BOOKING_CANCELLED``) and the nanny's time is freed, atomically.
        Reports whether it was already CANCELLED (a replay: the caller re-queues what is
        still PENDING), with the job as stored then.
        """
        values = {**rule_values(CANCEL_OPEN, now), ":owner": item_shapes.string(owner)}
        update = "SET #status = :cancelled, cancelledAt = :now, updatedAt = :now"
        if reason:
            update += ", cancelReason = :reason"
            values[":reason"] = item_shapes.string(reason)
        job_update = {
            "Update": {
                "TableName": self._table.name,
                "Key": item_shapes.job_key(job_id),
                "ConditionExpression": job_condition(CANCEL_OPEN, _EXISTS, _OWNED),
                "UpdateExpression": update + " REMOVE GSI4PK, GSI4SK",
                "ExpressionAttributeNames": {"#status": "status", "#owner": "owner"},
                "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
        try:
            self._table.transact([job_update, self._delete_listing(job_id)])
        except Cancelled as cancelled:
            job_reason = reason_at(cancelled.reasons, 0)
            if not failed(job_reason):
                raise ConcurrentUpdate("The job changed while cancelling; retry.") from None
            job = self._refusing_job(job_reason, owner, job_id, "Only the job's owner can cancel it.")
            if job.status is JobStatus.CANCELLED:
                return Commit(replayed=True, job=job)
            if job.status is CANCEL_BOOKED.status:
                return self._cancel_booked_job(job, reason, now)
            raise refusal(CANCEL_OPEN, job, now, "changes") from None
        return Commit(replayed=False)

    def _cancel_booked_job(self, job: Job, reason: str | None, now: str) -> Commit:
        """CLOSED → CANCELLED before the start, its ACCEPTED application → CANCELLED.

        Conditioned on the booking read (its application still ACCEPTED): of this and
        the nanny's withdrawal, exactly one commits.
        """
        if CANCEL_BOOKED.unmet(job, now) is Unmet.TIMING:
            raise JobStarted("The job has started; it can no longer be cancelled.", startsAt=job.starts_at)
        application_id = job.accepted_application_id or ""
        nanny = self._booked_nanny(job)
        values = {
            **rule_values(CANCEL_BOOKED, now),
            ":owner": item_shapes.string(job.owner),
            ":app": item_shapes.string(application_id),
        }
        update = "SET #status = :cancelled, cancelledAt = :now, updatedAt = :now"
        if reason:
            update += ", cancelReason = :reason"
            values[":reason"] = item_shapes.string(reason)
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table.name,
                    "Key": item_shapes.job_key(job.job_id),
                    "ConditionExpression": job_condition(CANCEL_BOOKED, _OWNED, _BOOKED_READ),
                    "UpdateExpression": update + " REMOVE GSI4PK, GSI4SK",
                    "ExpressionAttributeNames": {"#status": "status", "#owner": "owner"},
                    "ExpressionAttributeValues": values,
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            {
                "Update": {
                    "TableName": self._table.name,
                    "Key": item_shapes.application_key(job.job_id, application_id),
                    "ConditionExpression": application_condition(CANCEL_BOOKING),
                    "UpdateExpression": "SET #status = :cancelled, reason = :why, updatedAt = :now",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": {
                        **rule_values(CANCEL_BOOKING, now),
                        ":why": item_shapes.string(Reason.BOOKING_CANCELLED.value),
                    },
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
        ]
        if nanny:
            items.append(self._calendar_release(nanny, job.job_id))
        try:
            self._table.transact(items)
        except Cancelled as cancelled:
            job_reason = reason_at(cancelled.reasons, 0)
            current = self._refusing_job(job_reason, job.owner, job.job_id, "Only the job's owner can cancel it.")
            if current.status is JobStatus.CANCELLED:
                return Commit(replayed=True, job=current)
            if CANCEL_BOOKED.unmet(current, now) is Unmet.TIMING:
                raise JobStarted(
                    "The job has started; it can no longer be cancelled.", startsAt=current.starts_at
                ) from None
            # The booked nanny withdrew (the job is OPEN again) or another booking replaced hers.
            raise ConcurrentUpdate(
                "The booking changed while cancelling; look at the job and retry.", status=current.status.value
            ) from None
        return Commit(replayed=False)

    # ---------------------------------------------------------- withdrawing

    def withdraw_application(
        self, applicant: str, job_id: str, application_id: str, now: str
    ) -> tuple[Application, bool]:
        """PENDING or ACCEPTED → WITHDRAWN, only by its applicant; an ACCEPTED one reopens the job.

        Returns the application and whether it was already WITHDRAWN (a replay)."""
        params = {
            "Key": item_shapes.application_key(job_id, application_id),
            "ConditionExpression": application_condition(WITHDRAW, _EXISTS, "applicant = :user"),
            "UpdateExpression": "SET #status = :withdrawn, updatedAt = :now",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {**rule_values(WITHDRAW, now), ":user": item_shapes.string(applicant)},
            "ReturnValues": "ALL_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        try:
            resp = self._table.update(params, conflict_message="The application changed meanwhile; retry.")
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            old = refused_item(exc)
            if not old:
                if self._table.get(item_shapes.job_key(job_id)) is None:
                    raise JobNotFound("Job not found.") from None
                raise ApplicationNotFound("Application not found for this job.") from None
            app = item_shapes.application_from(item_shapes.deserialize(old))
            if app.applicant != applicant:
                raise Forbidden("Only the applicant can withdraw an application.", code="NOT_APPLICANT") from None
            if app.status is ApplicationStatus.WITHDRAWN:
                return app, True
            if BACK_OUT.allows(app):
                return self._back_out(app, now), False
            raise ApplicationNotPending("The application is no longer pending.", status=app.status.value) from None
        return item_shapes.application_from(item_shapes.deserialize(resp["Attributes"])), False

    def _back_out(self, app: Application, now: str) -> Application:
        """The booked nanny withdraws before the start: ACCEPTED → WITHDRAWN, the job CLOSED → OPEN
        (listed again, a new round), her time freed, in one transaction."""
        job = self._read_job(app.job_id)
        if WITHDRAW_BOOKED.unmet(job, now) is Unmet.STATUS or job.accepted_application_id != app.application_id:
            # The parent cancelled the booking (or the job completed) since the application was read.
            current = self._read_application(app.job_id, app.application_id) or app
            if current.status is ApplicationStatus.WITHDRAWN:
                return current
            if current.status is not ApplicationStatus.ACCEPTED:
                raise ApplicationNotPending("The application is no longer active.", status=current.status.value)
            raise JobNotOpen(f"The job is {job.status.value.lower()}.", status=job.status.value)
        if WITHDRAW_BOOKED.unmet(job, now) is Unmet.TIMING:
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
            self._table.transact(
                [
                    {
                        "Update": {
                            "TableName": self._table.name,
                            "Key": item_shapes.application_key(app.job_id, app.application_id),
                            "ConditionExpression": application_condition(BACK_OUT, "applicant = :user"),
                            "UpdateExpression": "SET #status = :withdrawn, updatedAt = :now",
                            "ExpressionAttributeNames": {"#status": "status"},
                            "ExpressionAttributeValues": {
                                **rule_values(BACK_OUT, now),
                                ":user": item_shapes.string(app.applicant),
                            },
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table.name,
                            "Key": item_shapes.job_key(app.job_id),
                            "ConditionExpression": job_condition(WITHDRAW_BOOKED, _BOOKED_READ),
                            "UpdateExpression": "SET #status = :open, #round = :round, reopenedAt = :now, "
                            "updatedAt = :now, GSI4PK = :due, GSI4SK = :starts "
                            "REMOVE acceptedApplicationId, acceptedApplicant, closedAt",
                            "ExpressionAttributeNames": {"#status": "status", "#round": "round"},
                            "ExpressionAttributeValues": {
                                **rule_values(WITHDRAW_BOOKED, now),
                                ":app": item_shapes.string(app.application_id),
                                ":round": {"N": str(reopened.round)},
                                ":due": item_shapes.string(item_shapes.due_partition(job.job_id)),
                                ":starts": item_shapes.string(job.starts_at),
                            },
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table.name,
                            "Item": item_shapes.serialize(item_shapes.listing_item(reopened)),
                        }
                    },
                    self._calendar_release(app.applicant, app.job_id),
                ]
            )
        except Cancelled as cancelled:
            old = reason_at(cancelled.reasons, 0).get("Item")
            latest = (
                item_shapes.application_from(item_shapes.deserialize(old))
                if old
                else self._read_application(app.job_id, app.application_id)
            )
            if latest is not None and latest.status is ApplicationStatus.WITHDRAWN:
                return latest
            if latest is not None and latest.status is not ApplicationStatus.ACCEPTED:
                # The parent cancelled the booking first.
                raise ApplicationNotPending(
                    "The application is no longer active.", status=latest.status.value
                ) from None
            if WITHDRAW_BOOKED.unmet(self._read_job(app.job_id), now) is Unmet.TIMING:
                raise JobStarted(
                    "The job has started; the booking can no longer be withdrawn.", startsAt=job.starts_at
                ) from None
            raise ConcurrentUpdate("The booking changed while withdrawing; retry.") from None
        return replace(app, status=ApplicationStatus.WITHDRAWN, updated_at=now)

    # ------------------------------------------------------ expiry, completion

    def expire_job(self, job_id: str, now: str) -> bool:
        """OPEN → EXPIRED once started, leaving the listing. It stays in ``dueJobs`` until
        ``forget_due`` (after its declines are queued), so an interrupted run resumes.
        Returns whether this call expired it."""
        try:
            self._table.transact(
                [
                    {
                        "Update": {
                            "TableName": self._table.name,
                            "Key": item_shapes.job_key(job_id),
                            "ConditionExpression": job_condition(EXPIRE),
                            "UpdateExpression": "SET #status = :expired, expiredAt = :now, updatedAt = :now",
                            "ExpressionAttributeNames": {"#status": "status"},
                            "ExpressionAttributeValues": rule_values(EXPIRE, now),
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
            self._table.api_call(
                "update_item",
                TableName=self._table.name,
                Key=item_shapes.job_key(job_id),
                ConditionExpression="#status = :status",
                UpdateExpression="REMOVE GSI4PK, GSI4SK",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":status": item_shapes.string(status.value)},
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
                    "TableName": self._table.name,
                    "Key": item_shapes.job_key(job.job_id),
                    "ConditionExpression": job_condition(COMPLETE),
                    "UpdateExpression": "SET #status = :completed, completedAt = :now, updatedAt = :now "
                    "REMOVE GSI4PK, GSI4SK",
                    "ExpressionAttributeNames": {"#status": "status"},
                    "ExpressionAttributeValues": rule_values(COMPLETE, now),
                }
            }
        ]
        nanny = self._booked_nanny(job)
        if nanny:
            items.append(self._calendar_release(nanny, job.job_id))
        try:
            self._table.transact(items)
        except Cancelled:
            return False
        return True

    # ------------------------------------------------------------ declines

    def decline_application(
        self, job_id: str, application_id: str, now: str, reason: Reason | None = None
    ) -> DeclineOutcome:
        """PENDING → DECLINED (with why); anything else (ACCEPTED, WITHDRAWN, CANCELLED, DECLINED) is left as it is."""
        update = "SET #status = :declined, updatedAt = :now"
        values = rule_values(DECLINE, now)
        if reason is not None:
            update += ", reason = :why"
            values[":why"] = item_shapes.string(reason.value)
        try:
            self._table.api_call(
                "update_item",
                TableName=self._table.name,
                Key=item_shapes.application_key(job_id, application_id),
                ConditionExpression=application_condition(DECLINE),
                UpdateExpression=update,
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            old = refused_item(exc)  # none: the application does not exist
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


def _round_is(round_: int) -> str:
    # A job that never reopened has no round attribute.
    return "#round = :round" if round_ else "(attribute_not_exists(#round) OR #round = :round)"
