"""Use cases: post a job, apply, book a nanny, decline the others, cancel, withdraw.

The service talks to its storage and queue through the small protocols below;
``bootstrap.py`` wires in DynamoDB and SQS, tests may wire in fakes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Protocol

from chalicelib.domain import (
    Application,
    ApplicationNotFound,
    ApplicationStatus,
    BookingIncomplete,
    BookingResult,
    Caller,
    CancellationIncomplete,
    CancellationResult,
    DeclineOutcome,
    DeclinesNotQueued,
    EnqueueReport,
    Forbidden,
    Job,
    JobCreation,
    JobNotFound,
    JobNotOpen,
    JobStarted,
    JobStatus,
    NewJob,
    Page,
    Role,
    Unavailable,
    WithdrawalResult,
    format_time,
    new_id,
    utc_now,
)

log = logging.getLogger(__name__)


class Store(Protocol):
    def put_job(self, job: Job) -> None: ...
    def put_job_once(self, job: Job, client_key: str, fingerprint: str) -> str | None: ...
    def get_job(self, job_id: str) -> Job | None: ...
    def list_open_jobs(self, limit: int, cursor: dict | None, now: str) -> Page[Job]: ...
    def list_jobs_of_owner(self, owner: str, limit: int, cursor: dict | None) -> Page[Job]: ...
    def add_application(self, job: Job, app: Application) -> None: ...
    def get_application(self, job_id: str, application_id: str) -> Application | None: ...
    def list_applications(self, job_id: str, limit: int, cursor: dict | None) -> Page[Application]: ...
    def list_applications_of_applicant(self, user: str, limit: int, cursor: dict | None) -> Page[Application]: ...
    def close_job_and_accept(self, owner: str, job_id: str, application_id: str, now: str) -> Job | None: ...
    def cancel_job(self, owner: str, job_id: str, reason: str | None, now: str) -> Job | None: ...
    def withdraw_application(
        self, applicant: str, job_id: str, application_id: str, now: str
    ) -> tuple[Application, bool]: ...
    def job_with_pending_applications(
        self, job_id: str, *, consistent: bool = False
    ) -> tuple[Job | None, list[str]]: ...
    def decline_application(self, job_id: str, application_id: str, now: str) -> DeclineOutcome: ...


class DeclinePublisher(Protocol):
    def publish(
        self, job_id: str, application_ids: Sequence[str], *, sweep_after: int | None = None
    ) -> EnqueueReport: ...


class Metrics(Protocol):
    def count(self, name: str, value: int = 1) -> None: ...


class _NoMetrics:
    def count(self, name: str, value: int = 1) -> None:
        return None


class BookingService:
    def __init__(
        self,
        store: Store,
        publisher: DeclinePublisher,
        *,
        clock: Callable[[], str] = lambda: format_time(utc_now()),
        ids: Callable[[], str] = new_id,
        metrics: Metrics | None = None,
        sweep_delay_seconds: int = 30,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._sweep_delay = sweep_delay_seconds
        self._now = clock
        self._new_id = ids
        self._metrics = metrics or _NoMetrics()

    # ----------------------------------------------------------------- jobs

    def create_job(self, caller: Caller, new: NewJob, idempotency_key: str | None = None) -> JobCreation:
        """Posts a job; with an idempotency key, the same request within 24 h gets the same job."""
        _require(caller, Role.PARENT, "Only parents can post jobs.")
        job = Job(
            job_id=self._new_id(),
            owner=caller.username,
            status=JobStatus.OPEN,
            title=new.title,
            starts_at=new.starts_at,
            ends_at=new.ends_at,
            created_at=self._now(),
            description=new.description,
            hourly_rate=new.hourly_rate,
            location=new.location,
        )
        if idempotency_key is None:
            self._store.put_job(job)
            return JobCreation(job, created=True)
        existing_id = self._store.put_job_once(job, idempotency_key, new.fingerprint())
        if existing_id is None:
            return JobCreation(job, created=True)
        return JobCreation(self.get_job(existing_id), created=False)

    def get_job(self, job_id: str) -> Job:
        job = self._store.get_job(job_id)
        if job is None:
            raise JobNotFound("Job not found.")
        return job

    def list_open_jobs(self, limit: int, cursor: dict | None) -> Page[Job]:
        return self._store.list_open_jobs(limit, cursor, self._now())

    def list_my_jobs(self, caller: Caller, limit: int, cursor: dict | None) -> Page[Job]:
        return self._store.list_jobs_of_owner(caller.username, limit, cursor)

    # --------------------------------------------------------- applications

    def apply(self, caller: Caller, job_id: str, message: str | None) -> Application:
        _require(caller, Role.NANNY, "Only nannies can apply to jobs.")
        job = self.get_job(job_id)
        if job.owner == caller.username:  # a user may be in both groups
            raise Forbidden("You cannot apply to your own job.", code="OWN_JOB")
        if job.status is not JobStatus.OPEN:
            raise JobNotOpen("The job is not open for applications.")
        now = self._now()
        if job.has_started(now):
            raise JobStarted("The job has started; it takes no more applications.", startsAt=job.starts_at)
        app = Application(
            application_id=self._new_id(),
            job_id=job_id,
            applicant=caller.username,
            status=ApplicationStatus.PENDING,
            created_at=now,
            updated_at=now,
            message=message,
        )
        # The write re-checks that the job is OPEN and not started, atomically with the insert.
        self._store.add_application(job, app)
        return app

    def list_applications(self, caller: Caller, job_id: str, limit: int, cursor: dict | None) -> Page[Application]:
        job = self.get_job(job_id)
        if job.owner != caller.username:
            raise Forbidden("Only the job's owner can see its applications.", code="NOT_JOB_OWNER")
        return self._store.list_applications(job_id, limit, cursor)

    def list_my_applications(self, caller: Caller, limit: int, cursor: dict | None) -> Page[Application]:
        return self._store.list_applications_of_applicant(caller.username, limit, cursor)

    def get_application(self, caller: Caller, job_id: str, application_id: str) -> Application:
        """One application, for its applicant or the job's owner."""
        app = self._store.get_application(job_id, application_id)
        if app is None:
            self.get_job(job_id)  # an unknown job is a JOB_NOT_FOUND, as on every route
            raise ApplicationNotFound("Application not found for this job.")
        if app.applicant != caller.username and self.get_job(job_id).owner != caller.username:
            raise Forbidden("Only the applicant or the job's owner can see an application.", code="NOT_APPLICANT")
        return app

    def withdraw(self, caller: Caller, job_id: str, application_id: str) -> WithdrawalResult:
        """PENDING → WITHDRAWN by the applicant. Safe to repeat: a withdrawn one answers as it is."""
        _require(caller, Role.NANNY, "Only nannies can withdraw applications.")
        app, replayed = self._store.withdraw_application(caller.username, job_id, application_id, self._now())
        if not replayed:
            self._metrics.count("ApplicationsWithdrawn")
            log.info("application withdrawn", extra={"jobId": job_id, "applicationId": application_id})
        return WithdrawalResult(app, replayed=replayed)

    # -------------------------------------------------------------- booking

    def book(self, caller: Caller, job_id: str, application_id: str) -> BookingResult:
        """Accepts one application, closes the job and queues every other decline.

        Safe to repeat: booking the same application again re-queues whatever is
        still PENDING, which is how a crash or an enqueue failure is healed.
        """
        _require(caller, Role.PARENT, "Only parents can book nannies.")
        now = self._now()
        already_booked = self._store.close_job_and_accept(caller.username, job_id, application_id, now)
        if already_booked is None:
            self._metrics.count("Bookings")

        def booked(seen: Job | None) -> Job:
            if already_booked is not None:
                return already_booked
            base = seen or self._store.get_job(job_id)
            if base is None:  # pragma: no cover - the transaction has just written it
                raise JobNotFound("Job not found.")
            return replace(base, status=JobStatus.CLOSED, accepted_application_id=application_id, closed_at=now)

        job, queued = self._queue_declines(
            job_id,
            booked,
            keep=application_id,
            incomplete=BookingIncomplete(
                "The job is booked, but declining the other applicants could not start; "
                "repeat the same request to finish.",
                acceptedApplicationId=application_id,
            ),
            not_queued="The job is booked, but not every other applicant could be queued for decline; "
            "repeat the same request to finish.",
            details={"acceptedApplicationId": application_id},
        )
        return BookingResult(
            job=job,
            accepted_application_id=application_id,
            declines_queued=queued,
            replayed=already_booked is not None,
        )

    # ----------------------------------------------------------- cancelling

    def cancel(self, caller: Caller, job_id: str, reason: str | None) -> CancellationResult:
        """Cancels an OPEN job and queues a decline for every PENDING application.

        Conditioned on OPEN like a booking, so of a cancel and a booking racing exactly
        one commits. Safe to repeat: cancelling again re-queues whatever is still PENDING.
        """
        _require(caller, Role.PARENT, "Only parents can cancel jobs.")
        now = self._now()
        already = self._store.cancel_job(caller.username, job_id, reason, now)
        if already is None:
            self._metrics.count("JobsCancelled")
            log.info("job cancelled", extra={"jobId": job_id})

        def cancelled(seen: Job | None) -> Job:
            if already is not None:
                return already
            base = seen or self._store.get_job(job_id)
            if base is None:  # pragma: no cover - the transaction has just written it
                raise JobNotFound("Job not found.")
            return replace(base, status=JobStatus.CANCELLED, cancelled_at=now, cancel_reason=reason)

        job, queued = self._queue_declines(
            job_id,
            cancelled,
            keep=None,
            incomplete=CancellationIncomplete(
                "The job is cancelled, but declining its applicants could not start; repeat the same request to finish."
            ),
            not_queued="The job is cancelled, but not every applicant could be queued for decline; "
            "repeat the same request to finish.",
            details={},
        )
        return CancellationResult(job=job, declines_queued=queued, replayed=already is not None)

    def _queue_declines(
        self,
        job_id: str,
        job_as_committed: Callable[[Job | None], Job],
        *,
        keep: str | None,
        incomplete: Unavailable,
        not_queued: str,
        details: dict[str, object],
    ) -> tuple[Job, int]:
        """After a booking or a cancellation committed: queue a decline for every PENDING
        application but ``keep``, and the delayed sweep. Returns the job and the count queued."""
        try:
            # The index may lag behind the base table: an application written just
            # before the close can be missing here. The delayed sweep queued below
            # re-reads the job's partition consistently and declines what this missed.
            seen, pending = self._store.job_with_pending_applications(job_id)
            job = job_as_committed(seen)
        except Unavailable as exc:
            log.error("job settled but its applications could not be read", extra={"jobId": job_id})
            raise incomplete from exc
        pending = [p for p in pending if p != keep]
        report = self._publisher.publish(job_id, pending, sweep_after=self._sweep_delay)
        self._metrics.count("DeclinesQueued", report.queued)
        if report.failed_ids or report.sweep_failed:
            self._metrics.count("DeclinesNotQueued", len(report.failed_ids))
            log.error(
                "job settled but %d declines (sweep: %s) were not queued",
                len(report.failed_ids),
                "not queued" if report.sweep_failed else "queued",
                extra={"jobId": job_id, "applicationId": keep},
            )
            raise DeclinesNotQueued(
                not_queued,
                declinesQueued=report.queued,
                declinesNotQueued=len(report.failed_ids),
                sweepQueued=not report.sweep_failed,
                **details,
            )
        return job, report.queued

    # -------------------------------------------------------------- declines

    def decline(self, job_id: str, application_id: str) -> DeclineOutcome:
        outcome = self._store.decline_application(job_id, application_id, self._now())
        self._metrics.count(
            "DeclinesApplied" if outcome is DeclineOutcome.DECLINED else "DeclinesSkipped",
        )
        if outcome is DeclineOutcome.SKIPPED_ACCEPTED:
            log.warning("decline asked for the accepted application; left ACCEPTED")
        elif outcome is DeclineOutcome.SKIPPED_WITHDRAWN:
            log.info("decline of a withdrawn application; left WITHDRAWN")
        elif outcome is DeclineOutcome.UNKNOWN_APPLICATION:
            log.warning("decline named an unknown application; dropped")
        return outcome

    def sweep(self, job_id: str) -> int:
        """Declines every application of a booked or cancelled job still PENDING, read consistently.

        Queued (delayed) by each booking and cancellation for what its index query
        missed; no application can be added once the job left OPEN, so this leaves none behind.
        """
        job, pending = self._store.job_with_pending_applications(job_id, consistent=True)
        if job is None or job.status is JobStatus.OPEN:
            log.warning("sweep of a job that is still open; nothing to do", extra={"jobId": job_id})
            return 0
        declined = 0
        for application_id in pending:
            if application_id == job.accepted_application_id:
                continue
            if self.decline(job_id, application_id) is DeclineOutcome.DECLINED:
                declined += 1
        if declined:
            log.warning("sweep declined %d applications the booking had not seen", declined, extra={"jobId": job_id})
        self._metrics.count("DeclinesSwept", declined)
        return declined


def _require(caller: Caller, role: Role, message: str) -> None:
    if not caller.has(role):
        raise Forbidden(message, code="ROLE_REQUIRED")
