"""Events derived from stream images, the stream function's batch rules, the mailer's templates
and the local stream poller's settlement: no I/O."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.events import TRANSITIONS, DomainEvent, InvalidEvent, event_of
from chalicelib.items import serialize, state_of
from chalicelib.mail import TEMPLATES, MailContext, Person, Recipient, _template_name, render
from chalicelib.stream import BatchFailed, StreamProcessor, handle_stream_batch
from tests.fakes.metrics import CountingMetrics
from tests.fakes.stream import FakeBus, FakeStream, FakeSweeps, Owners
from tools.local.stream import StreamPoller, failed_sequence

JOB_ID = "01JZ0000000000000000000001"
APP_ID = "01JZ0000000000000000000002"


def job_image(status: str, **extra: Any) -> dict[str, Any]:
    item = {"PK": f"JOB#{JOB_ID}", "SK": "JOB", "type": "JOB", "jobId": JOB_ID, "owner": "alice", "status": status}
    return serialize({"createdAt": "2026-12-01T10:00:00.000Z", **item, **extra})


def app_image(status: str, updated: str = "2026-12-01T11:00:00.000Z", **extra: Any) -> dict[str, Any]:
    item = {
        "PK": f"JOB#{JOB_ID}",
        "SK": f"APPLICATION#{APP_ID}",
        "type": "APPLICATION",
        "jobId": JOB_ID,
        "applicationId": APP_ID,
        "applicant": "nina",
        "applicantEmail": "nina@example.com",
        "status": status,
        "createdAt": "2026-12-01T10:30:00.000Z",
        "updatedAt": updated,
    }
    return serialize({**item, **extra})


def record(seq: str, old: dict | None, new: dict | None) -> dict[str, Any]:
    dynamodb: dict[str, Any] = {"SequenceNumber": seq, "ApproximateCreationDateTime": 1796400000.0}
    if old is not None:
        dynamodb["OldImage"] = old
    if new is not None:
        dynamodb["NewImage"] = new
    return {"eventID": seq, "eventName": "MODIFY" if old else "INSERT", "dynamodb": dynamodb}


# ------------------------------------------------------------------ events


@pytest.mark.parametrize(
    "old,new,expected",
    [
        (None, job_image("OPEN"), "JobPosted"),
        (job_image("OPEN"), job_image("CLOSED", closedAt="2026-12-02T00:00:00.000Z"), "JobBooked"),
        (job_image("OPEN"), job_image("CANCELLED", cancelledAt="2026-12-02T00:00:00.000Z"), "JobCancelled"),
        (job_image("OPEN"), job_image("EXPIRED"), "JobExpired"),  # a status the enums do not know yet
        (job_image("CLOSED"), job_image("OPEN"), "JobReopened"),
        (None, app_image("PENDING"), "ApplicationSubmitted"),
        (app_image("PENDING"), app_image("ACCEPTED"), "ApplicationAccepted"),
        (app_image("PENDING"), app_image("DECLINED"), "ApplicationDeclined"),
        (app_image("ACCEPTED"), app_image("WITHDRAWN"), "ApplicationWithdrawn"),
        (app_image("ACCEPTED"), app_image("CANCELLED", reason="BOOKING_CANCELLED"), "ApplicationCancelled"),
        (app_image("PENDING"), app_image("PENDING", message="edited"), None),  # no status change
        (job_image("OPEN"), None, None),  # a deletion
    ],
)
def test_each_transition_names_its_event(old: dict | None, new: dict | None, expected: str | None) -> None:
    event = event_of(state_of(old), state_of(new), owner="alice", fallback_time="2026-12-03T00:00:00.000Z")
    assert (event.event_type if event else None) == expected


def test_other_items_make_no_event() -> None:
    listing = serialize({"PK": f"JOB#{JOB_ID}", "SK": "LISTING", "type": "JOB_LISTING", "status": "OPEN"})
    assert state_of(listing) is None


def test_an_event_keeps_its_id_and_carries_no_address() -> None:
    old, new = state_of(app_image("PENDING")), state_of(app_image("DECLINED", reason="JOB_BOOKED"))
    first = event_of(old, new, owner="alice", fallback_time="x")
    again = event_of(old, new, owner="alice", fallback_time="y")  # another delivery, another record time
    assert first is not None and again is not None
    assert first.event_id == again.event_id
    detail = first.detail()
    assert detail["reason"] == "JOB_BOOKED" and "@" not in str(detail)
    assert DomainEvent.from_detail(detail) == first


def test_a_tampered_or_unknown_event_is_refused() -> None:
    event = event_of(None, state_of(app_image("PENDING")), owner="alice", fallback_time="x")
    assert event is not None
    with pytest.raises(InvalidEvent):
        DomainEvent.from_detail({**event.detail(), "jobId": "01JZ0000000000000000000009"})
    with pytest.raises(InvalidEvent):
        DomainEvent.from_detail({**event.detail(), "schemaVersion": 2})


def test_every_emailed_event_has_a_template_that_renders_every_field() -> None:
    from chalicelib.mail import RECIPIENTS

    assert set(RECIPIENTS) <= set(TRANSITIONS.values())
    ctx = MailContext("Sunday", "CLOSED", "2027-01-01", Person("a", "Ann", "a@x"), Person("n", "Nina", "n@x"))
    for event_type, recipients in RECIPIENTS.items():
        assert (TEMPLATES / f"{_template_name(event_type)}.txt").exists(), event_type
        for reason in (None, "JOB_BOOKED", "JOB_CANCELLED", "JOB_EXPIRED"):
            event = DomainEvent(event_type, JOB_ID, APP_ID, "PENDING", "X", "2027-01-01", "a", "n", reason)
            for recipient in recipients:
                email = render(event, recipient, ctx)
                assert email.subject and "$" not in email.subject + email.body, (event_type, reason)
                assert "@" not in email.body  # no address is ever written into a text


def test_a_decline_is_worded_by_its_reason_or_the_jobs_status() -> None:
    event = event_of(state_of(app_image("PENDING")), state_of(app_image("DECLINED")), owner="alice", fallback_time="x")
    assert event is not None
    ctx = MailContext("Sunday", "CANCELLED", "2027-01-01", Person("alice", None, None), Person("nina", "Nina", "n@x"))
    email = render(event, Recipient.APPLICANT, ctx)
    assert email.subject == '"Sunday" was cancelled'
    assert email.body.startswith("Hello Nina,")


# ------------------------------------------------------------------ stream function


def processor(bus: FakeBus, sweeps: FakeSweeps, metrics: CountingMetrics | None = None) -> StreamProcessor:
    return StreamProcessor(state_of, Owners(), bus, sweeps, metrics=metrics or CountingMetrics())


BOOKING = [
    record("1", job_image("OPEN"), job_image("CLOSED", closedAt="2026-12-02T00:00:00.000Z")),
    record("2", app_image("PENDING"), app_image("ACCEPTED")),
]


def test_a_job_leaving_open_queues_its_sweep_and_each_change_an_event() -> None:
    bus, sweeps, metrics = FakeBus(), FakeSweeps(), CountingMetrics()
    result = handle_stream_batch({"Records": BOOKING}, processor(bus, sweeps, metrics), partial_responses=True)
    assert result == {"batchItemFailures": []}
    assert sweeps.jobs == [JOB_ID]
    assert [e.event_type for e in bus.events] == ["JobBooked", "ApplicationAccepted"]
    assert metrics.counts["EventsPublished"] == 2 and metrics.counts["HealingSweepsQueued"] == 1


def test_a_poison_record_is_skipped_not_retried() -> None:
    poison = {"dynamodb": {"SequenceNumber": "0", "NewImage": {"type": {"S": "JOB"}}}}  # no jobId
    bus, metrics = FakeBus(), CountingMetrics()
    result = handle_stream_batch(
        {"Records": [poison, *BOOKING]}, processor(bus, FakeSweeps(), metrics), partial_responses=True
    )
    assert result == {"batchItemFailures": []}
    assert metrics.counts["StreamRecordsSkipped"] == 1 and len(bus.events) == 2


def test_failures_are_reported_per_record_or_fail_the_whole_batch() -> None:
    event = {"Records": BOOKING}
    result = handle_stream_batch(
        event, processor(FakeBus(refuse={"ApplicationAccepted"}), FakeSweeps()), partial_responses=True
    )
    assert result == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    result = handle_stream_batch(event, processor(FakeBus(), FakeSweeps(fail=True)), partial_responses=True)
    assert result == {"batchItemFailures": [{"itemIdentifier": "1"}]}
    with pytest.raises(BatchFailed):  # where partial responses are not honoured (MiniStack's streams)
        handle_stream_batch(event, processor(FakeBus(), FakeSweeps(fail=True)), partial_responses=False)


# ------------------------------------------------------------------ the local poller


def _records(n: int) -> list[dict[str, Any]]:
    return [record(f"{i:03d}", None, job_image("OPEN")) for i in range(n)]


def test_a_reported_failure_settles_what_came_before_it_and_retries_from_it() -> None:
    seen: list[list[str]] = []

    def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        seqs = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
        seen.append(seqs)
        return {"batchItemFailures": [{"itemIdentifier": "002"}]} if len(seen) == 1 else {}

    poller = StreamPoller(
        FakeStream(_records(4)),
        "arn:aws:dynamodb:us-east-1:1:table/t/stream/x",
        handler,
        function_name="f",
        sleep=lambda _: None,
    )
    poller.drain()
    assert seen == [["000", "001", "002", "003"], ["002", "003"]]


def test_a_poison_record_is_isolated_by_bisecting_then_given_up() -> None:
    given_up: list[dict[str, Any]] = []
    handled: set[str] = set()

    def handler(event: dict[str, Any], _context: Any) -> None:
        seqs = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
        if "005" in seqs:
            raise RuntimeError("poison")
        handled.update(seqs)

    poller = StreamPoller(
        FakeStream(_records(8)),
        "arn:aws:dynamodb:us-east-1:1:table/t/stream/x",
        handler,
        function_name="f",
        max_retries=3,
        on_failure=given_up.append,
        sleep=lambda _: None,
    )
    poller.drain()
    assert handled == {f"{i:03d}" for i in range(8)} - {"005"}
    assert [
        (n["DDBStreamBatchInfo"]["startSequenceNumber"], n["DDBStreamBatchInfo"]["batchSize"]) for n in given_up
    ] == [("005", 1)]


def test_a_malformed_failure_report_fails_the_whole_batch() -> None:
    assert failed_sequence({"batchItemFailures": [{"itemIdentifier": "nope"}]}, ["1", "2"])[0] == "1"
    assert failed_sequence({"batchItemFailures": []}, ["1", "2"]) == (None, None)


class RestartedStream(FakeStream):
    """MiniStack after a restart: the stream is there, the records before it are not."""

    def get_shard_iterator(self, **params: Any) -> dict[str, Any]:
        if params.get("SequenceNumber") == "old":
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "TrimmedDataAccessException"}}, "GetShardIterator")
        return super().get_shard_iterator(**params)


def test_a_checkpoint_whose_record_is_gone_resumes_from_the_oldest_left(tmp_path: Any) -> None:
    arn = "arn:aws:dynamodb:us-east-1:1:table/t/stream/x"
    saved = tmp_path / "checkpoints.json"
    saved.write_text(json.dumps({"streamArn": arn, "shards": {"shard-1": "old"}}))
    seen: list[str] = []

    def handler(event: dict[str, Any], _context: Any) -> None:
        seen.extend(r["dynamodb"]["SequenceNumber"] for r in event["Records"])

    poller = StreamPoller(
        RestartedStream(_records(2)), arn, handler, function_name="f", checkpoint_path=saved, sleep=lambda _: None
    )
    poller.drain()
    assert seen == ["000", "001"]
    assert json.loads(saved.read_text())["shards"] == {"shard-1": "001"}
