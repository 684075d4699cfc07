"""The use cases of ``BookingService`` on in-memory fakes: roles, replays, refusals, post-commit failures.

No emulator: the store is ``tests.fakes.store.InMemoryStore`` (held to ``DynamoStore``'s
behaviour by ``tests/integration/test_store_contract.py``), the clock is moved by hand.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.booking import BookingService
from chalicelib.domain import (
    Application,
    ApplicationStatus,
    Caller,
    ConcurrentUpdate,
    DeclineOutcome,
    DomainError,
    JobStatus,
    NewJob,
    OutcomeUnknown,
    Reason,
    Role,
    Unavailable,
    format_time,
    new_id,
)
from tests.fakes.clock import FakeClock
from tests.fakes.metrics import CountingMetrics
from tests.fakes.publisher import RecordingPublisher
from tests.fakes.store import InMemoryStore

START = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
SWEEP_DELAY = 30

ALICE = Caller("u-alice", "alice", frozenset({Role.PARENT}), "alice@example.com")
BOB = Caller("u-bob", "bob", frozenset({Role.PARENT}), "bob@example.com")
NINA = Caller("u-nina", "nina", frozenset({Role.NANNY}), "nina@example.com")
OLGA = Caller("u-olga", "olga", frozenset({Role.NANNY}), "olga@example.com")
STRANGER = Caller("u-sam", "sam", frozenset())
BOTH = Caller("u-pat", "pat", frozenset({Role.PARENT, Role.NANNY}))


def nanny(i: int) -> Caller:
    """The i-th of a job's applicants (``World.applicants``)."""
    return Caller(f"u-n{i}", f"n{i}", frozenset({Role.NANNY}))


class World:
    """A service on fakes, with a clock that moves only when told."""

    def __init__(self, publisher: RecordingPublisher | None = None, **service: Any) -> None:
        self.now = START
        self.wall = FakeClock()
        self.wall.now = START.timestamp()
        self.store = InMemoryStore(wall_clock=self.wall)
        self.publisher = publisher or RecordingPublisher()
        self.metrics = CountingMetrics()
        ms = itertools.count(int(START.timestamp() * 1000))
        self.service = BookingService(
            self.store,
            self.publisher,
            clock=lambda: format_time(self.now),
            ids=lambda: new_id(next(ms)),  # one id a millisecond: they sort in creation order
            metrics=self.metrics,
            sweep_delay_seconds=SWEEP_DELAY,
            **service,
        )

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
        self.wall.now += timedelta(**delta).total_seconds()

    def post(self, caller: Caller = ALICE, *, in_hours: float = 48, hours: float = 3, **fields: Any) -> str:
        return self.service.create_job(caller, new_job(self.now, in_hours, hours, **fields)).job.job_id

    def applicants(self, job_id: str, count: int) -> list[str]:
        return [self.service.apply(nanny(i), job_id, None).application_id for i in range(count)]

    def status(self, job_id: str, application_id: str) -> ApplicationStatus:
        app = self.store.get_application(job_id, application_id)
        assert app is not None
        return app.status

    def job_status(self, job_id: str) -> JobStatus:
        return self.service.get_job(job_id).status

    def deliver(self) -> int:
        """The worker: every queued decline applied, as the queue would deliver them."""
        applied = 0
        for call in self.publisher.calls:
            for application_id in call.application_ids:
                if application_id in self.publisher.fail_ids:
                    continue
                if self.service.decline(call.job_id, application_id, call.reason) is DeclineOutcome.DECLINED:
                    applied += 1
        return applied


def new_job(now: datetime, in_hours: float = 48, hours: float = 3, **fields: Any) -> NewJob:
    starts = now + timedelta(hours=in_hours)
    return NewJob(
        title=fields.pop("title", "Evening sitter"),
        starts_at=format_time(starts),
        ends_at=format_time(starts + timedelta(hours=hours)),
        **fields,
    )


@pytest.fixture
def world() -> World:
    return World()


def refused(code: str, call: Callable[..., Any], *args: Any) -> DomainError:
    with pytest.raises(DomainError) as caught:
        call(*args)
    assert caught.value.code == code, caught.value.message
    return caught.value


# ----------------------------------------------------------------- roles


def test_only_parents_post_jobs(world: World) -> None:
    creation = world.service.create_job(ALICE, new_job(world.now, description="Two kids", hourly_rate=Decimal("18.5")))
    assert creation.created and creation.job.status is JobStatus.OPEN
    assert (creation.job.owner, creation.job.owner_name, creation.job.owner_email) == (
        "u-alice",
        "alice",
        "alice@example.com",
    )
    assert world.service.get_job(creation.job.job_id) == creation.job
    for caller in (NINA, STRANGER):
        refused("ROLE_REQUIRED", world.service.create_job, caller, new_job(world.now))


def test_only_nannies_apply_and_never_to_their_own_job(world: World) -> None:
    job_id = world.post()
    app = world.service.apply(NINA, job_id, "Happy to help")
    assert (app.status, app.applicant, app.message, app.applicant_name) == (
        ApplicationStatus.PENDING,
        "u-nina",
        "Happy to help",
        "nina",
    )
    for caller in (ALICE, STRANGER):
        refused("ROLE_REQUIRED", world.service.apply, caller, job_id, None)
    own = world.post(BOTH)
    refused("OWN_JOB", world.service.apply, BOTH, own, None)


def test_only_the_owner_lists_a_job_s_applications(world: World) -> None:
    job_id = world.post()
    apps = world.applicants(job_id, 3)
    assert [a.application_id for a in world.service.list_applications(ALICE, job_id, 10, None).items] == apps
    for caller in (BOB, NINA, STRANGER):
        refused("NOT_JOB_OWNER", world.service.list_applications, caller, job_id, 10, None)
    refused("JOB_NOT_FOUND", world.service.list_applications, ALICE, new_id(), 10, None)


def test_an_application_is_seen_by_its_applicant_and_the_job_s_owner_only(world: World) -> None:
    job_id = world.post()
    app = world.service.apply(NINA, job_id, None)
    assert world.service.get_application(NINA, job_id, app.application_id) == app
    assert world.service.get_application(ALICE, job_id, app.application_id) == app
    for caller in (OLGA, BOB, STRANGER):
        refused("NOT_APPLICANT", world.service.get_application, caller, job_id, app.application_id)
    refused("APPLICATION_NOT_FOUND", world.service.get_application, NINA, job_id, new_id())
    refused("JOB_NOT_FOUND", world.service.get_application, NINA, new_id(), app.application_id)


def test_only_the_owner_books_and_cancels(world: World) -> None:
    job_id = world.post()
    [app] = world.applicants(job_id, 1)
    refused("ROLE_REQUIRED", world.service.book, NINA, job_id, app)
    refused("ROLE_REQUIRED", world.service.book, STRANGER, job_id, app)
    refused("NOT_JOB_OWNER", world.service.book, BOB, job_id, app)
    refused("ROLE_REQUIRED", world.service.cancel, NINA, job_id, None)
    refused("NOT_JOB_OWNER", world.service.cancel, BOB, job_id, None)
    assert world.job_status(job_id) is JobStatus.OPEN
    assert world.publisher.calls == [] and world.metrics.counts == {}


def test_only_the_applicant_withdraws(world: World) -> None:
    job_id = world.post()
    app = world.service.apply(NINA, job_id, None).application_id
    refused("ROLE_REQUIRED", world.service.withdraw, ALICE, job_id, app)
    refused("ROLE_REQUIRED", world.service.withdraw, STRANGER, job_id, app)
    refused("NOT_APPLICANT", world.service.withdraw, OLGA, job_id, app)
    assert world.status(job_id, app) is ApplicationStatus.PENDING


def test_me_listings_show_only_the_caller_s_own_newest_first(world: World) -> None:
    first, second = world.post(), world.post()
    world.post(BOB)
    assert [j.job_id for j in world.service.list_my_jobs(ALICE, 10, None).items] == [second, first]
    a1 = world.service.apply(NINA, first, None).application_id
    a2 = world.service.apply(NINA, second, None).application_id
    world.service.apply(OLGA, first, None)
    assert [a.application_id for a in world.service.list_my_applications(NINA, 10, None).items] == [a2, a1]
    assert world.service.list_my_jobs(NINA, 10, None).items == []


def test_a_user_in_both_groups_posts_and_applies_elsewhere(world: World) -> None:
    job_id = world.post(ALICE)
    assert world.service.apply(BOTH, job_id, None).status is ApplicationStatus.PENDING
    assert world.service.create_job(BOTH, new_job(world.now)).created


# ---------------------------------------------------------------- listing


def test_the_open_listing_is_newest_first_and_hides_booked_cancelled_and_started_jobs(world: World) -> None:
    soon = world.post(in_hours=1)
    booked, cancelled = world.post(), world.post()
    later = [world.post() for _ in range(4)]
    [app] = world.applicants(booked, 1)
    world.service.book(ALICE, booked, app)
    world.service.cancel(ALICE, cancelled, None)
    assert [j.job_id for j in world.service.list_open_jobs(10, None).items] == [*reversed(later), soon]

    world.advance(hours=2)  # `soon` has started
    seen: list[str] = []
    cursor = None
    while True:
        page = world.service.list_open_jobs(3, cursor)
        assert len(page.items) <= 3
        seen += [j.job_id for j in page.items]
        if page.cursor is None:
            break
        cursor = page.cursor
    assert seen == list(reversed(later))


def test_an_unknown_job_is_not_found(world: World) -> None:
    refused("JOB_NOT_FOUND", world.service.get_job, new_id())


# ---------------------------------------------------------- idempotent create


def test_the_same_create_with_the_same_key_returns_the_first_job(world: World) -> None:
    first = world.service.create_job(ALICE, new_job(world.now), "key-1")
    again = world.service.create_job(ALICE, new_job(world.now), "key-1")
    assert first.created and not again.created
    assert again.job == first.job
    assert [j.job_id for j in world.service.list_my_jobs(ALICE, 10, None).items] == [first.job.job_id]


def test_a_key_reused_for_another_request_is_refused(world: World) -> None:
    world.service.create_job(ALICE, new_job(world.now), "key-1")
    refused("IDEMPOTENCY_KEY_REUSED", world.service.create_job, ALICE, new_job(world.now, title="Other"), "key-1")
    assert len(world.service.list_my_jobs(ALICE, 10, None).items) == 1


def test_a_key_belongs_to_its_owner_and_lasts_a_day(world: World) -> None:
    first = world.service.create_job(ALICE, new_job(world.now), "key-1")
    assert world.service.create_job(BOB, new_job(world.now), "key-1").created  # another parent's key
    world.advance(hours=24, seconds=2)
    later = world.service.create_job(ALICE, new_job(world.now, title="Other"), "key-1")
    assert later.created and later.job.job_id != first.job.job_id


def test_a_create_without_a_key_always_creates(world: World) -> None:
    assert (
        world.service.create_job(ALICE, new_job(world.now)).job
        != world.service.create_job(ALICE, new_job(world.now)).job
    )


# ----------------------------------------------------------------- applying


def test_applying_is_refused_to_an_unknown_booked_cancelled_or_started_job(world: World) -> None:
    refused("JOB_NOT_FOUND", world.service.apply, NINA, new_id(), None)
    booked = world.post()
    [app] = world.applicants(booked, 1)
    world.service.book(ALICE, booked, app)
    error = refused("JOB_NOT_OPEN", world.service.apply, NINA, booked, None)
    cancelled = world.post()
    world.service.cancel(ALICE, cancelled, None)
    refused("JOB_NOT_OPEN", world.service.apply, NINA, cancelled, None)
    started = world.post(in_hours=1)
    world.advance(hours=1)
    error = refused("JOB_STARTED", world.service.apply, NINA, started, None)
    assert error.details == {"startsAt": world.service.get_job(started).starts_at}


def test_a_nanny_applies_once_per_job(world: World) -> None:
    job_id = world.post()
    world.service.apply(NINA, job_id, None)
    refused("ALREADY_APPLIED", world.service.apply, NINA, job_id, "again")
    assert len(world.service.list_applications(ALICE, job_id, 10, None).items) == 1


def test_the_write_refuses_a_job_that_started_after_it_was_read(world: World) -> None:
    job_id = world.post(in_hours=1)
    job = world.service.get_job(job_id)
    world.advance(hours=1)
    app = Application(new_id(), job_id, "u-nina", ApplicationStatus.PENDING, format_time(world.now), "x")
    refused("JOB_STARTED", world.store.add_application, job, app)


# ------------------------------------------------------------------ booking


def test_booking_accepts_one_closes_the_job_and_queues_every_other_decline(world: World) -> None:
    job_id = world.post()
    apps = world.applicants(job_id, 4)

    result = world.service.book(ALICE, job_id, apps[1])

    assert not result.replayed and result.declines_queued == 3
    assert result.accepted_application_id == apps[1]
    assert result.job.status is JobStatus.CLOSED and result.job.accepted_application_id == apps[1]
    assert result.job.closed_at == format_time(world.now)
    [call] = world.publisher.calls
    assert (call.job_id, set(call.application_ids), call.sweep_after, call.reason) == (
        job_id,
        {apps[0], apps[2], apps[3]},
        SWEEP_DELAY,
        Reason.JOB_BOOKED,
    )
    assert world.metrics.counts == {"Bookings": 1, "DeclinesQueued": 3}
    assert world.deliver() == 3
    assert [world.status(job_id, a) for a in apps] == [
        ApplicationStatus.DECLINED,
        ApplicationStatus.ACCEPTED,
        ApplicationStatus.DECLINED,
        ApplicationStatus.DECLINED,
    ]
    assert world.store.get_application(job_id, apps[0]).reason is Reason.JOB_BOOKED  # type: ignore[union-attr]
    assert world.service.get_job(job_id) == result.job


def test_a_booking_answers_with_the_job_its_transaction_read_and_wrote(world: World) -> None:
    # The commit reads the job before it writes it: no second read of the job for the answer.
    job_id = world.post()
    apps = world.applicants(job_id, 2)
    world.store.calls.clear()

    result = world.service.book(ALICE, job_id, apps[0])

    assert world.store.calls["get_job"] == 0
    assert world.store.calls["close_job_and_accept"] == 1
    assert result.job == world.service.get_job(job_id)
    assert result.job.accepted_applicant == world.store.get_application(job_id, apps[0]).applicant  # type: ignore[union-attr]


def test_a_withdrawn_application_the_index_lists_is_queued_and_left_withdrawn(world: World) -> None:
    # The jobApplications index holds keys only: the booking cannot tell a withdrawn
    # application from a PENDING one, so it queues both and the decline leaves it as it is.
    job_id = world.post()
    apps = world.applicants(job_id, 3)
    world.service.withdraw(nanny(0), job_id, apps[0])

    result = world.service.book(ALICE, job_id, apps[1])

    assert result.declines_queued == 2
    assert set(world.publisher.calls[-1].application_ids) == {apps[0], apps[2]}
    assert world.deliver() == 1  # declined: apps[2] alone
    assert [world.status(job_id, a) for a in apps] == [
        ApplicationStatus.WITHDRAWN,
        ApplicationStatus.ACCEPTED,
        ApplicationStatus.DECLINED,
    ]
    assert world.metrics.counts["DeclinesSkipped"] == 1


def test_booking_again_replays_and_re_queues_only_what_is_still_pending(world: World) -> None:
    job_id = world.post()
    apps = world.applicants(job_id, 4)
    first = world.service.book(ALICE, job_id, apps[2])
    world.service.decline(job_id, apps[0], Reason.JOB_BOOKED)

    again = world.service.book(ALICE, job_id, apps[2])

    assert again.replayed and again.declines_queued == 2 and again.job == first.job
    assert set(world.publisher.calls[-1].application_ids) == {apps[1], apps[3]}
    assert world.metrics.counts["Bookings"] == 1  # one commit
    world.deliver()
    assert world.service.book(ALICE, job_id, apps[2]).declines_queued == 0


def test_booking_refusals(world: World) -> None:
    refused("JOB_NOT_FOUND", world.service.book, ALICE, new_id(), new_id())
    job_id = world.post()
    apps = world.applicants(job_id, 3)
    refused("APPLICATION_NOT_FOUND", world.service.book, ALICE, job_id, new_id())
    world.service.withdraw(nanny(2), job_id, apps[2])
    error = refused("APPLICATION_NOT_PENDING", world.service.book, ALICE, job_id, apps[2])
    assert error.details == {"status": "WITHDRAWN"}
    world.service.book(ALICE, job_id, apps[0])
    error = refused("JOB_NOT_OPEN", world.service.book, ALICE, job_id, apps[1])
    assert error.details == {"acceptedApplicationId": apps[0]}

    cancelled = world.post()
    [app] = world.applicants(cancelled, 1)
    world.service.cancel(ALICE, cancelled, None)
    error = refused("JOB_NOT_OPEN", world.service.book, ALICE, cancelled, app)
    assert error.details == {"status": "CANCELLED"}

    started = world.post(in_hours=1)
    [app] = world.applicants(started, 1)
    world.advance(hours=1)
    refused("JOB_STARTED", world.service.book, ALICE, started, app)
    assert world.metrics.counts["Bookings"] == 1


def test_a_nanny_is_not_booked_twice_at_overlapping_times(world: World) -> None:
    first = world.post(in_hours=48, hours=3)
    overlapping = world.post(BOB, in_hours=50, hours=3)
    after = world.post(BOB, in_hours=51, hours=2)  # starts when the first ends
    a1 = world.service.apply(NINA, first, None).application_id
    a2 = world.service.apply(NINA, overlapping, None).application_id
    a3 = world.service.apply(NINA, after, None).application_id
    world.service.book(ALICE, first, a1)

    error = refused("NANNY_UNAVAILABLE", world.service.book, BOB, overlapping, a2)

    job = world.service.get_job(first)
    assert error.details == {"jobId": first, "startsAt": job.starts_at, "endsAt": job.ends_at}
    assert (
        world.job_status(overlapping) is JobStatus.OPEN and world.status(overlapping, a2) is ApplicationStatus.PENDING
    )
    assert world.service.book(BOB, after, a3).job.status is JobStatus.CLOSED
    # once the bookings it overlaps are cancelled, it may go ahead
    world.service.cancel(ALICE, first, None)
    world.service.cancel(BOB, after, None)
    assert world.service.book(BOB, overlapping, a2).job.status is JobStatus.CLOSED


def test_a_booking_runs_its_read_on_the_executor(world: World) -> None:
    with ThreadPoolExecutor(max_workers=1) as executor:
        threaded = World(executor=executor)
        job_id = threaded.post()
        apps = threaded.applicants(job_id, 3)
        assert threaded.service.book(ALICE, job_id, apps[0]).declines_queued == 2


# ------------------------------------------------------ post-commit failures


def test_a_publisher_that_raises_after_the_booking_answers_declines_not_queued(world: World) -> None:
    world.publisher.raises = ConnectionError("queue down")
    job_id = world.post()
    apps = world.applicants(job_id, 4)

    error = refused("DECLINES_NOT_QUEUED", world.service.book, ALICE, job_id, apps[0])

    assert error.details == {
        "declinesQueued": 0,
        "declinesNotQueued": 3,
        "sweepQueued": False,
        "acceptedApplicationId": apps[0],
    }
    assert world.metrics.counts == {
        "Bookings": 1,
        "DeclinesQueued": 0,
        "DeclinesNotQueued": 3,
        "PostCommitFailures": 1,
        "SweepsNotQueued": 1,
    }
    assert world.job_status(job_id) is JobStatus.CLOSED  # committed all the same

    world.publisher.heal()
    replay = world.service.book(ALICE, job_id, apps[0])
    assert replay.replayed and replay.declines_queued == 3
    assert world.metrics.counts["Bookings"] == 1


def test_declines_reported_failed_answer_with_what_was_queued(world: World) -> None:
    job_id = world.post()
    apps = world.applicants(job_id, 5)
    world.publisher.fail_ids = {apps[1], apps[2]}

    error = refused("DECLINES_NOT_QUEUED", world.service.book, ALICE, job_id, apps[0])

    assert error.details == {
        "declinesQueued": 2,
        "declinesNotQueued": 2,
        "sweepQueued": True,
        "acceptedApplicationId": apps[0],
    }
    assert world.metrics.counts == {
        "Bookings": 1,
        "DeclinesQueued": 2,
        "DeclinesNotQueued": 2,
        "PostCommitFailures": 1,
    }


def test_a_sweep_not_queued_alone_fails_the_answer(world: World) -> None:
    world.publisher.sweep_fails = True
    job_id = world.post()
    apps = world.applicants(job_id, 2)
    error = refused("DECLINES_NOT_QUEUED", world.service.book, ALICE, job_id, apps[0])
    assert error.details["sweepQueued"] is False and error.details["declinesNotQueued"] == 0
    assert world.metrics.counts["SweepsNotQueued"] == 1


@pytest.mark.parametrize(
    ("use_case", "code", "committed_metric"),
    [("book", "BOOKING_INCOMPLETE", "Bookings"), ("cancel", "CANCELLATION_INCOMPLETE", "JobsCancelled")],
)
def test_a_failed_read_after_the_commit_queues_the_sweep_alone(
    world: World, use_case: str, code: str, committed_metric: str
) -> None:
    job_id = world.post()
    apps = world.applicants(job_id, 3)
    world.store.script("indexed_application_ids", Unavailable("The database is busy; retry the request."))
    run = (
        (lambda: world.service.book(ALICE, job_id, apps[0]))
        if use_case == "book"
        else (lambda: world.service.cancel(ALICE, job_id, None))
    )

    error = refused(code, run)

    assert error.details["sweepQueued"] is True
    assert [(c.application_ids, c.sweep_after, c.reason) for c in world.publisher.calls] == [((), SWEEP_DELAY, None)]
    assert world.metrics.counts == {committed_metric: 1, "PostCommitFailures": 1}
    assert world.job_status(job_id) is not JobStatus.OPEN
    # the same request again finishes it
    assert run().declines_queued == (2 if use_case == "book" else 3)


def test_an_unknown_outcome_queues_the_sweep_and_the_replay_tells_which(world: World) -> None:
    job_id = world.post()
    apps = world.applicants(job_id, 3)
    world.store.script("close_job_and_accept", OutcomeUnknown("lost"), after=True)

    error = refused("OUTCOME_UNKNOWN", world.service.book, ALICE, job_id, apps[0])

    assert error.details == {"sweepQueued": True, "acceptedApplicationId": apps[0]}
    assert world.metrics.counts == {"PostCommitFailures": 1}
    replay = world.service.book(ALICE, job_id, apps[0])
    assert replay.replayed and replay.declines_queued == 2


def test_an_unknown_outcome_with_the_queue_down_says_the_sweep_was_not_queued(world: World) -> None:
    world.publisher.raises = ConnectionError("queue down")
    job_id = world.post()
    world.store.script("cancel_job", OutcomeUnknown("lost"))
    error = refused("OUTCOME_UNKNOWN", world.service.cancel, ALICE, job_id, None)
    assert error.details == {"sweepQueued": False}
    assert world.metrics.counts == {"PostCommitFailures": 1, "SweepsNotQueued": 1}
    assert world.job_status(job_id) is JobStatus.OPEN


@pytest.mark.parametrize("use_case", ["book", "cancel"])
@pytest.mark.parametrize(
    ("error", "code"),
    [
        (Unavailable("The database is busy; retry the request."), "SERVICE_UNAVAILABLE"),
        (ConcurrentUpdate("The job changed during booking; retry."), "CONCURRENT_UPDATE"),
    ],
)
def test_a_commit_the_store_refuses_answers_its_error_and_queues_nothing(
    world: World, use_case: str, error: DomainError, code: str
) -> None:
    job_id = world.post()
    apps = world.applicants(job_id, 2)
    method = "close_job_and_accept" if use_case == "book" else "cancel_job"
    world.store.script(method, error)
    run = (
        (lambda: world.service.book(ALICE, job_id, apps[0]))
        if use_case == "book"
        else (lambda: world.service.cancel(ALICE, job_id, None))
    )

    refused(code, run)

    assert world.publisher.calls == [] and world.metrics.counts == {}
    assert world.job_status(job_id) is JobStatus.OPEN
    assert not run().replayed  # nothing had committed


def test_an_unknown_outcome_that_had_not_committed_commits_on_the_replay(world: World) -> None:
    job_id = world.post()
    apps = world.applicants(job_id, 2)
    world.store.script("close_job_and_accept", OutcomeUnknown("lost"))
    refused("OUTCOME_UNKNOWN", world.service.book, ALICE, job_id, apps[0])
    assert world.job_status(job_id) is JobStatus.OPEN
    assert world.publisher.sweeps == [job_id]  # a sweep of a job still OPEN does nothing
    assert world.service.sweep(job_id) == 0
    replay = world.service.book(ALICE, job_id, apps[0])
    assert not replay.replayed and replay.declines_queued == 1


def test_a_refused_commit_queues_nothing(world: World) -> None:
    job_id = world.post()
    world.applicants(job_id, 2)
    refused("APPLICATION_NOT_FOUND", world.service.book, ALICE, job_id, new_id())
    assert world.publisher.calls == [] and world.metrics.counts == {}


# ---------------------------------------------------------------- cancelling


def test_cancelling_an_open_job_declines_every_application(world: World) -> None:
    job_id = world.post()
    apps = world.applicants(job_id, 3)

    result = world.service.cancel(ALICE, job_id, "plans changed")

    assert not result.replayed and result.declines_queued == 3
    assert result.job.status is JobStatus.CANCELLED and result.job.cancel_reason == "plans changed"
    assert world.publisher.calls[0].reason is Reason.JOB_CANCELLED
    assert world.metrics.counts == {"JobsCancelled": 1, "DeclinesQueued": 3}
    world.deliver()
    assert {world.status(job_id, a) for a in apps} == {ApplicationStatus.DECLINED}
    assert job_id not in [j.job_id for j in world.service.list_open_jobs(10, None).items]

    again = world.service.cancel(ALICE, job_id, "plans changed")
    assert again.replayed and again.declines_queued == 0 and again.job == world.service.get_job(job_id)
    assert world.metrics.counts["JobsCancelled"] == 1


def test_a_cancel_whose_declines_failed_is_healed_by_repeating_it(world: World) -> None:
    world.publisher.raises = ConnectionError("queue down")
    job_id = world.post()
    world.applicants(job_id, 2)
    error = refused("DECLINES_NOT_QUEUED", world.service.cancel, ALICE, job_id, None)
    assert error.details == {"declinesQueued": 0, "declinesNotQueued": 2, "sweepQueued": False}
    world.publisher.heal()
    assert world.service.cancel(ALICE, job_id, None).declines_queued == 2


def test_a_booked_job_is_cancelled_before_it_starts_and_frees_the_nanny(world: World) -> None:
    job_id = world.post()
    apps = world.applicants(job_id, 2)
    world.service.book(ALICE, job_id, apps[0])

    result = world.service.cancel(ALICE, job_id, None)

    assert result.job.status is JobStatus.CANCELLED and result.job.cancel_reason is None
    accepted = world.store.get_application(job_id, apps[0])
    assert accepted is not None and (accepted.status, accepted.reason) == (
        ApplicationStatus.CANCELLED,
        Reason.BOOKING_CANCELLED,
    )
    assert world.store.calendar("u-n0")[1] == []
    # the booked nanny can no longer withdraw what was cancelled
    error = refused(
        "APPLICATION_NOT_PENDING",
        world.service.withdraw,
        nanny(0),
        job_id,
        apps[0],
    )
    assert error.details == {"status": "CANCELLED"}


def test_cancelling_refusals(world: World) -> None:
    refused("JOB_NOT_FOUND", world.service.cancel, ALICE, new_id(), None)
    booked = world.post(in_hours=1)
    [app] = world.applicants(booked, 1)
    world.service.book(ALICE, booked, app)
    world.advance(hours=1)
    refused("JOB_STARTED", world.service.cancel, ALICE, booked, None)
    # an OPEN job may be cancelled even once started
    started_open = world.post(in_hours=0.5)
    world.advance(hours=1)
    assert world.service.cancel(ALICE, started_open, None).job.status is JobStatus.CANCELLED
    # an expired or completed job cannot
    expiring = world.post(in_hours=1)
    world.advance(hours=2)
    world.service.settle_due_jobs()
    error = refused("JOB_NOT_OPEN", world.service.cancel, ALICE, expiring, None)
    assert error.details == {"status": "EXPIRED"}
    world.advance(hours=5)
    world.service.settle_due_jobs()
    assert world.job_status(booked) is JobStatus.COMPLETED
    error = refused("JOB_NOT_OPEN", world.service.cancel, ALICE, booked, None)
    assert error.details == {"status": "COMPLETED"}


# ---------------------------------------------------------------- withdrawing


def test_withdrawing_is_safe_to_repeat_and_counted_once(world: World) -> None:
    job_id = world.post()
    app = world.service.apply(NINA, job_id, None).application_id

    first = world.service.withdraw(NINA, job_id, app)
    again = world.service.withdraw(NINA, job_id, app)

    assert not first.replayed and again.replayed
    assert first.application.status is again.application.status is ApplicationStatus.WITHDRAWN
    assert world.metrics.counts == {"ApplicationsWithdrawn": 1}
    refused("ALREADY_APPLIED", world.service.apply, NINA, job_id, None)  # one application per round


def test_withdrawing_refusals(world: World) -> None:
    refused("JOB_NOT_FOUND", world.service.withdraw, NINA, new_id(), new_id())
    job_id = world.post()
    refused("APPLICATION_NOT_FOUND", world.service.withdraw, NINA, job_id, new_id())
    app = world.service.apply(NINA, job_id, None).application_id
    world.service.decline(job_id, app, Reason.JOB_BOOKED)
    error = refused("APPLICATION_NOT_PENDING", world.service.withdraw, NINA, job_id, app)
    assert error.details == {"status": "DECLINED"}


def test_a_booked_nanny_backs_out_and_the_parent_books_another(world: World) -> None:
    job_id = world.post()
    nina = world.service.apply(NINA, job_id, None).application_id
    olga = world.service.apply(OLGA, job_id, None).application_id
    world.service.book(ALICE, job_id, nina)
    world.deliver()

    backed_out = world.service.withdraw(NINA, job_id, nina)

    assert not backed_out.replayed and backed_out.application.status is ApplicationStatus.WITHDRAWN
    job = world.service.get_job(job_id)
    assert (job.status, job.accepted_application_id, job.round) == (JobStatus.OPEN, None, 1)
    assert job_id in [j.job_id for j in world.service.list_open_jobs(10, None).items]
    assert world.store.calendar("u-nina")[1] == []
    assert world.service.withdraw(NINA, job_id, nina).replayed
    # a new round: the declined applicant and the one who backed out may apply again
    again = world.service.apply(OLGA, job_id, None).application_id
    assert again != olga
    assert world.service.apply(NINA, job_id, None).status is ApplicationStatus.PENDING
    assert world.service.book(ALICE, job_id, again).job.accepted_application_id == again
    # a sweep of the booked job declines what is PENDING, not the accepted one
    assert world.service.sweep(job_id) == 1


def test_a_booked_nanny_cannot_back_out_once_the_job_started(world: World) -> None:
    job_id = world.post(in_hours=1)
    app = world.service.apply(NINA, job_id, None).application_id
    world.service.book(ALICE, job_id, app)
    world.advance(hours=1)
    refused("JOB_STARTED", world.service.withdraw, NINA, job_id, app)
    world.advance(hours=5)
    world.service.settle_due_jobs()
    error = refused("JOB_NOT_OPEN", world.service.withdraw, NINA, job_id, app)
    assert error.details == {"status": "COMPLETED"}


# ------------------------------------------------------------ declines, sweeps


def test_a_decline_says_what_it_did_and_changes_nothing_twice(world: World) -> None:
    job_id = world.post()
    apps = world.applicants(job_id, 4)
    world.service.book(ALICE, job_id, apps[0])
    world.service.withdraw(nanny(1), job_id, apps[1])
    assert world.service.decline(job_id, apps[2], Reason.JOB_BOOKED) is DeclineOutcome.DECLINED
    declined = world.store.get_application(job_id, apps[2])
    world.advance(minutes=1)
    assert world.service.decline(job_id, apps[2], Reason.JOB_BOOKED) is DeclineOutcome.ALREADY_DECLINED
    assert world.store.get_application(job_id, apps[2]) == declined  # not even updatedAt moved
    assert world.service.decline(job_id, apps[0]) is DeclineOutcome.SKIPPED_ACCEPTED
    assert world.service.decline(job_id, apps[1]) is DeclineOutcome.SKIPPED_WITHDRAWN
    assert world.service.decline(job_id, new_id()) is DeclineOutcome.UNKNOWN_APPLICATION
    assert world.metrics.counts["DeclinesApplied"] == 1 and world.metrics.counts["DeclinesSkipped"] == 4
    assert world.status(job_id, apps[0]) is ApplicationStatus.ACCEPTED


def test_a_decline_of_a_cancelled_booking_is_skipped(world: World) -> None:
    job_id = world.post()
    [app] = world.applicants(job_id, 1)
    world.service.book(ALICE, job_id, app)
    world.service.cancel(ALICE, job_id, None)
    assert world.service.decline(job_id, app, Reason.JOB_BOOKED) is DeclineOutcome.SKIPPED_CANCELLED


def test_the_sweep_declines_what_the_booking_left_pending(world: World) -> None:
    job_id = world.post()
    apps = world.applicants(job_id, 4)
    world.service.book(ALICE, job_id, apps[0])  # queued, never delivered

    assert world.service.sweep(job_id) == 3
    assert world.metrics.counts["DeclinesSwept"] == 3
    assert world.status(job_id, apps[0]) is ApplicationStatus.ACCEPTED
    assert world.service.sweep(job_id) == 0
    assert world.deliver() == 0  # the queued declines arrive late: nothing left to do


def test_a_sweep_of_an_open_or_unknown_job_does_nothing(world: World) -> None:
    job_id = world.post()
    apps = world.applicants(job_id, 2)
    assert world.service.sweep(job_id) == 0 and world.service.sweep(new_id()) == 0
    assert {world.status(job_id, a) for a in apps} == {ApplicationStatus.PENDING}


@pytest.mark.parametrize(("settle", "reason"), [("cancel", Reason.JOB_CANCELLED), ("expire", Reason.JOB_EXPIRED)])
def test_the_sweep_declines_with_the_job_s_reason(world: World, settle: str, reason: Reason) -> None:
    job_id = world.post(in_hours=1)
    apps = world.applicants(job_id, 2)
    # the declines are queued but never delivered: the sweep finds them
    if settle == "cancel":
        world.service.cancel(ALICE, job_id, None)
    else:
        world.advance(hours=2)
        world.service.settle_due_jobs()
    assert world.service.sweep(job_id) == 2
    assert {world.store.get_application(job_id, a).reason for a in apps} == {reason}  # type: ignore[union-attr]


# ------------------------------------------------------------ expiry, completion


def test_settling_expires_started_open_jobs_and_declines_their_applications(world: World) -> None:
    job_id = world.post(in_hours=1)
    apps = world.applicants(job_id, 3)
    untouched = world.post(in_hours=5)
    world.advance(hours=2)

    report = world.service.settle_due_jobs()

    assert (report.expired, report.completed, report.declines_queued, report.failed, report.more) == (
        1,
        0,
        3,
        0,
        False,
    )
    job = world.service.get_job(job_id)
    assert job.status is JobStatus.EXPIRED and job.expired_at == format_time(world.now)
    assert world.publisher.calls[0].reason is Reason.JOB_EXPIRED
    assert world.metrics.counts == {"JobsExpired": 1, "DeclinesQueued": 3}
    world.deliver()
    assert {world.status(job_id, a) for a in apps} == {ApplicationStatus.DECLINED}
    assert world.job_status(untouched) is JobStatus.OPEN
    assert world.service.settle_due_jobs().expired == 0  # nothing twice


def test_an_expiry_whose_declines_failed_is_finished_by_the_next_run(world: World) -> None:
    job_id = world.post(in_hours=1)
    world.applicants(job_id, 2)
    world.publisher.raises = Unavailable("queue down")
    world.advance(hours=2)

    first = world.service.settle_due_jobs()

    assert (first.expired, first.failed) == (1, 1)
    assert world.metrics.counts["JobsExpired"] == 1
    world.publisher.heal()
    second = world.service.settle_due_jobs()
    assert (second.expired, second.declines_queued, second.failed) == (0, 2, 0)
    assert world.service.settle_due_jobs().declines_queued == 0  # forgotten once its declines went out


def test_an_expiry_whose_declines_were_reported_failed_is_retried(world: World) -> None:
    job_id = world.post(in_hours=1)
    apps = world.applicants(job_id, 2)
    world.publisher.fail_ids = {apps[0]}
    world.advance(hours=2)
    assert world.service.settle_due_jobs().failed == 1
    assert world.metrics.counts["DeclinesNotQueued"] == 1


def test_settling_completes_a_booked_job_once_it_ended_and_frees_the_nanny(world: World) -> None:
    job_id = world.post(in_hours=1, hours=2)
    app = world.service.apply(NINA, job_id, None).application_id
    world.service.book(ALICE, job_id, app)
    world.advance(hours=2)  # started, not ended
    assert world.service.settle_due_jobs().completed == 0
    world.advance(hours=1)

    report = world.service.settle_due_jobs()

    assert report.completed == 1 and world.job_status(job_id) is JobStatus.COMPLETED
    assert world.service.get_job(job_id).completed_at == format_time(world.now)
    assert world.metrics.counts["JobsCompleted"] == 1
    assert world.store.calendar("u-nina")[1] == []
    assert world.service.settle_due_jobs().completed == 0


def test_settling_is_bounded_per_run(world: World) -> None:
    for _ in range(12):
        world.post(in_hours=1)
    world.advance(hours=2)
    assert world.service.settle_due_jobs(limit_per_shard=1).more
    total = 0
    while True:
        report = world.service.settle_due_jobs(limit_per_shard=1)
        total += report.expired
        if not report.more:
            break
    assert world.metrics.counts["JobsExpired"] == 12


def test_a_failing_store_leaves_the_job_for_the_next_run(world: World) -> None:
    job_id = world.post(in_hours=1)
    world.advance(hours=2)
    world.store.script("expire_job", Unavailable("busy"))
    assert world.service.settle_due_jobs().failed == 1
    assert world.job_status(job_id) is JobStatus.OPEN
    assert world.service.settle_due_jobs().expired == 1


def test_a_job_booked_before_its_expiry_run_is_not_expired(world: World) -> None:
    job_id = world.post(in_hours=1)
    [app] = world.applicants(job_id, 1)
    world.service.book(ALICE, job_id, app)
    world.advance(hours=2)
    assert world.service.settle_due_jobs(now=format_time(world.now)).expired == 0
    assert world.job_status(job_id) is JobStatus.CLOSED
