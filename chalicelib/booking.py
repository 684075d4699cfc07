"""Use cases: post a job, apply, book a nanny, decline the others, cancel, withdraw, expire, complete.

The service talks to its storage and queue through the small protocols below;
``bootstrap.py`` wires in DynamoDB and SQS, tests may wire in fakes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass, replace
from typing import Generic, Protocol, TypeVar

from chalicelib.domain import (
    APPLY,
    COMPLETE,
    EXPIRE,
    Application,
    ApplicationNotFound,
    ApplicationStatus,
    BookingIncomplete,
    BookingResult,
    Caller,
    CancellationIncomplete,
    CancellationResult,
    Commit,
    Cursor,
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
    OutcomeUnknown,
    Page,
    Reason,
    Role,
    SettleReport,
    Unavailable,
    Unmet,
    WithdrawalResult,
    decline_reason,
    format_time,
    new_id,
    utc_now,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class Store(Protocol):
    def put_job(self, job: Job) -> None: ...
    def put_job_once(self, job: Job, client_key: str, fingerprint: str) -> str: ...
    def get_job(self, job_id: str) -> Job | None: ...
    def list_open_jobs(self, limit: int, cursor: Cursor | None, now: str) -> Page[Job]: ...
    def list_jobs_of_owner(self, owner: str, limit: int, cursor: Cursor | None) -> Page[Job]: ...
    def add_application(self, job: Job, app: Application) -> None: ...
    def get_application(self, job_id: str, application_id: str) -> Application | None: ...
    def list_applications(self, job_id: str, limit: int, cursor: Cursor | None) -> Page[Application]: ...
    def list_applications_of_applicant(self, user: str, limit: int, cursor: Cursor | None) -> Page[Application]: ...
    def close_job_and_accept(self, owner: str, job_id: str, application_id: str, now: str) -> Commit: ...
    def cancel_job(self, owner: str, job_id: str, reason: str | None, now: str) -> Commit: ...
    def withdraw_application(
        self, applicant: str, job_id: str, application_id: str, now: str
    ) -> tuple[Application, bool]: ...
    def job_with_pending_applications(self, job_id: str) -> tuple[Job | None, list[str]]: ...
    def indexed_application_ids(self, job_id: str) -> list[str]: ...
    def decline_application(
        self, job_id: str, application_id: str, now: str, reason: Reason | None = None
    ) -> DeclineOutcome: ...
    def due_job_ids(self, now: str, limit: int) -> list[str]: ...
    def expire_job(self, job_id: str, now: str) -> bool: ...
    def complete_job(self, job: Job, now: str) -> bool: ...
    def forget_due(self, job_id: str, status: JobStatus) -> None: ...


class DeclinePublisher(Protocol):
    def publish(
        self,
        job_id: str,
        application_ids: Sequence[str],
        *,
        sweep_after: int | None = None,
        reason: Reason | None = None,
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
        executor: Executor | None = None,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._sweep_delay = sweep_delay_seconds
        self._now = clock
        self._new_id = ids
        self._metrics = metrics or _NoMetrics()
        # Runs a booking's index read beside its transaction; without one, the read follows the commit.
        self._executor = executor

    # ----------------------------------------------------------------- jobs

    def create_job(self, caller: Caller, new: NewJob, idempotency_key: str | None = None) -> JobCreation:
        """Posts a job; with an idempotency key, the same request within 24 h gets the same job."""
        _require(caller, Role.PARENT, "Only parents can post jobs.")
        job = Job(
            job_id=self._new_id(),
            owner=caller.user_id,
            status=JobStatus.OPEN,
            title=new.title,
            starts_at=new.starts_at,
            ends_at=new.ends_at,
            created_at=self._now(),
            description=new.description,
            hourly_rate=new.hourly_rate,
            location=new.location,
            owner_name=caller.username,
            owner_email=caller.email,
        )
        if idempotency_key is None:
            self._store.put_job(job)
            return JobCreation(job, created=True)
        holder = self._store.put_job_once(job, idempotency_key, new.fingerprint())
        if holder == job.job_id:
            return JobCreation(job, created=True)
        return JobCreation(self.get_job(holder), created=False)

    def get_job(self, job_id: str) -> Job:
        job = self._store.get_job(job_id)
        if job is None:
            raise JobNotFound("Job not found.")
        return job

    def list_open_jobs(self, limit: int, cursor: Cursor | None) -> Page[Job]:
        return self._store.list_open_jobs(limit, cursor, self._now())

    def list_my_jobs(self, caller: Caller, limit: int, cursor: Cursor | None) -> Page[Job]:
        return self._store.list_jobs_of_owner(caller.user_id, limit, cursor)

    # --------------------------------------------------------- applications

    def apply(self, caller: Caller, job_id: str, message: str | None) -> Application:
        _require(caller, Role.NANNY, "Only nannies can apply to jobs.")
        job = self.get_job(job_id)
        if job.owner == caller.user_id:  # a user may be in both groups
            raise Forbidden("You cannot apply to your own job.", code="OWN_JOB")
        if job.status is not APPLY.status:
            raise JobNotOpen("The job is not open for applications.")
        now = self._now()
        if APPLY.unmet(job, now) is Unmet.TIMING:
            raise JobStarted("The job has started; it takes no more applications.", startsAt=job.starts_at)
        app = Application(
            application_id=self._new_id(),
            job_id=job_id,
            applicant=caller.user_id,
            status=ApplicationStatus.PENDING,
            created_at=now,
            updated_at=now,
            message=message,
            applicant_name=caller.username,
            applicant_email=caller.email,
        )
        # The write re-checks the same rule, atomically with the insert.
        self._store.add_application(job, app)
        return app

    def list_applications(self, caller: Caller, job_id: str, limit: int, cursor: Cursor | None) -> Page[Application]:
        job = self.get_job(job_id)
        if job.owner != caller.user_id:
            raise Forbidden("Only the job's owner can see its applications.", code="NOT_JOB_OWNER")
        return self._store.list_applications(job_id, limit, cursor)

    def list_my_applications(self, caller: Caller, limit: int, cursor: Cursor | None) -> Page[Application]:
        return self._store.list_applications_of_applicant(caller.user_id, limit, cursor)

    def get_application(self, caller: Caller, job_id: str, application_id: str) -> Application:
        """One application, for its applicant or the job's owner."""
        app = self._store.get_application(job_id, application_id)
        if app is None:
            self.get_job(job_id)  # an unknown job is a JOB_NOT_FOUND, as on every route
            raise ApplicationNotFound("Application not found for this job.")
        if app.applicant != caller.user_id and self.get_job(job_id).owner != caller.user_id:
            raise Forbidden("Only the applicant or the job's owner can see an application.", code="NOT_APPLICANT")
        return app

    def withdraw(self, caller: Caller, job_id: str, application_id: str) -> WithdrawalResult:
        """PENDING → WITHDRAWN by the applicant. Safe to repeat: a withdrawn one answers as it is."""
        _require(caller, Role.NANNY, "Only nannies can withdraw applications.")
        app, replayed = self._store.withdraw_application(caller.user_id, job_id, application_id, self._now())
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
        settled = self._settle(
            job_id,
            reason=Reason.JOB_BOOKED,
            commit=lambda: self._store.close_job_and_accept(caller.user_id, job_id, application_id, now),
            reads_job=True,
            as_committed=lambda job: replace(
                job, status=JobStatus.CLOSED, accepted_application_id=application_id, closed_at=now
            ),
            keep=application_id,
            texts=_BOOKING,
            details={"acceptedApplicationId": application_id},
        )
        return BookingResult(
            job=settled.job,
            accepted_application_id=application_id,
            declines_queued=settled.queued,
            replayed=settled.replayed,
        )

    # ----------------------------------------------------------- cancelling

    def cancel(self, caller: Caller, job_id: str, reason: str | None) -> CancellationResult:
        """Cancels a job, OPEN or booked (before its start), and queues a decline for every PENDING application.

        An OPEN job's cancel is conditioned on OPEN like a booking, so of a cancel and a
        booking racing exactly one commits; a booked job's cancel on its application
        still ACCEPTED, so of it and the nanny's withdrawal exactly one commits. Safe to
        repeat: cancelling again re-queues whatever is still PENDING.
        """
        _require(caller, Role.PARENT, "Only parents can cancel jobs.")
        now = self._now()
        settled = self._settle(
            job_id,
            reason=Reason.JOB_CANCELLED,
            commit=lambda: self._store.cancel_job(caller.user_id, job_id, reason, now),
            reads_job=False,
            as_committed=lambda job: replace(job, status=JobStatus.CANCELLED, cancelled_at=now, cancel_reason=reason),
            keep=None,
            texts=_CANCELLATION,
            details={},
        )
        return CancellationResult(job=settled.job, declines_queued=settled.queued, replayed=settled.replayed)

    def _settle(
        self,
        job_id: str,
        *,
        reason: Reason,
        commit: Callable[[], Commit],
        reads_job: bool,
        as_committed: Callable[[Job], Job],
        keep: str | None,
        texts: _SettleTexts,
        details: dict[str, object],
    ) -> _Settled:
        """Takes a job out of OPEN (``commit``), then queues its sweep and a decline for
        every other application the ``jobApplications`` index lists (``keep`` apart).

        ``commit`` reports whether the same change had already committed (a replay) and,
        when it knows, the job as it left it. The index read goes out together with the
        transaction (and a read of the job, for the answer, unless the commit ``reads_job``
        itself, as a booking does): it changes nothing if the transaction is refused, and what it
        misses (a lagging index, an application racing the commit) the sweep declines.
        The index holds keys only, so it may list an application no longer PENDING: its
        decline is queued and the worker leaves it as it is. A replay reads what is still
        PENDING instead. The sweep needs nothing but the commit: it goes out first, even
        when the read failed or the commit's outcome is unknown (a sweep of a job still
        OPEN does nothing). Nothing after the commit can answer a 500: every failure
        there is a 503 the client repeats, counted in ``PostCommitFailures``.
        """
        read_job = None if reads_job else self._start(lambda: self._store.get_job(job_id))
        read_index = self._start(lambda: self._store.indexed_application_ids(job_id))
        try:
            committed = commit()
            if not committed.replayed:
                self._metrics.count(texts.committed_metric)
                log.info("%s committed", texts.committed_metric, extra={"jobId": job_id})
        except OutcomeUnknown as exc:
            sweep_queued = self._queue_sweep_alone(job_id, "its outcome is unknown")
            raise OutcomeUnknown(texts.unknown, sweepQueued=sweep_queued, **details) from exc
        finally:
            # A refused commit still lets its reads finish: no thread outlives the request.
            if read_job is not None:
                read_job.settle()
            read_index.settle()
        try:
            # A replay heals what an earlier call left undone: it re-queues only what is
            # still PENDING, read consistently (the index cannot tell).
            listed = self._store.job_with_pending_applications(job_id)[1] if committed.replayed else read_index.result()
            job = committed.job
            if job is None:
                base = read_job.result() if read_job is not None else self._store.get_job(job_id)
                if base is None:  # pragma: no cover - the transaction has just written it
                    raise JobNotFound("Job not found.")
                job = as_committed(base)
        except Exception as exc:
            log.error("job settled but its applications could not be read", extra={"jobId": job_id})
            sweep_queued = self._queue_sweep_alone(job_id, "its applications could not be read")
            raise texts.incomplete(sweepQueued=sweep_queued, **details) from exc
        pending = [p for p in listed if p != keep]
        try:
            report = self._publisher.publish(job_id, pending, sweep_after=self._sweep_delay, reason=reason)
        except Exception:
            log.exception("job settled but publishing its declines failed", extra={"jobId": job_id})
            report = EnqueueReport(failed_ids=list(pending), sweep_failed=True)
        self._metrics.count("DeclinesQueued", report.queued)
        if report.failed_ids or report.sweep_failed:
            self._metrics.count("DeclinesNotQueued", len(report.failed_ids))
            self._count_post_commit_failure(sweep_failed=report.sweep_failed)
            log.error(
                "job settled but %d declines (sweep: %s) were not queued",
                len(report.failed_ids),
                "not queued" if report.sweep_failed else "queued",
                extra={"jobId": job_id, "applicationId": keep},
            )
            raise DeclinesNotQueued(
                texts.not_queued,
                declinesQueued=report.queued,
                declinesNotQueued=len(report.failed_ids),
                sweepQueued=not report.sweep_failed,
                **details,
            )
        return _Settled(job=job, queued=report.queued, replayed=committed.replayed)

    def _queue_sweep_alone(self, job_id: str, why: str) -> bool:
        """After a commit whose declines cannot be queued: at least the sweep, which finds them itself."""
        try:
            report = self._publisher.publish(job_id, [], sweep_after=self._sweep_delay)
            queued = not report.sweep_failed
        except Exception:
            log.exception("sweep could not be queued", extra={"jobId": job_id})
            queued = False
        self._count_post_commit_failure(sweep_failed=not queued)
        log.error("job settled but %s; sweep %s", why, "queued" if queued else "NOT queued", extra={"jobId": job_id})
        return queued

    def _count_post_commit_failure(self, *, sweep_failed: bool) -> None:
        self._metrics.count("PostCommitFailures")
        if sweep_failed:
            self._metrics.count("SweepsNotQueued")

    def _start(self, read: Callable[[], T]) -> _Pending[T]:
        return _Pending(read, self._executor)

    # -------------------------------------------------------------- declines

    def decline(self, job_id: str, application_id: str, reason: Reason | None = None) -> DeclineOutcome:
        outcome = self._store.decline_application(job_id, application_id, self._now(), reason)
        self._metrics.count(
            "DeclinesApplied" if outcome is DeclineOutcome.DECLINED else "DeclinesSkipped",
        )
        if outcome is DeclineOutcome.SKIPPED_ACCEPTED:
            log.warning("decline asked for the accepted application; left ACCEPTED")
        elif outcome in (DeclineOutcome.SKIPPED_WITHDRAWN, DeclineOutcome.SKIPPED_CANCELLED):
            log.info("decline of a withdrawn or cancelled application; left as it is")
        elif outcome is DeclineOutcome.UNKNOWN_APPLICATION:
            log.warning("decline named an unknown application; dropped")
        return outcome

    def sweep(self, job_id: str) -> int:
        """Declines every application of a booked, cancelled or expired job still PENDING, read consistently.

        Queued (delayed) by each booking, cancellation and expiry for what its index query
        missed; no application can be added once the job left OPEN, so this leaves none behind.
        A job open again (its booked nanny backed out) keeps its applications.
        """
        job, pending = self._store.job_with_pending_applications(job_id)
        reason = decline_reason(job.status) if job is not None else None
        if job is None or reason is None:
            log.warning("sweep of a job that is open; nothing to do", extra={"jobId": job_id})
            return 0
        declined = 0
        for application_id in pending:
            if application_id == job.accepted_application_id:
                continue
            if self.decline(job_id, application_id, reason) is DeclineOutcome.DECLINED:
                declined += 1
        if declined:
            log.warning("sweep declined %d applications the booking had not seen", declined, extra={"jobId": job_id})
        self._metrics.count("DeclinesSwept", declined)
        return declined

    def queue_leftover_declines(self, job: Job, *, dry_run: bool = False) -> tuple[list[str], EnqueueReport | None]:
        """Queues again the declines a job out of OPEN still owes: one for each PENDING application
        but the accepted one, with the reason the job's state gives.

        For reconciliation: a crash or an SQS outage between a commit and its declines leaves
        them undone. Re-queuing is always safe (a decline only moves PENDING to DECLINED).
        Returns those applications and what queuing them did (None in a dry run or when none).
        """
        _, pending = self._store.job_with_pending_applications(job.job_id)
        leftovers = [a for a in pending if a != job.accepted_application_id]
        if dry_run or not leftovers:
            return leftovers, None
        return leftovers, self._publisher.publish(job.job_id, leftovers, reason=decline_reason(job.status))

    # ---------------------------------------------------- expiry, completion

    def settle_due_jobs(self, limit_per_shard: int = 25, now: str | None = None) -> SettleReport:
        """The scheduled run: OPEN jobs past their start expire (their applications declined,
        ``JOB_EXPIRED``), CLOSED jobs past their end complete.

        Bounded: at most ``limit_per_shard`` jobs of each shard of the ``dueJobs`` index a
        run. Every step is conditioned on the job's state and time, so two runs at once, or
        a run repeated, change nothing twice; an expired job stays in the index until its
        declines are queued, so a run that stopped half-way is finished by the next.
        """
        now = now or self._now()
        expired = completed = queued = failed = 0
        ids = self._store.due_job_ids(now, limit_per_shard)
        for job_id in ids:
            try:
                job = self._store.get_job(job_id)
                if job is None:
                    continue
                if EXPIRE.allows(job, now):
                    if not self._store.expire_job(job_id, now):
                        continue  # booked or cancelled meanwhile: its new state decides
                    expired += 1
                    self._metrics.count("JobsExpired")
                    job = replace(job, status=JobStatus.EXPIRED, expired_at=now)
                if job.status is JobStatus.EXPIRED:
                    queued += self._decline_expired(job)
                    self._store.forget_due(job_id, JobStatus.EXPIRED)
                elif COMPLETE.allows(job, now) and self._store.complete_job(job, now):
                    completed += 1
                    self._metrics.count("JobsCompleted")
            except Unavailable:
                failed += 1
                log.warning("settling a due job failed; the next run retries it", extra={"jobId": job_id})
        if expired or completed or failed:
            log.info(
                "settled due jobs: %d expired, %d completed, %d failed",
                expired,
                completed,
                failed,
                extra={"declinesQueued": queued},
            )
        more = len(ids) >= limit_per_shard
        return SettleReport(expired, completed, queued, failed, more)

    def _decline_expired(self, job: Job) -> int:
        """Queues a decline (``JOB_EXPIRED``) for each PENDING application, and the sweep."""
        _, pending = self._store.job_with_pending_applications(job.job_id)
        report = self._publisher.publish(job.job_id, pending, sweep_after=self._sweep_delay, reason=Reason.JOB_EXPIRED)
        self._metrics.count("DeclinesQueued", report.queued)
        if report.failed_ids or report.sweep_failed:
            self._metrics.count("DeclinesNotQueued", len(report.failed_ids))
            raise Unavailable("Not every decline of an expired job was queued.", jobId=job.job_id)
        return report.queued


@dataclass(frozen=True)
class _Settled:
    job: Job
    queued: int
    replayed: bool


@dataclass(frozen=True)
class _SettleTexts:
    committed_metric: str
    incomplete: Callable[..., Unavailable]
    not_queued: str
    unknown: str


_BOOKING = _SettleTexts(
    committed_metric="Bookings",
    incomplete=lambda **details: BookingIncomplete(
        "The job is booked, but declining the other applicants could not start; repeat the same request to finish.",
        **details,
    ),
    not_queued="The job is booked, but not every other applicant could be queued for decline; "
    "repeat the same request to finish.",
    unknown="The booking may or may not have been made; repeat the same request to learn its outcome and finish it.",
)
_CANCELLATION = _SettleTexts(
    committed_metric="JobsCancelled",
    incomplete=lambda **details: CancellationIncomplete(
        "The job is cancelled, but declining its applicants could not start; repeat the same request to finish.",
        **details,
    ),
    not_queued="The job is cancelled, but not every applicant could be queued for decline; "
    "repeat the same request to finish.",
    unknown="The cancellation may or may not have been made; "
    "repeat the same request to learn its outcome and finish it.",
)


class _Pending(Generic[T]):
    """A read started beside a write: on the executor when there is one, else run when asked for."""

    def __init__(self, read: Callable[[], T], executor: Executor | None) -> None:
        self._read = read
        self._future: Future[T] | None = executor.submit(read) if executor is not None else None

    def settle(self) -> None:
        if self._future is not None:
            wait([self._future])

    def result(self) -> T:
        return self._future.result() if self._future is not None else self._read()


def _require(caller: Caller, role: Role, message: str) -> None:
    if not caller.has(role):
        raise Forbidden(message, code="ROLE_REQUIRED")
