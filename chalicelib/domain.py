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
from typing import Generic, TypeVar

T = TypeVar("T")

# --------------------------------------------------------------------- statuses


class JobStatus(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"  # booked: one application ACCEPTED
    CANCELLED = "CANCELLED"  # by its owner: none accepted


class ApplicationStatus(StrEnum):
    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    WITHDRAWN = "WITHDRAWN"  # by the applicant; final (README "Withdrawing")


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


def is_valid_id(value: object) -> bool:
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

    def has_started(self, now: str) -> bool:
        """Past its start: no application or booking any more (times sort as text)."""
        return self.starts_at <= now


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


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    cursor: dict | None = None


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


@dataclass
class EnqueueReport:
    queued: int = 0
    failed_ids: list[str] = field(default_factory=list)
    sweep_failed: bool = False
