"""Domain events: what a committed change of a job or an application means.

Derived from the item before and after the change (the table's stream), never from
the request that made it, so an event exists whatever happened to that request. One
table, ``TRANSITIONS``, names the event of each (entity, status before, status after):
a new status flows through with a line here (and a template in ``mail.py`` if someone
is to be told). Nothing here knows boto3 or Chalice. Schema: docs/stream.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

SCHEMA_VERSION = 1
SOURCE = "babysitting.booking"
JOB = "job"
APPLICATION = "application"
NEW = None  # the status before an item existed
ANY = "*"  # any status before (not NEW)

# (entity, status before, status after) -> event type. Statuses are plain strings, so a
# status this code's enums do not know yet still maps (or is ignored) without an error.
TRANSITIONS: dict[tuple[str, str | None, str], str] = {
    (JOB, NEW, "OPEN"): "JobPosted",
    (JOB, "OPEN", "CLOSED"): "JobBooked",
    (JOB, "OPEN", "CANCELLED"): "JobCancelled",
    (JOB, "CLOSED", "CANCELLED"): "JobCancelled",
    (JOB, "OPEN", "EXPIRED"): "JobExpired",
    (JOB, "CLOSED", "COMPLETED"): "JobCompleted",
    (JOB, "CLOSED", "OPEN"): "JobReopened",
    (APPLICATION, NEW, "PENDING"): "ApplicationSubmitted",
    (APPLICATION, "PENDING", "ACCEPTED"): "ApplicationAccepted",
    (APPLICATION, "PENDING", "DECLINED"): "ApplicationDeclined",
    (APPLICATION, ANY, "WITHDRAWN"): "ApplicationWithdrawn",
    (APPLICATION, ANY, "CANCELLED"): "ApplicationCancelled",
}
EVENT_TYPES = frozenset(TRANSITIONS.values())


class InvalidEvent(ValueError):
    """An event body this code cannot read: no retry will change that."""


@dataclass(frozen=True)
class EntityState:
    """A job or an application as one stream image shows it (``items.state_of`` reads it)."""

    kind: str
    job_id: str
    status: str
    application_id: str | None = None
    owner: str | None = None  # jobs: the parent
    applicant: str | None = None  # applications: the nanny
    reason: str | None = None
    changed_at: str | None = None


@dataclass(frozen=True)
class DomainEvent:
    event_type: str
    job_id: str
    application_id: str | None
    from_status: str | None
    to_status: str
    occurred_at: str
    owner: str | None
    applicant: str | None
    reason: str | None = None

    @property
    def event_id(self) -> str:
        """The same change always gets the same id: a redelivered record, a replay, a second reader."""
        parts = (self.event_type, self.job_id, self.application_id or "", self.to_status, self.occurred_at)
        return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:32]

    def detail(self) -> dict[str, Any]:
        return {
            "schemaVersion": SCHEMA_VERSION,
            "eventId": self.event_id,
            "type": self.event_type,
            "occurredAt": self.occurred_at,
            "jobId": self.job_id,
            "applicationId": self.application_id,
            "status": {"from": self.from_status, "to": self.to_status},
            "reason": self.reason,
            "people": {"owner": self.owner, "applicant": self.applicant},
        }

    @classmethod
    def from_detail(cls, detail: object) -> DomainEvent:
        if not isinstance(detail, dict):
            raise InvalidEvent("event detail is not an object")
        version = detail.get("schemaVersion")
        if type(version) is not int or version != SCHEMA_VERSION:
            raise InvalidEvent(f"unknown event schema version: {version!r}")
        status, people = detail.get("status"), detail.get("people")
        if not isinstance(status, dict) or not isinstance(people, dict):
            raise InvalidEvent("event status or people missing")
        try:
            event = cls(
                event_type=_text(detail, "type"),
                job_id=_text(detail, "jobId"),
                application_id=_optional(detail, "applicationId"),
                from_status=_optional(status, "from"),
                to_status=_text(status, "to"),
                occurred_at=_text(detail, "occurredAt"),
                owner=_optional(people, "owner"),
                applicant=_optional(people, "applicant"),
                reason=_optional(detail, "reason"),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidEvent(f"event field missing or not text: {exc}") from None
        if event.event_id != detail.get("eventId"):
            raise InvalidEvent("eventId does not match the event's content")
        return event


def _text(data: dict[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str) or not value:
        raise TypeError(name)
    return value


def _optional(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise TypeError(name)
    return value


def event_type_of(kind: str, before: str | None, after: str) -> str | None:
    found = TRANSITIONS.get((kind, before, after))
    if found is None and before is not NEW:
        found = TRANSITIONS.get((kind, ANY, after))
    return found


def event_of(
    old: EntityState | None, new: EntityState | None, *, owner: str | None = None, fallback_time: str
) -> DomainEvent | None:
    """The event of one change, or None (no status change, a deletion, a transition nobody names).

    ``owner`` is the job's owner, which an application's image does not carry.
    """
    if new is None:
        return None  # a deletion: jobs and applications are never deleted, other items are not events
    before = old.status if old is not None else NEW
    if before == new.status:
        return None
    event_type = event_type_of(new.kind, before, new.status)
    if event_type is None:
        return None
    return DomainEvent(
        event_type=event_type,
        job_id=new.job_id,
        application_id=new.application_id,
        from_status=before,
        to_status=new.status,
        occurred_at=new.changed_at or fallback_time,
        owner=new.owner or owner,
        applicant=new.applicant,
        reason=new.reason,
    )


def leaves_open(old: EntityState | None, new: EntityState | None) -> bool:
    """A job left OPEN (booked, cancelled, expired...): every PENDING application must be settled."""
    return old is not None and new is not None and new.kind == JOB and old.status == "OPEN" and new.status != "OPEN"
