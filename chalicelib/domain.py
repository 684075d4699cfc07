"""Jobs, applications and the rules between them.

Nothing here knows about DynamoDB, SQS, HTTP or Chalice: the use cases in
``booking.py`` combine these types with the ports they are given.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Generic, TypeGuard, TypeVar

T = TypeVar("T")

# --------------------------------------------------------------------- statuses


class JobStatus(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"  # booked: one application ACCEPTED
    CANCELLED = "CANCELLED"  # by its owner, booked or not, before it started
    EXPIRED = "EXPIRED"  # its start passed while OPEN
    COMPLETED = "COMPLETED"  # its end passed while CLOSED


class ApplicationStatus(StrEnum):
    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    WITHDRAWN = "WITHDRAWN"  # by the applicant, pending or booked (docs/job-life.md)
    CANCELLED = "CANCELLED"  # accepted, then the parent cancelled the booked job


class Reason(StrEnum):
    """Why an application was declined or cancelled: part of the API."""

    JOB_BOOKED = "JOB_BOOKED"  # another applicant was booked
    JOB_CANCELLED = "JOB_CANCELLED"  # the parent cancelled the job while it was open
    JOB_EXPIRED = "JOB_EXPIRED"  # the job started with nobody booked
    BOOKING_CANCELLED = "BOOKING_CANCELLED"  # the parent cancelled the job this nanny was booked for


# The two state machines (drawn in docs/job-life.md). Every arrow is one conditional
# write in transitions.py, conditioned on the state it leaves; none other exists.
JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.OPEN: frozenset({JobStatus.CLOSED, JobStatus.CANCELLED, JobStatus.EXPIRED}),
    JobStatus.CLOSED: frozenset({JobStatus.OPEN, JobStatus.CANCELLED, JobStatus.COMPLETED}),
    JobStatus.CANCELLED: frozenset(),
    JobStatus.EXPIRED: frozenset(),
    JobStatus.COMPLETED: frozenset(),
}
APPLICATION_TRANSITIONS: dict[ApplicationStatus, frozenset[ApplicationStatus]] = {
    ApplicationStatus.PENDING: frozenset(
        {ApplicationStatus.ACCEPTED, ApplicationStatus.DECLINED, ApplicationStatus.WITHDRAWN}
    ),
    ApplicationStatus.ACCEPTED: frozenset({ApplicationStatus.WITHDRAWN, ApplicationStatus.CANCELLED}),
    ApplicationStatus.DECLINED: frozenset(),
    ApplicationStatus.WITHDRAWN: frozenset(),
    ApplicationStatus.CANCELLED: frozenset(),
}


def job_may_move(old: JobStatus, new: JobStatus) -> bool:
    return new in JOB_TRANSITIONS[old]


def application_may_move(old: ApplicationStatus, new: ApplicationStatus) -> bool:
    return new in APPLICATION_TRANSITIONS[old]


class Timing(StrEnum):
    """Where a job must stand against the request's time for a change (times sort as text)."""

    ANY = "ANY"
    BEFORE_START = "BEFORE_START"  # now < startsAt
    FROM_START = "FROM_START"  # startsAt <= now
    FROM_END = "FROM_END"  # endsAt <= now

    def holds(self, job: Job, now: str) -> bool:
        if self is Timing.BEFORE_START:
            return not job.has_started(now)
        if self is Timing.FROM_START:
            return job.has_started(now)
        if self is Timing.FROM_END:
            return job.has_ended(now)
        return True


class Unmet(StrEnum):
    """Which part of a rule a job fails."""

    STATUS = "STATUS"
    TIMING = "TIMING"


@dataclass(frozen=True)
class JobRule:
    """What a job must be for one change: its status, and its times against the request's.

    The one statement of each rule: the use cases check it, ``transitions.py`` builds its
    writes' conditions from it, and a refused write is explained by it (``refusal``).
    ``moves_to`` is the status the change leaves the job in (None: it keeps its status).
    """

    status: JobStatus
    timing: Timing = Timing.ANY
    moves_to: JobStatus | None = None

    def unmet(self, job: Job, now: str) -> Unmet | None:
        if job.status is not self.status:
            return Unmet.STATUS
        if not self.timing.holds(job, now):
            return Unmet.TIMING
        return None

    def allows(self, job: Job, now: str) -> bool:
        return self.unmet(job, now) is None


# A job takes applications, and is booked, only while OPEN and not started.
APPLY = JobRule(JobStatus.OPEN, Timing.BEFORE_START)
BOOK = JobRule(JobStatus.OPEN, Timing.BEFORE_START, moves_to=JobStatus.CLOSED)
# Its owner cancels it while OPEN, started or not, or once booked before it starts.
CANCEL_OPEN = JobRule(JobStatus.OPEN, moves_to=JobStatus.CANCELLED)
CANCEL_BOOKED = JobRule(JobStatus.CLOSED, Timing.BEFORE_START, moves_to=JobStatus.CANCELLED)
# The booked nanny backs out before the start: the job opens again.
WITHDRAW_BOOKED = JobRule(JobStatus.CLOSED, Timing.BEFORE_START, moves_to=JobStatus.OPEN)
# The scheduled run: an OPEN job expires once started, a booked one completes once ended.
EXPIRE = JobRule(JobStatus.OPEN, Timing.FROM_START, moves_to=JobStatus.EXPIRED)
COMPLETE = JobRule(JobStatus.CLOSED, Timing.FROM_END, moves_to=JobStatus.COMPLETED)
JOB_RULES = (APPLY, BOOK, CANCEL_OPEN, CANCEL_BOOKED, WITHDRAW_BOOKED, EXPIRE, COMPLETE)


@dataclass(frozen=True)
class ApplicationRule:
    """An application's change: the status it requires and the one it leaves."""

    status: ApplicationStatus
    moves_to: ApplicationStatus

    def allows(self, app: Application) -> bool:
        return app.status is self.status


ACCEPT = ApplicationRule(ApplicationStatus.PENDING, ApplicationStatus.ACCEPTED)
DECLINE = ApplicationRule(ApplicationStatus.PENDING, ApplicationStatus.DECLINED)
WITHDRAW = ApplicationRule(ApplicationStatus.PENDING, ApplicationStatus.WITHDRAWN)
BACK_OUT = ApplicationRule(ApplicationStatus.ACCEPTED, ApplicationStatus.WITHDRAWN)
CANCEL_BOOKING = ApplicationRule(ApplicationStatus.ACCEPTED, ApplicationStatus.CANCELLED)
APPLICATION_RULES = (ACCEPT, DECLINE, WITHDRAW, BACK_OUT, CANCEL_BOOKING)


def refusal(rule: JobRule, job: Job, now: str, what: str) -> Conflict:
    """Why a write conditioned on ``rule`` was refused by ``job`` as it is now (``what``: what
    the job no longer takes, e.g. "bookings")."""
    unmet = rule.unmet(job, now)
    if unmet is Unmet.TIMING and rule.timing is Timing.BEFORE_START:
        return JobStarted(f"The job has started; it takes no more {what}.", startsAt=job.starts_at)
    if unmet is None:  # the rule holds: something else in the write changed meanwhile
        return ConcurrentUpdate("The job changed meanwhile; retry.")
    if job.status is JobStatus.CLOSED:
        return JobNotOpen("The job is already booked.", acceptedApplicationId=job.accepted_application_id)
    return JobNotOpen(f"The job is {job.status.value.lower()}.", status=job.status.value)


def decline_reason(job_status: JobStatus) -> Reason | None:
    """Why the PENDING applications of a job in this state are declined (None: they are not)."""
    return _DECLINE_REASONS.get(job_status)


_DECLINE_REASONS = {
    JobStatus.CLOSED: Reason.JOB_BOOKED,
    JobStatus.CANCELLED: Reason.JOB_CANCELLED,
    JobStatus.EXPIRED: Reason.JOB_EXPIRED,
    JobStatus.COMPLETED: Reason.JOB_BOOKED,
}


class Role(StrEnum):
    PARENT = "parents"
    NANNY = "nannies"


# -------------------------------------------------------------------------- ids

# ULIDs: 48 bits of milliseconds then 80 random bits, Crockford base32. They sort
# by creation time, so keys built from them list newest first without an index.
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ID_RE = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
# User ids (the token's `sub`) become part of keys: anything that could alter a key's shape is
# refused. Usernames are display data, held to the same shape.
_USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
_EMAIL_RE = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]{1,189}$")


def new_id(now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def is_valid_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(_ID_RE.match(value))


def is_valid_username(value: object) -> bool:
    return isinstance(value, str) and bool(_USERNAME_RE.match(value))


def is_valid_user_id(value: object) -> bool:
    """A ``sub``: Cognito's are UUIDs; any id of the username's shape is accepted."""
    return is_valid_username(value)


def is_valid_email(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 254 and bool(_EMAIL_RE.match(value))


# ------------------------------------------------------------------------ times


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(value: datetime) -> str:
    """ISO 8601 UTC with millisecond precision; sorts lexicographically."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------- entities


@dataclass(frozen=True)
class Caller:
    """The verified caller. ``user_id`` (the token's ``sub``) is the identity: Cognito never
    gives it to anyone else, while a username can be freed and taken by a new account."""

    user_id: str
    username: str
    roles: frozenset[Role]
    email: str | None = None

    def has(self, role: Role) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class NewJob:
    title: str
    starts_at: str
    ends_at: str
    description: str | None = None
    hourly_rate: Decimal | None = None
    location: str | None = None

    def fingerprint(self) -> str:
        """A hash of the request's meaning: the same job posted twice has the same one."""
        canonical = json.dumps(asdict(self), sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Job:
    job_id: str
    owner: str  # the owner's user id (sub)
    status: JobStatus
    title: str
    starts_at: str
    ends_at: str
    created_at: str
    description: str | None = None
    hourly_rate: Decimal | None = None
    location: str | None = None
    accepted_application_id: str | None = None
    closed_at: str | None = None
    cancelled_at: str | None = None
    cancel_reason: str | None = None
    owner_name: str | None = None  # the owner's username when the job was posted: display only
    owner_email: str | None = None  # for notifications; never in answers or logs
    expired_at: str | None = None
    completed_at: str | None = None
    # The booked nanny (set with accepted_application_id): whose calendar holds this job.
    accepted_applicant: str | None = None
    # How many times a booked nanny backed out and the job reopened: an application of
    # an earlier round does not keep its applicant from applying again.
    round: int = 0

    def has_started(self, now: str) -> bool:
        """Past its start: no application or booking any more (times sort as text)."""
        return self.starts_at <= now

    def has_ended(self, now: str) -> bool:
        return self.ends_at <= now

    def slot(self) -> Slot:
        return Slot(self.job_id, self.starts_at, self.ends_at)


@dataclass(frozen=True)
class Commit:
    """What a transaction taking a job out of OPEN (a booking, a cancel) reports.

    ``replayed``: the same change had committed before, and this call wrote nothing.
    ``job``: the job as stored after the call, when the call knows it (it read the job
    before writing it, or found the change made); None when it wrote without reading it.
    """

    replayed: bool
    job: Job | None = None


@dataclass(frozen=True)
class Slot:
    """A booked job's time, ``[starts_at, ends_at)``, in a nanny's calendar."""

    job_id: str
    starts_at: str
    ends_at: str

    def overlaps(self, other: Slot) -> bool:
        return self.starts_at < other.ends_at and other.starts_at < self.ends_at


def clash(booked: list[Slot], wanted: Slot) -> Slot | None:
    """The first booking of another job whose time overlaps ``wanted``, or None."""
    return next((b for b in booked if b.job_id != wanted.job_id and b.overlaps(wanted)), None)


def past_slots(booked: list[Slot], now: str) -> list[Slot]:
    """Bookings whose end has passed: nothing can clash with them any more."""
    return [b for b in booked if b.ends_at <= now]


@dataclass(frozen=True)
class Application:
    application_id: str
    job_id: str
    applicant: str  # the applicant's user id (sub)
    status: ApplicationStatus
    created_at: str
    updated_at: str
    message: str | None = None
    applicant_name: str | None = None  # the applicant's username when applying: display only
    applicant_email: str | None = None  # for notifications; never in answers or logs
    reason: Reason | None = None  # set when DECLINED or CANCELLED


# Where a listing resumes: the store's own shape, opaque to everything above it.
Cursor = dict[str, Any]


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    cursor: Cursor | None = None


@dataclass(frozen=True)
class JobCreation:
    job: Job
    created: bool  # False: an earlier request with the same idempotency key created it


@dataclass(frozen=True)
class BookingResult:
    job: Job
    accepted_application_id: str
    declines_queued: int
    replayed: bool = False


@dataclass(frozen=True)
class CancellationResult:
    job: Job
    declines_queued: int
    replayed: bool = False


@dataclass(frozen=True)
class WithdrawalResult:
    application: Application
    replayed: bool = False


class DeclineOutcome(StrEnum):
    DECLINED = "declined"
    ALREADY_DECLINED = "already_declined"
    SKIPPED_ACCEPTED = "skipped_accepted"
    SKIPPED_WITHDRAWN = "skipped_withdrawn"
    SKIPPED_CANCELLED = "skipped_cancelled"
    UNKNOWN_APPLICATION = "unknown_application"


# ----------------------------------------------------------------------- errors


class DomainError(Exception):
    """A refusal the caller can act on. ``code`` is stable and part of the API."""

    code = "INVALID_REQUEST"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(DomainError):
    code = "INVALID_REQUEST"

    def __init__(self, message: str, code: str = "INVALID_REQUEST", **details: object) -> None:
        super().__init__(message, **details)
        self.code = code


class Forbidden(DomainError):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class JobNotFound(DomainError):
    code = "JOB_NOT_FOUND"


class ApplicationNotFound(DomainError):
    code = "APPLICATION_NOT_FOUND"


class Conflict(DomainError):
    """The request is valid but the state of the job or application refuses it."""


class JobNotOpen(Conflict):
    code = "JOB_NOT_OPEN"


class JobStarted(Conflict):
    """The job's start time has passed: it takes no application and no booking."""

    code = "JOB_STARTED"


class ApplicationNotPending(Conflict):
    code = "APPLICATION_NOT_PENDING"


class NannyUnavailable(Conflict):
    """The applicant is already booked for a job whose time overlaps this one."""

    code = "NANNY_UNAVAILABLE"


class AlreadyApplied(Conflict):
    code = "ALREADY_APPLIED"


class ConcurrentUpdate(Conflict):
    code = "CONCURRENT_UPDATE"


class IdempotencyKeyReused(DomainError):
    """The same idempotency key came with a different request."""

    code = "IDEMPOTENCY_KEY_REUSED"


class Unavailable(DomainError):
    """A dependency refused or failed; the request may be retried as it is."""

    code = "SERVICE_UNAVAILABLE"


class OutcomeUnknown(Unavailable):
    """A write may or may not have been applied (its answer was lost and a re-send found it
    still running). Repeating the same request is safe and tells which."""

    code = "OUTCOME_UNKNOWN"


class DeclinesNotQueued(Unavailable):
    """The booking is committed but some declines could not be enqueued.

    Repeating the same booking request enqueues what is still pending.
    """

    code = "DECLINES_NOT_QUEUED"


class BookingIncomplete(Unavailable):
    """The booking is committed but a later step (reading the applications) failed.

    Repeating the same booking request finishes it.
    """

    code = "BOOKING_INCOMPLETE"


class CancellationIncomplete(Unavailable):
    """The cancellation is committed but reading the applications to decline failed.

    Repeating the cancellation finishes it.
    """

    code = "CANCELLATION_INCOMPLETE"


@dataclass(frozen=True)
class SettleReport:
    """One run of the scheduled settling of due jobs."""

    expired: int = 0
    completed: int = 0
    declines_queued: int = 0
    failed: int = 0  # left for the next run
    more: bool = False  # the run stopped at its bound with due jobs left


@dataclass
class EnqueueReport:
    queued: int = 0
    failed_ids: list[str] = field(default_factory=list)
    sweep_failed: bool = False
