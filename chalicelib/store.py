"""The single-table DynamoDB store: ``booking.Store`` and the mailer's and stream's reads.

Composed of one part per concern (see docs/architecture.md#data-model):

  items.py          key and item shapes
  dynamo.py         ``Table``: the raw calls, their errors, transactions and their retries
  store_postings.py ``Postings``: a new job, with or without an idempotency key
  transitions.py    ``Transitions``: the conditional writes of a job's life, from ``domain.py``'s rules
  store_reads.py    ``Reads``: by id, the listings, pending applications, due jobs
  mail_store.py     ``MailRecords``: what the stream and the mailer read and write

``DynamoStore`` holds them and says which answers what; it has no logic of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from chalicelib.domain import Application, Commit, Cursor, DeclineOutcome, Job, JobStatus, Page, Reason, Slot
from chalicelib.dynamo import TRANSACTION_DEADLINE_SECONDS, Table
from chalicelib.mail import ClaimState, ContextKey, MailContext
from chalicelib.mail_store import MailRecords
from chalicelib.store_postings import Postings
from chalicelib.store_reads import Reads
from chalicelib.transitions import Transitions


class DynamoStore:
    """Reads and writes jobs and applications in one table."""

    def __init__(
        self,
        client: object,
        table_name: str,
        query_page_size: int | None = None,
        *,
        transaction_deadline_seconds: float = TRANSACTION_DEADLINE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._table = Table(
            client, table_name, query_page_size, transaction_deadline_seconds=transaction_deadline_seconds
        )
        self._postings = Postings(self._table)
        self._transitions = Transitions(self._table, monotonic=monotonic)
        self._reads = Reads(self._table)
        self._mail = MailRecords(self._table)

    # ----------------------------------------------------------------- jobs

    def put_job(self, job: Job) -> None:
        self._postings.put_job(job)

    def put_job_once(self, job: Job, client_key: str, fingerprint: str) -> str:
        return self._postings.put_job_once(job, client_key, fingerprint)

    def get_job(self, job_id: str) -> Job | None:
        return self._reads.get_job(job_id)

    def list_open_jobs(self, limit: int, cursor: Cursor | None, now: str) -> Page[Job]:
        return self._reads.list_open_jobs(limit, cursor, now)

    def list_jobs_of_owner(self, owner: str, limit: int, cursor: Cursor | None) -> Page[Job]:
        return self._reads.list_jobs_of_owner(owner, limit, cursor)

    def closed_jobs(self, page_size: int = 500) -> Iterator[Job]:
        return self._reads.closed_jobs(page_size)

    # --------------------------------------------------------- applications

    def add_application(self, job: Job, app: Application) -> None:
        self._transitions.add_application(job, app)

    def get_application(self, job_id: str, application_id: str) -> Application | None:
        return self._reads.get_application(job_id, application_id)

    def list_applications(self, job_id: str, limit: int, cursor: Cursor | None) -> Page[Application]:
        return self._reads.list_applications(job_id, limit, cursor)

    def list_applications_of_applicant(self, user: str, limit: int, cursor: Cursor | None) -> Page[Application]:
        return self._reads.list_applications_of_applicant(user, limit, cursor)

    def job_with_pending_applications(self, job_id: str) -> tuple[Job | None, list[str]]:
        return self._reads.job_with_pending_applications(job_id)

    def indexed_application_ids(self, job_id: str) -> list[str]:
        return self._reads.indexed_application_ids(job_id)

    # ---------------------------------------------------------- transitions

    def calendar(self, user: str) -> tuple[int, list[Slot]]:
        return self._transitions.calendar(user)

    def close_job_and_accept(self, owner: str, job_id: str, application_id: str, now: str) -> Commit:
        return self._transitions.close_job_and_accept(owner, job_id, application_id, now)

    def cancel_job(self, owner: str, job_id: str, reason: str | None, now: str) -> Commit:
        return self._transitions.cancel_job(owner, job_id, reason, now)

    def withdraw_application(
        self, applicant: str, job_id: str, application_id: str, now: str
    ) -> tuple[Application, bool]:
        return self._transitions.withdraw_application(applicant, job_id, application_id, now)

    def decline_application(
        self, job_id: str, application_id: str, now: str, reason: Reason | None = None
    ) -> DeclineOutcome:
        return self._transitions.decline_application(job_id, application_id, now, reason)

    def due_job_ids(self, now: str, limit: int) -> list[str]:
        return self._reads.due_job_ids(now, limit)

    def expire_job(self, job_id: str, now: str) -> bool:
        return self._transitions.expire_job(job_id, now)

    def complete_job(self, job: Job, now: str) -> bool:
        return self._transitions.complete_job(job, now)

    def forget_due(self, job_id: str, status: JobStatus) -> None:
        self._transitions.forget_due(job_id, status)

    # ----------------------------------------------------------------- mail

    def owner_of(self, job_id: str) -> str | None:
        return self._mail.owner_of(job_id)

    def mail_context(self, job_id: str, application_id: str | None) -> MailContext | None:
        return self._mail.mail_context(job_id, application_id)

    def mail_contexts(self, events: Iterable[ContextKey]) -> dict[ContextKey, MailContext | None]:
        return self._mail.mail_contexts(events)

    def claim_mail(self, event_id: str, recipient: str, *, lease_seconds: int) -> ClaimState:
        return self._mail.claim_mail(event_id, recipient, lease_seconds=lease_seconds)

    def mark_mail_sent(self, event_id: str, recipient: str) -> None:
        self._mail.mark_mail_sent(event_id, recipient)

    def release_mail(self, event_id: str, recipient: str) -> None:
        self._mail.release_mail(event_id, recipient)
