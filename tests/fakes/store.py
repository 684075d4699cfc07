"""An in-memory ``booking.Store`` with ``DynamoStore``'s semantics, and wrappers of the real store.

Every conditional write refuses as ``DynamoStore`` does (the same domain errors, the
same replays), listings page newest or oldest first as the table's indexes do, with
cursors of the same shape. ``tests/integration/test_store_contract.py`` runs one set
of tests on this store and on ``DynamoStore`` (moto and MiniStack), so it cannot drift.
It has no index lag: every read is consistent.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from chalicelib import items as it
from chalicelib.domain import (
    AlreadyApplied,
    Application,
    ApplicationNotFound,
    ApplicationNotPending,
    ApplicationStatus,
    Commit,
    ConcurrentUpdate,
    DeclineOutcome,
    Forbidden,
    IdempotencyKeyReused,
    InvalidInput,
    Job,
    JobNotFound,
    JobNotOpen,
    JobStarted,
    JobStatus,
    NannyUnavailable,
    Page,
    Reason,
    Slot,
    clash,
    is_valid_id,
    past_slots,
)
from chalicelib.shards import EXHAUSTED, merge_newest_first

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
# Past bookings dropped from a calendar per booking, as the table's store does.
_PRUNE_PER_WRITE = 25


@dataclass(frozen=True)
class _KeyRecord:
    fingerprint: str
    job_id: str
    expires_at: int


@dataclass
class _Script:
    error: Exception
    times: int
    after: bool  # raise once the call has taken effect (its answer lost)


class InMemoryStore:
    """Jobs, applications, idempotency keys and nannies' calendars in dicts, behind one lock.

    ``wall_clock`` (seconds) dates idempotency keys, as ``time.time`` does for the table.
    ``script(method, error)`` makes the next calls of a method raise, before or after they apply.
    """

    def __init__(self, *, wall_clock: Callable[[], float] = time.time) -> None:
        self._wall_clock = wall_clock
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._apps: dict[str, dict[str, Application]] = defaultdict(dict)
        self._guards: dict[tuple[str, str], tuple[str, int]] = {}  # (job, nanny) -> (application, round)
        self._listed: set[str] = set()  # the openJobs entries
        self._due: dict[str, str] = {}  # the dueJobs entries: job -> its start (OPEN) or end (CLOSED)
        self._keys: dict[tuple[str, str], _KeyRecord] = {}
        self._calendars: dict[str, tuple[int, dict[str, Slot]]] = {}
        self._scripts: dict[str, list[_Script]] = defaultdict(list)
        self.calls: Counter[str] = Counter()

    def idempotency_expiries(self) -> list[int]:
        """When each idempotency key expires (epoch seconds), as the table's TTL attribute says."""
        with self._lock:
            return [record.expires_at for record in self._keys.values()]

    # ------------------------------------------------------------- scripting

    def script(self, method: str, error: Exception, *, times: int = 1, after: bool = False) -> None:
        """The next ``times`` calls of ``method`` raise ``error``; with ``after``, once they took effect."""
        self._scripts[method].append(_Script(error, times, after))

    def _scripted(self, method: str, after: bool) -> None:
        queue = self._scripts.get(method)
        if not queue or queue[0].after is not after:
            return
        step = queue[0]
        step.times -= 1
        if step.times <= 0:
            queue.pop(0)
        raise step.error

    def _call(self, method: str, run: Callable[[], Any]) -> Any:
        with self._lock:
            self.calls[method] += 1
            self._scripted(method, after=False)
            result = run()
            self._scripted(method, after=True)
            return result

    # ------------------------------------------------------------------ jobs

    def put_job(self, job: Job) -> None:
        def run() -> None:
            old = self._jobs.get(job.job_id)
            if old is not None:
                # A retry of our own committed write finds its item; anything else collided.
                if (old.job_id, old.owner, old.created_at) != (job.job_id, job.owner, job.created_at):
                    raise ConcurrentUpdate("The request collided with another; retry.")
                return
            self._insert_job(job)

        self._call("put_job", run)

    def _insert_job(self, job: Job) -> None:
        self._jobs[job.job_id] = job
        self._listed.add(job.job_id)
        due = it.due_at(job)
        if due is not None:
            self._due[job.job_id] = due

    def put_job_once(self, job: Job, client_key: str, fingerprint: str) -> str:
        def run() -> str:
            now = int(self._wall_clock())
            record = self._keys.get((job.owner, client_key))
            if record is not None and not record.expires_at < now:  # an expired key counts as absent
                if record.job_id == job.job_id:
                    return job.job_id
                if record.fingerprint != fingerprint:
                    raise IdempotencyKeyReused("This Idempotency-Key was used with a different request.")
                return record.job_id
            if job.job_id in self._jobs:
                raise ConcurrentUpdate("The request collided with another; retry.")
            self._keys[(job.owner, client_key)] = _KeyRecord(fingerprint, job.job_id, now + IDEMPOTENCY_TTL_SECONDS)
            self._insert_job(job)
            return job.job_id

        return self._call("put_job_once", run)

    def get_job(self, job_id: str) -> Job | None:
        return self._call("get_job", lambda: self._jobs.get(job_id))

    def list_open_jobs(self, limit: int, cursor: dict | None, now: str) -> Page[Job]:
        """OPEN jobs not started by ``now``, newest first, merged from the shards as the table's store does."""

        def fetch(shard: int, after: str | None, count: int) -> tuple[list[tuple[str, Job]], str | None]:
            ids = sorted((j for j in self._listed if it.open_shard(j) == shard), reverse=True)
            if after is not None:
                ids = [j for j in ids if j < after]
            read = ids[:count]
            found = [(j, self._jobs[j]) for j in read if self._jobs[j].starts_at > now]
            return found, _last_evaluated(read, count)

        def run() -> Page[Job]:
            page = merge_newest_first(_open_positions(cursor), it.OPEN_JOB_SHARDS, limit, fetch)
            if page.cursor is None:
                return Page(items=page.items)
            return Page(items=page.items, cursor={"shards": {str(n): p for n, p in sorted(page.cursor.items())}})

        return self._call("list_open_jobs", run)

    def list_jobs_of_owner(self, owner: str, limit: int, cursor: dict | None) -> Page[Job]:
        def run() -> Page[Job]:
            jobs = sorted((j for j in self._jobs.values() if j.owner == owner), key=lambda j: j.job_id, reverse=True)
            return _page(
                [(_owner_key(j), j) for j in jobs],
                limit,
                cursor,
                sort_name="GSI2SK",
                partition=("GSI2PK", it.owner_partition(owner)),
                prefix=it.JOB_PREFIX,
                newest_first=True,
            )

        return self._call("list_jobs_of_owner", run)

    # ---------------------------------------------------------- applications

    def add_application(self, job: Job, app: Application) -> None:
        def run() -> None:
            now = app.created_at
            current = self._jobs.get(job.job_id)
            job_failed = not (
                current is not None
                and current.status is JobStatus.OPEN
                and current.starts_at > now
                and current.round == job.round
            )
            guard = self._guards.get((app.job_id, app.applicant))
            guard_failed = guard is not None and not guard[1] < job.round
            app_failed = app.application_id in self._apps[app.job_id]
            if guard_failed and guard is not None and guard[0] == app.application_id:
                return  # our own write, committed by an attempt whose answer was lost
            if job_failed:
                if current is None:
                    raise JobNotFound("Job not found.")
                _refuse_not_open(current, now, "applications")
            if guard_failed:
                raise AlreadyApplied("You have already applied to this job.")
            if app_failed:
                raise ConcurrentUpdate("The job changed while applying; retry.")
            self._guards[(app.job_id, app.applicant)] = (app.application_id, job.round)
            self._apps[app.job_id][app.application_id] = app

        self._call("add_application", run)

    def get_application(self, job_id: str, application_id: str) -> Application | None:
        return self._call("get_application", lambda: self._apps.get(job_id, {}).get(application_id))

    def list_applications(self, job_id: str, limit: int, cursor: dict | None) -> Page[Application]:
        def run() -> Page[Application]:
            apps = sorted(self._apps.get(job_id, {}).values(), key=lambda a: a.application_id)
            return _page(
                [(_application_key(a, by_applicant=False), a) for a in apps],
                limit,
                cursor,
                sort_name="SK",
                partition=("PK", it.job_partition(job_id)),
                prefix=it.APPLICATION_PREFIX,
                newest_first=False,
            )

        return self._call("list_applications", run)

    def list_applications_of_applicant(self, user: str, limit: int, cursor: dict | None) -> Page[Application]:
        def run() -> Page[Application]:
            apps = sorted(
                (a for by_id in self._apps.values() for a in by_id.values() if a.applicant == user),
                key=lambda a: a.application_id,
                reverse=True,
            )
            return _page(
                [(_application_key(a, by_applicant=True), a) for a in apps],
                limit,
                cursor,
                sort_name="GSI2SK",
                partition=("GSI2PK", it.applicant_partition(user)),
                prefix=it.APPLICATION_PREFIX,
                newest_first=True,
            )

        return self._call("list_applications_of_applicant", run)

    def job_with_pending_applications(self, job_id: str) -> tuple[Job | None, list[str]]:
        def run() -> tuple[Job | None, list[str]]:
            pending = sorted(
                a.application_id for a in self._apps.get(job_id, {}).values() if a.status is ApplicationStatus.PENDING
            )
            return self._jobs.get(job_id), pending

        return self._call("job_with_pending_applications", run)

    def indexed_application_ids(self, job_id: str) -> list[str]:
        """Every application of the job, whatever its status (the index is keys only)."""

        def run() -> list[str]:
            return sorted(self._apps.get(job_id, {}))

        return self._call("indexed_application_ids", run)

    # --------------------------------------------------------------- calendar

    def calendar(self, user: str) -> tuple[int, list[Slot]]:
        """A nanny's bookings and their version (0: none ever written)."""
        with self._lock:
            version, slots = self._calendars.get(user, (0, {}))
            return version, list(slots.values())

    def _calendar_release(self, user: str, job_id: str) -> None:
        version, slots = self._calendars.get(user, (0, {}))
        self._calendars[user] = (version + 1, {k: v for k, v in slots.items() if k != job_id})

    def _booked_nanny(self, job: Job) -> str | None:
        if job.accepted_applicant or not job.accepted_application_id:
            return job.accepted_applicant
        app = self._apps.get(job.job_id, {}).get(job.accepted_application_id)
        return app.applicant if app else None

    # ---------------------------------------------------------------- booking

    def close_job_and_accept(self, owner: str, job_id: str, application_id: str, now: str) -> Commit:
        def run() -> Commit:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobNotFound("Job not found.")
            app = self._apps.get(job_id, {}).get(application_id)
            if job.owner != owner:
                raise Forbidden("Only the job's owner can book it.", code="NOT_JOB_OWNER")
            if job.status is JobStatus.CLOSED and job.accepted_application_id == application_id:
                return Commit(replayed=True, job=job)  # the same booking again: the caller finishes the declines
            if job.status is not JobStatus.OPEN or job.has_started(now):
                _refuse_not_open(job, now, "bookings")
            if app is None:
                raise ApplicationNotFound("Application not found for this job.")
            if app.status is not ApplicationStatus.PENDING:
                raise ApplicationNotPending("The application is no longer pending.", status=app.status.value)
            version, slots = self._calendars.get(app.applicant, (0, {}))
            other = clash(list(slots.values()), job.slot())
            if other is not None:
                raise NannyUnavailable(
                    "This nanny is already booked at an overlapping time.",
                    jobId=other.job_id,
                    startsAt=other.starts_at,
                    endsAt=other.ends_at,
                )
            drop = {s.job_id for s in past_slots(list(slots.values()), now)[:_PRUNE_PER_WRITE]}
            kept = {k: v for k, v in slots.items() if k not in drop}
            self._calendars[app.applicant] = (version + 1, {**kept, job_id: job.slot()})
            booked = replace(
                job,
                status=JobStatus.CLOSED,
                accepted_application_id=application_id,
                accepted_applicant=app.applicant,
                closed_at=now,
            )
            self._jobs[job_id] = booked
            self._apps[job_id][application_id] = replace(app, status=ApplicationStatus.ACCEPTED, updated_at=now)
            self._listed.discard(job_id)
            self._due[job_id] = job.ends_at
            return Commit(replayed=False, job=booked)

        return self._call("close_job_and_accept", run)

    # ------------------------------------------------------------- cancelling

    def cancel_job(self, owner: str, job_id: str, reason: str | None, now: str) -> Commit:
        def run() -> Commit:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobNotFound("Job not found.")
            if job.owner != owner:
                raise Forbidden("Only the job's owner can cancel it.", code="NOT_JOB_OWNER")
            if job.status is JobStatus.OPEN:  # started or not
                self._jobs[job_id] = _cancelled(job, reason, now)
                self._listed.discard(job_id)
                self._due.pop(job_id, None)
                return Commit(replayed=False)
            if job.status is JobStatus.CANCELLED:
                return Commit(replayed=True, job=job)
            if job.status is JobStatus.CLOSED:
                return self._cancel_booked_job(job, reason, now)
            _refuse_not_open(job, now, "changes")

        return self._call("cancel_job", run)

    def _cancel_booked_job(self, job: Job, reason: str | None, now: str) -> Commit:
        if job.has_started(now):
            raise JobStarted("The job has started; it can no longer be cancelled.", startsAt=job.starts_at)
        application_id = job.accepted_application_id or ""
        app = self._apps.get(job.job_id, {}).get(application_id)
        if app is None or app.status is not ApplicationStatus.ACCEPTED:
            raise ConcurrentUpdate(
                "The booking changed while cancelling; look at the job and retry.", status=job.status.value
            )
        nanny = self._booked_nanny(job)
        self._jobs[job.job_id] = _cancelled(job, reason, now)
        self._due.pop(job.job_id, None)
        self._apps[job.job_id][application_id] = replace(
            app, status=ApplicationStatus.CANCELLED, reason=Reason.BOOKING_CANCELLED, updated_at=now
        )
        if nanny:
            self._calendar_release(nanny, job.job_id)
        return Commit(replayed=False)

    # ------------------------------------------------------------ withdrawing

    def withdraw_application(
        self, applicant: str, job_id: str, application_id: str, now: str
    ) -> tuple[Application, bool]:
        def run() -> tuple[Application, bool]:
            app = self._apps.get(job_id, {}).get(application_id)
            if app is None:
                if job_id not in self._jobs:
                    raise JobNotFound("Job not found.")
                raise ApplicationNotFound("Application not found for this job.")
            if app.applicant != applicant:
                raise Forbidden("Only the applicant can withdraw an application.", code="NOT_APPLICANT")
            if app.status is ApplicationStatus.PENDING:
                withdrawn = replace(app, status=ApplicationStatus.WITHDRAWN, updated_at=now)
                self._apps[job_id][application_id] = withdrawn
                return withdrawn, False
            if app.status is ApplicationStatus.WITHDRAWN:
                return app, True
            if app.status is ApplicationStatus.ACCEPTED:
                return self._back_out(app, now), False
            raise ApplicationNotPending("The application is no longer pending.", status=app.status.value)

        return self._call("withdraw_application", run)

    def _back_out(self, app: Application, now: str) -> Application:
        """The booked nanny withdraws before the start: the job is OPEN again, in a new round."""
        job = self._jobs.get(app.job_id)
        if job is None:
            raise JobNotFound("Job not found.")
        if job.status is not JobStatus.CLOSED or job.accepted_application_id != app.application_id:
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
        withdrawn = replace(app, status=ApplicationStatus.WITHDRAWN, updated_at=now)
        self._jobs[job.job_id] = reopened
        self._apps[job.job_id][app.application_id] = withdrawn
        self._listed.add(job.job_id)
        self._due[job.job_id] = job.starts_at
        self._calendar_release(app.applicant, job.job_id)
        return withdrawn

    # --------------------------------------------------------------- declines

    def decline_application(
        self, job_id: str, application_id: str, now: str, reason: Reason | None = None
    ) -> DeclineOutcome:
        def run() -> DeclineOutcome:
            app = self._apps.get(job_id, {}).get(application_id)
            if app is None:
                return DeclineOutcome.UNKNOWN_APPLICATION
            if app.status is ApplicationStatus.PENDING:
                declined = replace(app, status=ApplicationStatus.DECLINED, updated_at=now)
                self._apps[job_id][application_id] = declined if reason is None else replace(declined, reason=reason)
                return DeclineOutcome.DECLINED
            return _SKIPPED[app.status]

        return self._call("decline_application", run)

    # ---------------------------------------------------- expiry, completion

    def due_job_ids(self, now: str, limit: int) -> list[str]:
        def run() -> list[str]:
            found: list[str] = []
            for shard in range(it.OPEN_JOB_SHARDS):
                due = sorted((at, j) for j, at in self._due.items() if it.open_shard(j) == shard and at <= now)
                found.extend(j for _, j in due[:limit])
            return found

        return self._call("due_job_ids", run)

    def expire_job(self, job_id: str, now: str) -> bool:
        def run() -> bool:
            job = self._jobs.get(job_id)
            if job is None or job.status is not JobStatus.OPEN or not job.starts_at <= now:
                return False
            self._jobs[job_id] = replace(job, status=JobStatus.EXPIRED, expired_at=now)
            self._listed.discard(job_id)
            return True  # still due until forget_due

        return self._call("expire_job", run)

    def forget_due(self, job_id: str, status: JobStatus) -> None:
        def run() -> None:
            job = self._jobs.get(job_id)
            if job is not None and job.status is status:
                self._due.pop(job_id, None)

        self._call("forget_due", run)

    def complete_job(self, job: Job, now: str) -> bool:
        def run() -> bool:
            current = self._jobs.get(job.job_id)
            if current is None or current.status is not JobStatus.CLOSED or not current.ends_at <= now:
                return False
            self._jobs[job.job_id] = replace(current, status=JobStatus.COMPLETED, completed_at=now)
            self._due.pop(job.job_id, None)
            nanny = self._booked_nanny(job)
            if nanny:
                self._calendar_release(nanny, job.job_id)
            return True

        return self._call("complete_job", run)


_SKIPPED = {
    ApplicationStatus.ACCEPTED: DeclineOutcome.SKIPPED_ACCEPTED,
    ApplicationStatus.WITHDRAWN: DeclineOutcome.SKIPPED_WITHDRAWN,
    ApplicationStatus.CANCELLED: DeclineOutcome.SKIPPED_CANCELLED,
    ApplicationStatus.DECLINED: DeclineOutcome.ALREADY_DECLINED,
}


def _cancelled(job: Job, reason: str | None, now: str) -> Job:
    return replace(job, status=JobStatus.CANCELLED, cancelled_at=now, cancel_reason=reason or job.cancel_reason)


def _refuse_not_open(job: Job, now: str, what: str) -> NoReturn:
    """Why an OPEN-only write was refused by this job: always raises."""
    if job.status is JobStatus.OPEN and job.has_started(now):
        raise JobStarted(f"The job has started; it takes no more {what}.", startsAt=job.starts_at)
    if job.status is JobStatus.OPEN:
        raise ConcurrentUpdate("The job changed meanwhile; retry.")
    if job.status is JobStatus.CLOSED:
        raise JobNotOpen("The job is already booked.", acceptedApplicationId=job.accepted_application_id)
    raise JobNotOpen(f"The job is {job.status.value.lower()}.", status=job.status.value)


# ---------------------------------------------------------------- listings


def _invalid_cursor() -> InvalidInput:
    return InvalidInput("nextToken is not valid for this request.", code="INVALID_NEXT_TOKEN")


def _last_evaluated(read: list[str], limit: int) -> str | None:
    """What a Query with ``Limit`` answers as its last evaluated key: the last item read whenever
    it stopped at the limit, more behind it or not (DynamoDB and MiniStack; moto only when more)."""
    return read[-1] if read and len(read) == limit else None


def _owner_key(job: Job) -> dict[str, str]:
    return {
        "PK": it.job_partition(job.job_id),
        "SK": it.JOB_SORT,
        "GSI2PK": it.owner_partition(job.owner),
        "GSI2SK": it.job_sort(job.job_id),
    }


def _application_key(app: Application, *, by_applicant: bool) -> dict[str, str]:
    key = {"PK": it.job_partition(app.job_id), "SK": it.application_sort(app.application_id)}
    if by_applicant:
        key.update(GSI2PK=it.applicant_partition(app.applicant), GSI2SK=it.application_sort(app.application_id))
    return key


def _page(
    keyed: list[tuple[dict[str, str], Any]],
    limit: int,
    cursor: dict | None,
    *,
    sort_name: str,
    partition: tuple[str, str],
    prefix: str,
    newest_first: bool,
) -> Page:
    """One page of items already in the listing's order; the cursor is the last item's key."""
    if cursor is not None:
        pk_name, pk_value = partition
        expected = {"PK", "SK", pk_name, sort_name}
        if (
            not isinstance(cursor, dict)
            or set(cursor) != expected
            or not all(isinstance(v, str) and 0 < len(v) <= 600 for v in cursor.values())
            or cursor[pk_name] != pk_value
            or not cursor[sort_name].startswith(prefix)
        ):
            raise _invalid_cursor()
        start = cursor[sort_name]
        keyed = [(k, v) for k, v in keyed if (k[sort_name] < start if newest_first else k[sort_name] > start)]
    chosen = keyed[:limit]
    last = _last_evaluated([k[sort_name] for k, _ in chosen], limit)
    return Page(items=[v for _, v in chosen], cursor=dict(chosen[-1][0]) if last is not None else None)


def _open_positions(cursor: dict | None) -> dict[int, str]:
    """Each shard's position in a cursor of the open-jobs listing; only what a page could have issued."""
    if cursor is None:
        return {}
    shards = cursor.get("shards") if isinstance(cursor, dict) and set(cursor) == {"shards"} else None
    if not isinstance(shards, dict) or not shards:
        raise _invalid_cursor()
    positions: dict[int, str] = {}
    for name, position in shards.items():
        if not (isinstance(name, str) and name.isdigit() and int(name) < it.OPEN_JOB_SHARDS):
            raise _invalid_cursor()
        shard = int(name)
        if position != EXHAUSTED and not (is_valid_id(position) and it.open_shard(position) == shard):
            raise _invalid_cursor()
        positions[shard] = position
    return positions


# ------------------------------------------------------- around the real store


class RecordingStore:
    """The real store, counting every decline's outcome per application."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.outcomes: dict[str, Counter[str]] = defaultdict(Counter)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def decline_application(self, job_id: str, application_id: str, now: str, reason: Any = None) -> Any:
        outcome = self._store.decline_application(job_id, application_id, now, reason)
        self.outcomes[application_id][outcome.value] += 1
        return outcome
