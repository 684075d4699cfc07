"""Emails the people concerned by a domain event, exactly once per person and event.

``RECIPIENTS`` says who hears of what: the applicant of every outcome of her
application, the parent of what happens to their job that they did not do
themselves. Texts are plain-text templates under ``chalicelib/templates`` (they ship
with the function): ``<event>.txt``, or ``<event>.<reason>.txt`` where a reason needs
its own words. The first line is ``Subject: ...``; ``$name`` fields are filled in.

Exactly once: before sending, a receipt keyed by (event id, recipient) is claimed
with a conditional put; after SES accepted the email it is marked SENT. A
redelivered event finds SENT and sends nothing; a claim left by a crash between
claim and send expires after ``lease_seconds`` and the retry sends it then (so a
crash in that window can delay an email, never lose it; a crash after SES accepted
and before the mark can send it twice: the one window left, ~ one call long).
Receipts carry the table's TTL. Addresses are read from the items at send time and
never logged nor kept in a receipt. Knows nothing of Chalice nor boto3.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from string import Template
from typing import Protocol

from chalicelib.booking import Metrics
from chalicelib.events import DomainEvent

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"


class Recipient(StrEnum):
    OWNER = "owner"  # the parent who posted the job
    APPLICANT = "applicant"  # the nanny who applied


RECIPIENTS: dict[str, tuple[Recipient, ...]] = {
    "ApplicationSubmitted": (Recipient.OWNER,),
    "ApplicationAccepted": (Recipient.APPLICANT,),
    "ApplicationDeclined": (Recipient.APPLICANT,),
    "ApplicationCancelled": (Recipient.APPLICANT,),
    "ApplicationWithdrawn": (Recipient.OWNER,),
    "JobExpired": (Recipient.OWNER,),
}

# A decline's reason, where the application does not carry one: the job's status says it.
_REASON_OF_JOB_STATUS = {"CLOSED": "JOB_BOOKED", "CANCELLED": "JOB_CANCELLED", "EXPIRED": "JOB_EXPIRED"}


class ClaimState(StrEnum):
    CLAIMED = "claimed"  # ours to send
    SENT = "sent"  # sent before: nothing to do
    IN_FLIGHT = "in_flight"  # another delivery holds it: retry later


class MailInFlight(RuntimeError):
    """Another delivery of the same event is sending this email: retry the record later."""


@dataclass(frozen=True)
class Person:
    user_id: str | None
    name: str | None
    email: str | None


@dataclass(frozen=True)
class MailContext:
    """What the texts need, read from the job and application items when the email is sent."""

    title: str
    job_status: str
    starts_at: str
    owner: Person
    applicant: Person | None


# What an email's context is read by: its event's job and application (None for a job's own event).
ContextKey = tuple[str, str | None]


class MailStore(Protocol):
    def mail_context(self, job_id: str, application_id: str | None) -> MailContext | None: ...
    def mail_contexts(self, events: Iterable[ContextKey]) -> dict[ContextKey, MailContext | None]: ...
    def claim_mail(self, event_id: str, recipient: str, *, lease_seconds: int) -> ClaimState: ...
    def mark_mail_sent(self, event_id: str, recipient: str) -> None: ...
    def release_mail(self, event_id: str, recipient: str) -> None: ...


class EmailSender(Protocol):
    def send(self, to: str, subject: str, body: str) -> str:
        """Returns the provider's message id; raises when it is not sent."""
        ...


@dataclass(frozen=True)
class Email:
    subject: str
    body: str


def _template_name(event_type: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", event_type).lower()


def render(event: DomainEvent, recipient: Recipient, ctx: MailContext, *, templates: Path = TEMPLATES) -> Email:
    reason = event.reason or (
        _REASON_OF_JOB_STATUS.get(ctx.job_status) if event.event_type == "ApplicationDeclined" else None
    )
    base = _template_name(event.event_type)
    names = ([f"{base}.{reason.lower()}.txt"] if reason else []) + [f"{base}.txt"]
    path = next((templates / n for n in names if (templates / n).exists()), None)
    if path is None:
        raise FileNotFoundError(f"no template for {event.event_type}")
    person = ctx.owner if recipient is Recipient.OWNER else ctx.applicant
    fields = {
        "title": ctx.title,
        "starts_at": ctx.starts_at,
        "job_id": event.job_id,
        "application_id": event.application_id or "",
        "name": (person.name if person else None) or "there",
        "applicant_name": (ctx.applicant.name if ctx.applicant else None) or "An applicant",
        "owner_name": ctx.owner.name or "The parent",
    }
    text = Template(path.read_text(encoding="utf-8")).safe_substitute(fields)
    first, _, rest = text.partition("\n")
    if not first.startswith("Subject: "):
        raise ValueError(f"{path.name} does not start with 'Subject: '")
    return Email(subject=first.removeprefix("Subject: ").strip(), body=rest.lstrip("\n"))


class Mailer:
    def __init__(
        self,
        store: MailStore,
        sender: EmailSender,
        *,
        metrics: Metrics,
        lease_seconds: int = 60,
        templates: Path = TEMPLATES,
    ) -> None:
        self._store = store
        self._sender = sender
        self._metrics = metrics
        self._lease = lease_seconds
        self._templates = templates

    def prefetch(self, events: Iterable[DomainEvent]) -> dict[ContextKey, MailContext | None]:
        """The contexts of every email these events send, in one read of the table: for
        ``handle`` to use instead of reading each event's job and application on its own."""
        wanted = [(e.job_id, e.application_id) for e in events if RECIPIENTS.get(e.event_type)]
        return self._store.mail_contexts(wanted) if wanted else {}

    def handle(self, event: DomainEvent, contexts: Mapping[ContextKey, MailContext | None] | None = None) -> int:
        """Sends this event's emails not sent yet; returns how many were sent now. Its context
        comes from ``contexts`` (``prefetch``) when they hold it, else from a read of its own."""
        recipients = RECIPIENTS.get(event.event_type, ())
        if not recipients:
            return 0
        key = (event.job_id, event.application_id)
        ctx = contexts[key] if contexts is not None and key in contexts else self._store.mail_context(*key)
        if ctx is None:
            log.warning("event names a job or application that does not exist; no email", extra=_ids(event))
            self._metrics.count("EmailsSkipped")
            return 0
        sent = 0
        for recipient in recipients:
            sent += self._send_one(event, recipient, ctx)
        return sent

    def _send_one(self, event: DomainEvent, recipient: Recipient, ctx: MailContext) -> int:
        person = ctx.owner if recipient is Recipient.OWNER else ctx.applicant
        if person is None or not person.email:
            log.info("no address on record; no email", extra={**_ids(event), "recipient": recipient.value})
            self._metrics.count("EmailsSkipped")
            return 0
        email = render(event, recipient, ctx, templates=self._templates)
        state = self._store.claim_mail(event.event_id, recipient.value, lease_seconds=self._lease)
        if state is ClaimState.SENT:
            log.info("email sent before; not again", extra={**_ids(event), "recipient": recipient.value})
            self._metrics.count("EmailsDuplicateSkipped")
            return 0
        if state is ClaimState.IN_FLIGHT:
            raise MailInFlight(f"{event.event_id}/{recipient.value} is being sent by another delivery")
        try:
            self._sender.send(person.email, email.subject, email.body)
        except Exception:
            self._store.release_mail(event.event_id, recipient.value)  # the retry sends it
            self._metrics.count("EmailsFailed")
            raise
        self._store.mark_mail_sent(event.event_id, recipient.value)
        self._metrics.count("EmailsSent")
        log.info("email sent", extra={**_ids(event), "recipient": recipient.value, "template": event.event_type})
        return 1


def _ids(event: DomainEvent) -> dict[str, str | None]:
    return {"eventId": event.event_id, "jobId": event.job_id, "applicationId": event.application_id}
