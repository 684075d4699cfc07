"""One contract for every ``booking.Store``: ``InMemoryStore``, and ``DynamoStore`` on moto and on MiniStack.

The unit tests of the use cases run on the in-memory store; these tests hold it to
what the table's store does, method by method: the same answers, the same refusals
(domain errors and their details), the same replays, the same listing orders and
cursors. Here, beside the other tests of the table, because the two emulated backends
are ``tests/integration/conftest.py``'s (the project's own table definition).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from dataclasses import replace as copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.booking import Store
from chalicelib.domain import (
    Application,
    ApplicationStatus,
    Commit,
    DeclineOutcome,
    DomainError,
    Job,
    JobStatus,
    Page,
    Reason,
    format_time,
    new_id,
)
from chalicelib.items import open_shard
from chalicelib.store import DynamoStore
from tests.fakes.clock import FakeClock
from tests.fakes.store import IDEMPOTENCY_TTL_SECONDS, InMemoryStore
from tests.integration.conftest import emulated_aws

# Far ahead, so that no emulator's TTL touches a listing; every `now` is passed explicitly.
T0 = datetime(2035, 6, 1, 8, 0, tzinfo=UTC)
DAY = 24 * 3600


def at(hours: float) -> str:
    return format_time(T0 + timedelta(hours=hours))


@dataclass
class Backend:
    name: str
    store: Any  # a booking.Store, and the calendar read of DynamoStore
    key_expiries: Callable[[], list[float]]  # when each idempotency key expires (epoch seconds)
    expire_keys: Callable[[], None]  # every idempotency key past its 24 h (not yet deleted by TTL)


@pytest.fixture(params=["memory", "moto", "ministack"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    if request.param == "memory":
        clock = FakeClock()
        clock.now = time.time()
        memory = InMemoryStore(wall_clock=clock)

        def expire() -> None:
            clock.now += IDEMPOTENCY_TTL_SECONDS + 1

        yield Backend("memory", memory, lambda: [float(e) for e in memory.idempotency_expiries()], expire)
        return
    request.getfixturevalue("app_env")
    with emulated_aws(request.param, request, monkeypatch) as aws:

        def records() -> list[dict[str, Any]]:
            return [i for i in aws.items() if i["type"]["S"] == "IDEMPOTENCY_KEY"]

        def expire_keys() -> None:
            past = {":past": {"N": str(int(time.time()) - 1)}}
            for record in records():  # TTL deletes lazily: an expired record may still be there
                key = {"PK": record["PK"], "SK": record["SK"]}
                aws.dynamodb.update_item(
                    TableName=aws.table,
                    Key=key,
                    UpdateExpression="SET expiresAt = :past",
                    ExpressionAttributeValues=past,
                )

        yield Backend(
            request.param,
            DynamoStore(aws.dynamodb, aws.table),
            lambda: [float(r["expiresAt"]["N"]) for r in records()],
            expire_keys,
        )


_ms = itertools.count(int(T0.timestamp() * 1000) - 10**9)


def ulid() -> str:
    """Ids in creation order, as the service's ids are (one per millisecond)."""
    return new_id(next(_ms))


def job(owner: str = "u-alice", *, starts: float = 48, hours: float = 3, **fields: Any) -> Job:
    return Job(
        job_id=fields.pop("job_id", None) or ulid(),
        owner=owner,
        status=fields.pop("status", JobStatus.OPEN),
        title=fields.pop("title", "Evening sitter"),
        starts_at=at(starts),
        ends_at=at(starts + hours),
        created_at=at(0),
        owner_name=owner.removeprefix("u-"),
        owner_email=f"{owner}@example.com",
        **fields,
    )


def application(j: Job, nanny: str = "u-nina", *, now: float = 1, **fields: Any) -> Application:
    return Application(
        application_id=ulid(),
        job_id=j.job_id,
        applicant=nanny,
        status=ApplicationStatus.PENDING,
        created_at=at(now),
        updated_at=at(now),
        message=fields.pop("message", "Happy to help"),
        applicant_name=nanny.removeprefix("u-"),
        applicant_email=f"{nanny}@example.com",
        **fields,
    )


def posted(store: Store, owner: str = "u-alice", **fields: Any) -> Job:
    j = job(owner, **fields)
    store.put_job(j)
    return j


def applied(store: Store, j: Job, nanny: str = "u-nina", **fields: Any) -> Application:
    a = application(j, nanny, **fields)
    store.add_application(j, a)
    return a


def refused(code: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> DomainError:
    with pytest.raises(DomainError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value.message
    return caught.value


def every_page(read: Callable[[int, dict | None], Page], limit: int) -> tuple[list[Any], int]:
    """Every item of a listing, page by page; each page at most ``limit`` items."""
    seen: list[Any] = []
    cursor: dict | None = None
    for pages in itertools.count(1):
        page = read(limit, cursor)
        assert len(page.items) <= limit
        seen += page.items
        if page.cursor is None:
            return seen, pages
        assert isinstance(page.cursor, dict)
        cursor = page.cursor
    raise AssertionError("unreachable")  # pragma: no cover


# ------------------------------------------------------------------- jobs


def test_a_job_reads_back_as_it_was_written(backend: Backend) -> None:
    store = backend.store
    j = job(description="Two kids", hourly_rate=Decimal("18.5"), location="Leeds")
    store.put_job(j)
    assert store.get_job(j.job_id) == j
    assert store.get_job(ulid()) is None
    bare = posted(store)
    assert store.get_job(bare.job_id) == bare


def test_a_job_written_twice_is_one_job_and_another_with_its_id_collides(backend: Backend) -> None:
    store = backend.store
    j = posted(store)
    store.put_job(j)  # a retry of a committed write
    assert store.list_jobs_of_owner("u-alice", 10, None).items == [j]
    refused("CONCURRENT_UPDATE", store.put_job, copy(j, owner="u-bob"))
    assert store.get_job(j.job_id) == j


def test_an_idempotency_key_binds_the_first_job_for_a_day(backend: Backend) -> None:
    store = backend.store
    first = job()
    before = time.time()
    assert store.put_job_once(first, "key-1", "fp-1") == first.job_id
    assert store.put_job_once(first, "key-1", "fp-1") == first.job_id  # the same write again
    second = job()
    assert store.put_job_once(second, "key-1", "fp-1") == first.job_id
    assert store.get_job(second.job_id) is None
    refused("IDEMPOTENCY_KEY_REUSED", store.put_job_once, job(), "key-1", "fp-2")
    other = job("u-bob")
    assert store.put_job_once(other, "key-1", "fp-2") == other.job_id  # keys are per owner
    [expiry, _] = sorted(backend.key_expiries())
    assert before + DAY - 2 <= expiry <= time.time() + DAY + 2

    backend.expire_keys()
    third = job()
    assert store.put_job_once(third, "key-1", "fp-3") == third.job_id
    assert store.get_job(third.job_id) == third
    assert [j.job_id for j in store.list_jobs_of_owner("u-alice", 10, None).items] == [third.job_id, first.job_id]


def test_a_job_posted_with_a_key_is_listed_and_due_like_any(backend: Backend) -> None:
    store = backend.store
    j = job(starts=1)
    store.put_job_once(j, "k", "fp")
    assert store.list_open_jobs(10, None, at(0)).items == [j]
    assert store.due_job_ids(at(1), 10) == [j.job_id]


def test_jobs_of_an_owner_page_newest_first(backend: Backend) -> None:
    store = backend.store
    mine = [posted(store) for _ in range(5)]
    posted(store, "u-bob")
    for limit in (1, 2, 3, 5, 10):
        seen, pages = every_page(lambda n, c: store.list_jobs_of_owner("u-alice", n, c), limit)
        assert seen == list(reversed(mine)), limit
        assert pages >= -(-5 // limit)
    assert store.list_jobs_of_owner("u-nobody", 10, None) == Page(items=[])


def test_a_listing_refuses_a_cursor_it_did_not_issue(backend: Backend) -> None:
    store = backend.store
    j = posted(store)
    for _ in range(2):
        posted(store)
        posted(store, "u-bob")
        applied(store, j, ulid())
    bob_cursor = store.list_jobs_of_owner("u-bob", 1, None).cursor
    apps_cursor = store.list_applications(j.job_id, 1, None).cursor
    assert bob_cursor is not None and apps_cursor is not None
    for bad in ({}, {"PK": "x"}, {**bob_cursor, "extra": "1"}, bob_cursor, apps_cursor, {k: 1 for k in bob_cursor}):
        refused("INVALID_NEXT_TOKEN", store.list_jobs_of_owner, "u-alice", 1, bad)
    refused("INVALID_NEXT_TOKEN", store.list_applications, j.job_id, 1, bob_cursor)
    refused("INVALID_NEXT_TOKEN", store.list_applications, ulid(), 1, apps_cursor)
    refused("INVALID_NEXT_TOKEN", store.list_applications_of_applicant, "u-nina", 1, apps_cursor)
    for bad in ({}, {"shards": {}}, {"shards": {"9": ""}}, {"shards": {"0": "not-an-id"}}, bob_cursor):
        refused("INVALID_NEXT_TOKEN", store.list_open_jobs, 1, bad, at(0))


def test_a_page_short_of_its_limit_is_the_last_and_a_full_one_may_be_followed_by_an_empty_one(
    backend: Backend,
) -> None:
    store = backend.store
    j = posted(store)
    posted(store)
    applied(store, j)
    applied(store, posted(store, "u-bob"))
    applied(store, j, "u-olga")
    for read in (
        lambda n, c: store.list_jobs_of_owner("u-alice", n, c),
        lambda n, c: store.list_applications(j.job_id, n, c),
        lambda n, c: store.list_applications_of_applicant("u-nina", n, c),
    ):
        assert len(read(3, None).items) == 2 and read(3, None).cursor is None
        full = read(2, None)
        assert len(full.items) == 2
        # DynamoDB (and MiniStack) answer a cursor for every full page, moto only when more follows
        if full.cursor is not None:
            assert read(2, full.cursor) == Page(items=[])


# ------------------------------------------------------------ open listing


def test_open_jobs_page_newest_first_across_shards_and_hide_started_ones(backend: Backend) -> None:
    store = backend.store
    soon = [posted(store, starts=2) for _ in range(3)]
    later = [posted(store, f"u-p{i}", starts=48) for i in range(11)]
    every = sorted([*soon, *later], key=lambda j: j.job_id, reverse=True)
    for limit in (1, 4, 20):
        seen, _ = every_page(lambda n, c: store.list_open_jobs(n, c, at(1)), limit)
        assert seen == every, limit
    seen, _ = every_page(lambda n, c: store.list_open_jobs(n, c, at(2)), 4)  # `soon` started
    assert seen == list(reversed(later))
    assert store.list_open_jobs(10, None, at(100)).items == []


def test_a_job_leaves_the_open_listing_when_booked_cancelled_or_expired_and_comes_back_when_reopened(
    backend: Backend,
) -> None:
    store = backend.store
    booked, cancelled, expired, kept = (posted(store, starts=s) for s in (48, 48, 2, 48))
    a = applied(store, booked)
    store.close_job_and_accept("u-alice", booked.job_id, a.application_id, at(1))
    store.cancel_job("u-alice", cancelled.job_id, None, at(1))
    assert store.expire_job(expired.job_id, at(2))
    assert [j.job_id for j in store.list_open_jobs(10, None, at(1)).items] == [kept.job_id]

    store.withdraw_application("u-nina", booked.job_id, a.application_id, at(3))
    listed = store.list_open_jobs(10, None, at(3)).items
    assert [j.job_id for j in listed] == [kept.job_id, booked.job_id]
    assert listed[1] == store.get_job(booked.job_id) and listed[1].round == 1


# ------------------------------------------------------------ applications


def test_applications_read_back_and_list_in_their_orders(backend: Backend) -> None:
    store = backend.store
    j, other = posted(store), posted(store)
    apps = [applied(store, j, f"u-n{i}") for i in range(5)]
    mine = [applied(store, other, "u-n0"), applied(store, posted(store), "u-n0")]
    assert store.get_application(j.job_id, apps[0].application_id) == apps[0]
    assert store.get_application(j.job_id, mine[0].application_id) is None  # another job's
    assert store.get_application(ulid(), ulid()) is None
    for limit in (1, 2, 5, 6):
        seen, _ = every_page(lambda n, c: store.list_applications(j.job_id, n, c), limit)
        assert seen == apps, limit  # oldest first
        seen, _ = every_page(lambda n, c: store.list_applications_of_applicant("u-n0", n, c), limit)
        assert seen == [*reversed(mine), apps[0]], limit  # newest first
    assert store.list_applications(ulid(), 10, None) == Page(items=[])


def test_an_application_needs_an_open_job_not_yet_started(backend: Backend) -> None:
    store = backend.store
    refused("JOB_NOT_FOUND", store.add_application, job(), application(job()))
    started = posted(store, starts=2)
    error = refused("JOB_STARTED", store.add_application, started, application(started, now=2))
    assert error.details == {"startsAt": started.starts_at}
    booked = posted(store)
    a = applied(store, booked)
    store.close_job_and_accept("u-alice", booked.job_id, a.application_id, at(1))
    error = refused("JOB_NOT_OPEN", store.add_application, booked, application(booked, "u-olga"))
    assert error.details == {"acceptedApplicationId": a.application_id}
    cancelled = posted(store)
    store.cancel_job("u-alice", cancelled.job_id, None, at(1))
    error = refused("JOB_NOT_OPEN", store.add_application, cancelled, application(cancelled))
    assert error.details == {"status": "CANCELLED"}
    assert store.list_applications(booked.job_id, 10, None).items == [
        copy(a, status=ApplicationStatus.ACCEPTED, updated_at=at(1))
    ]


def test_one_application_per_nanny_and_round_and_a_replay_is_no_second(backend: Backend) -> None:
    store = backend.store
    j = posted(store)
    first = applied(store, j)
    store.add_application(j, first)  # the same write again: its answer was lost
    refused("ALREADY_APPLIED", store.add_application, j, application(j))
    assert store.list_applications(j.job_id, 10, None).items == [first]

    olga = applied(store, j, "u-olga")
    store.close_job_and_accept("u-alice", j.job_id, olga.application_id, at(2))
    store.withdraw_application("u-olga", j.job_id, olga.application_id, at(3))  # reopened: round 1
    refused("CONCURRENT_UPDATE", store.add_application, j, application(j, "u-zoe", now=4))  # read in round 0
    reopened = store.get_job(j.job_id)
    again = applied(store, reopened, "u-nina", now=4)
    refused("ALREADY_APPLIED", store.add_application, reopened, application(reopened, "u-nina", now=4))
    assert store.list_applications_of_applicant("u-nina", 10, None).items == [again, first]


def test_pending_applications_of_a_job_and_every_one_the_index_lists(backend: Backend) -> None:
    store = backend.store
    j = posted(store)
    apps = [applied(store, j, f"u-n{i}") for i in range(4)]
    store.withdraw_application("u-n1", j.job_id, apps[1].application_id, at(2))
    store.decline_application(j.job_id, apps[2].application_id, at(2), Reason.JOB_BOOKED)
    found, pending = store.job_with_pending_applications(j.job_id)
    assert found == j
    assert pending == [apps[0].application_id, apps[3].application_id]
    # The index holds keys only: it lists every application, whatever its status, and never the job.
    assert store.indexed_application_ids(j.job_id) == [a.application_id for a in apps]
    assert store.job_with_pending_applications(ulid()) == (None, [])
    assert store.indexed_application_ids(ulid()) == []


# ------------------------------------------------------------------ booking


def test_a_booking_closes_the_job_accepts_the_application_and_fills_the_calendar(backend: Backend) -> None:
    store = backend.store
    j = posted(store)
    a, other = applied(store, j), applied(store, j, "u-olga")

    committed = store.close_job_and_accept("u-alice", j.job_id, a.application_id, at(5))

    booked = copy(
        j,
        status=JobStatus.CLOSED,
        accepted_application_id=a.application_id,
        accepted_applicant="u-nina",
        closed_at=at(5),
    )
    # the commit answers the job as it left it: the caller needs no second read
    assert committed == Commit(replayed=False, job=booked)
    assert store.get_job(j.job_id) == booked
    assert store.get_application(j.job_id, a.application_id) == copy(
        a, status=ApplicationStatus.ACCEPTED, updated_at=at(5)
    )
    assert store.get_application(j.job_id, other.application_id) == other
    assert store.calendar("u-nina")[1] == [j.slot()]
    # the same booking again answers the job as stored, and changes nothing
    assert store.close_job_and_accept("u-alice", j.job_id, a.application_id, at(6)) == Commit(replayed=True, job=booked)
    assert store.get_job(j.job_id) == booked


def test_a_booking_s_refusals(backend: Backend) -> None:
    store = backend.store
    refused("JOB_NOT_FOUND", store.close_job_and_accept, "u-alice", ulid(), ulid(), at(1))
    j = posted(store)
    a, b, c = applied(store, j), applied(store, j, "u-olga"), applied(store, j, "u-zoe")
    refused("NOT_JOB_OWNER", store.close_job_and_accept, "u-bob", j.job_id, a.application_id, at(1))
    refused("APPLICATION_NOT_FOUND", store.close_job_and_accept, "u-alice", j.job_id, ulid(), at(1))
    store.withdraw_application("u-zoe", j.job_id, c.application_id, at(1))
    error = refused("APPLICATION_NOT_PENDING", store.close_job_and_accept, "u-alice", j.job_id, c.application_id, at(1))
    assert error.details == {"status": "WITHDRAWN"}
    refused("JOB_STARTED", store.close_job_and_accept, "u-alice", j.job_id, a.application_id, at(48))
    store.close_job_and_accept("u-alice", j.job_id, a.application_id, at(2))
    error = refused("JOB_NOT_OPEN", store.close_job_and_accept, "u-alice", j.job_id, b.application_id, at(3))
    assert error.details == {"acceptedApplicationId": a.application_id}
    store.cancel_job("u-alice", j.job_id, None, at(3))
    error = refused("JOB_NOT_OPEN", store.close_job_and_accept, "u-alice", j.job_id, b.application_id, at(4))
    assert error.details == {"status": "CANCELLED"}
    assert store.get_application(j.job_id, b.application_id) == b


def test_no_nanny_is_booked_twice_at_overlapping_times(backend: Backend) -> None:
    store = backend.store
    first = posted(store, starts=48, hours=3)
    overlapping = posted(store, "u-bob", starts=50, hours=3)
    adjacent = posted(store, "u-bob", starts=51, hours=2)
    a1, a2, a3 = (applied(store, j) for j in (first, overlapping, adjacent))
    store.close_job_and_accept("u-alice", first.job_id, a1.application_id, at(1))

    error = refused(
        "NANNY_UNAVAILABLE", store.close_job_and_accept, "u-bob", overlapping.job_id, a2.application_id, at(1)
    )

    assert error.details == {"jobId": first.job_id, "startsAt": first.starts_at, "endsAt": first.ends_at}
    assert store.get_job(overlapping.job_id) == overlapping
    assert not store.close_job_and_accept("u-bob", adjacent.job_id, a3.application_id, at(1)).replayed
    version, slots = store.calendar("u-nina")
    assert sorted(slots, key=lambda s: s.starts_at) == [first.slot(), adjacent.slot()] and version == 2
    assert store.calendar("u-nobody") == (0, [])


# --------------------------------------------------------------- cancelling


def test_cancelling_an_open_job_even_started_and_again(backend: Backend) -> None:
    store = backend.store
    j = posted(store, starts=2)
    a = applied(store, j)
    # started: still cancellable
    assert store.cancel_job("u-alice", j.job_id, "plans changed", at(3)) == Commit(replayed=False)
    cancelled = copy(j, status=JobStatus.CANCELLED, cancelled_at=at(3), cancel_reason="plans changed")
    assert store.get_job(j.job_id) == cancelled
    assert store.get_application(j.job_id, a.application_id) == a  # its declines are the service's
    assert store.cancel_job("u-alice", j.job_id, "again", at(4)) == Commit(replayed=True, job=cancelled)
    assert store.due_job_ids(at(10), 10) == []
    quiet = posted(store)
    store.cancel_job("u-alice", quiet.job_id, "", at(1))
    assert store.get_job(quiet.job_id).cancel_reason is None


def test_cancelling_a_booked_job_cancels_its_booking_and_frees_the_nanny(backend: Backend) -> None:
    store = backend.store
    j = posted(store)
    a = applied(store, j)
    store.close_job_and_accept("u-alice", j.job_id, a.application_id, at(1))
    assert store.cancel_job("u-alice", j.job_id, None, at(2)) == Commit(replayed=False)
    stored = store.get_job(j.job_id)
    assert (stored.status, stored.cancelled_at, stored.accepted_application_id) == (
        JobStatus.CANCELLED,
        at(2),
        a.application_id,
    )
    assert store.get_application(j.job_id, a.application_id) == copy(
        a, status=ApplicationStatus.CANCELLED, reason=Reason.BOOKING_CANCELLED, updated_at=at(2)
    )
    assert store.calendar("u-nina")[1] == []
    assert store.cancel_job("u-alice", j.job_id, None, at(3)) == Commit(replayed=True, job=stored)


def test_cancelling_s_refusals(backend: Backend) -> None:
    store = backend.store
    refused("JOB_NOT_FOUND", store.cancel_job, "u-alice", ulid(), None, at(1))
    j = posted(store, starts=2)
    refused("NOT_JOB_OWNER", store.cancel_job, "u-bob", j.job_id, None, at(1))
    a = applied(store, j)
    store.close_job_and_accept("u-alice", j.job_id, a.application_id, at(1))
    error = refused("JOB_STARTED", store.cancel_job, "u-alice", j.job_id, None, at(2))
    assert error.details == {"startsAt": j.starts_at}
    expired = posted(store, starts=2)
    store.expire_job(expired.job_id, at(2))
    error = refused("JOB_NOT_OPEN", store.cancel_job, "u-alice", expired.job_id, None, at(3))
    assert error.details == {"status": "EXPIRED"}
    store.complete_job(store.get_job(j.job_id), at(5))
    error = refused("JOB_NOT_OPEN", store.cancel_job, "u-alice", j.job_id, None, at(6))
    assert error.details == {"status": "COMPLETED"}


# -------------------------------------------------------------- withdrawing


def test_withdrawing_a_pending_application_and_again(backend: Backend) -> None:
    store = backend.store
    j = posted(store)
    a = applied(store, j)
    withdrawn = copy(a, status=ApplicationStatus.WITHDRAWN, updated_at=at(2))
    assert store.withdraw_application("u-nina", j.job_id, a.application_id, at(2)) == (withdrawn, False)
    assert store.withdraw_application("u-nina", j.job_id, a.application_id, at(3)) == (withdrawn, True)
    assert store.get_application(j.job_id, a.application_id) == withdrawn


def test_withdrawing_s_refusals(backend: Backend) -> None:
    store = backend.store
    refused("JOB_NOT_FOUND", store.withdraw_application, "u-nina", ulid(), ulid(), at(1))
    j = posted(store)
    refused("APPLICATION_NOT_FOUND", store.withdraw_application, "u-nina", j.job_id, ulid(), at(1))
    a = applied(store, j)
    refused("NOT_APPLICANT", store.withdraw_application, "u-olga", j.job_id, a.application_id, at(1))
    store.decline_application(j.job_id, a.application_id, at(2), Reason.JOB_CANCELLED)
    error = refused("APPLICATION_NOT_PENDING", store.withdraw_application, "u-nina", j.job_id, a.application_id, at(3))
    assert error.details == {"status": "DECLINED"}


def test_a_booked_nanny_backs_out_before_the_start_and_the_job_reopens(backend: Backend) -> None:
    store = backend.store
    j = posted(store, starts=10)
    a = applied(store, j)
    store.close_job_and_accept("u-alice", j.job_id, a.application_id, at(1))

    app, replayed = store.withdraw_application("u-nina", j.job_id, a.application_id, at(2))

    assert (app, replayed) == (copy(a, status=ApplicationStatus.WITHDRAWN, updated_at=at(2)), False)
    assert store.get_job(j.job_id) == copy(j, round=1)
    assert store.calendar("u-nina")[1] == []
    assert store.due_job_ids(at(10), 10) == [j.job_id]  # due at its start again
    assert store.withdraw_application("u-nina", j.job_id, a.application_id, at(3)) == (app, True)


def test_a_booked_nanny_cannot_back_out_once_started_or_completed(backend: Backend) -> None:
    store = backend.store
    j = posted(store, starts=2)
    a = applied(store, j)
    store.close_job_and_accept("u-alice", j.job_id, a.application_id, at(1))
    error = refused("JOB_STARTED", store.withdraw_application, "u-nina", j.job_id, a.application_id, at(2))
    assert error.details == {"startsAt": j.starts_at}
    assert store.complete_job(store.get_job(j.job_id), at(5))
    error = refused("JOB_NOT_OPEN", store.withdraw_application, "u-nina", j.job_id, a.application_id, at(6))
    assert error.details == {"status": "COMPLETED"}


# ----------------------------------------------------------------- declines


def test_a_decline_applies_to_a_pending_application_only(backend: Backend) -> None:
    store = backend.store
    j = posted(store)
    pending, plain, accepted, withdrawn = (applied(store, j, f"u-n{i}") for i in range(4))
    store.close_job_and_accept("u-alice", j.job_id, accepted.application_id, at(1))
    store.withdraw_application("u-n3", j.job_id, withdrawn.application_id, at(1))

    assert store.decline_application(j.job_id, pending.application_id, at(2), Reason.JOB_BOOKED) is (
        DeclineOutcome.DECLINED
    )
    declined = copy(pending, status=ApplicationStatus.DECLINED, updated_at=at(2), reason=Reason.JOB_BOOKED)
    assert store.get_application(j.job_id, pending.application_id) == declined
    assert store.decline_application(j.job_id, pending.application_id, at(3), Reason.JOB_CANCELLED) is (
        DeclineOutcome.ALREADY_DECLINED
    )
    assert store.get_application(j.job_id, pending.application_id) == declined
    assert store.decline_application(j.job_id, plain.application_id, at(2)) is DeclineOutcome.DECLINED
    assert store.get_application(j.job_id, plain.application_id).reason is None
    assert store.decline_application(j.job_id, accepted.application_id, at(2)) is DeclineOutcome.SKIPPED_ACCEPTED
    assert store.decline_application(j.job_id, withdrawn.application_id, at(2)) is DeclineOutcome.SKIPPED_WITHDRAWN
    assert store.decline_application(j.job_id, ulid(), at(2)) is DeclineOutcome.UNKNOWN_APPLICATION
    store.cancel_job("u-alice", j.job_id, None, at(3))
    assert store.decline_application(j.job_id, accepted.application_id, at(4)) is DeclineOutcome.SKIPPED_CANCELLED


# ------------------------------------------------------- expiry, completion


def test_due_jobs_are_open_ones_past_their_start_and_booked_ones_past_their_end(backend: Backend) -> None:
    store = backend.store
    open_early, open_late = posted(store, starts=2), posted(store, starts=20)
    booked = posted(store, starts=3, hours=2)
    a = applied(store, booked)
    store.close_job_and_accept("u-alice", booked.job_id, a.application_id, at(1))
    cancelled = posted(store, starts=2)
    store.cancel_job("u-alice", cancelled.job_id, None, at(1))

    assert store.due_job_ids(at(1), 10) == []
    assert store.due_job_ids(at(2), 10) == [open_early.job_id]
    assert store.due_job_ids(at(4), 10) == [open_early.job_id]  # the booked one ends at 5
    assert sorted(store.due_job_ids(at(20), 10)) == sorted([open_early.job_id, open_late.job_id, booked.job_id])


def test_due_jobs_are_bounded_per_shard(backend: Backend) -> None:
    store = backend.store
    jobs = [posted(store, starts=1 + i / 10) for i in range(20)]
    found = store.due_job_ids(at(5), 1)
    assert len(found) == len(set(found)) and set(found) <= {j.job_id for j in jobs}
    assert len(found) <= 8  # one per shard
    shard_firsts = {}
    for j in sorted(jobs, key=lambda j: j.starts_at):
        shard_firsts.setdefault(open_shard(j.job_id), j.job_id)
    assert sorted(found) == sorted(shard_firsts.values())  # each shard's earliest
    assert sorted(store.due_job_ids(at(5), 100)) == sorted(j.job_id for j in jobs)


def test_expiring_an_open_job_once_started(backend: Backend) -> None:
    store = backend.store
    j = posted(store, starts=2)
    assert not store.expire_job(j.job_id, at(1))
    assert store.expire_job(j.job_id, at(2))
    assert store.get_job(j.job_id) == copy(j, status=JobStatus.EXPIRED, expired_at=at(2))
    assert not store.expire_job(j.job_id, at(3))
    assert not store.expire_job(ulid(), at(3))
    assert store.due_job_ids(at(3), 10) == [j.job_id]  # until its declines are out
    store.forget_due(j.job_id, JobStatus.OPEN)  # not its status: nothing
    assert store.due_job_ids(at(3), 10) == [j.job_id]
    store.forget_due(j.job_id, JobStatus.EXPIRED)
    assert store.due_job_ids(at(3), 10) == []
    store.forget_due(ulid(), JobStatus.EXPIRED)  # nothing to forget


def test_a_booked_job_is_not_expired(backend: Backend) -> None:
    store = backend.store
    j = posted(store, starts=2)
    a = applied(store, j)
    store.close_job_and_accept("u-alice", j.job_id, a.application_id, at(1))
    assert not store.expire_job(j.job_id, at(3))
    assert store.get_job(j.job_id).status is JobStatus.CLOSED


def test_completing_a_booked_job_once_ended_frees_the_nanny(backend: Backend) -> None:
    store = backend.store
    j = posted(store, starts=2, hours=2)
    a = applied(store, j)
    store.close_job_and_accept("u-alice", j.job_id, a.application_id, at(1))
    booked = store.get_job(j.job_id)
    assert not store.complete_job(booked, at(3))
    assert store.complete_job(booked, at(4))
    assert store.get_job(j.job_id) == copy(booked, status=JobStatus.COMPLETED, completed_at=at(4))
    assert store.calendar("u-nina")[1] == []
    assert store.due_job_ids(at(10), 10) == []
    assert not store.complete_job(booked, at(5))
    open_job = posted(store, starts=2, hours=2)
    assert not store.complete_job(open_job, at(5))
