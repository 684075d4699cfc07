"""The table's stream: every committed change of a job or an application, whatever became
of the request that wrote it. Knows nothing of Chalice.

For each record of a batch:

* a job that left OPEN gets its ``SweepJob`` queued for the decline worker, which
  declines whatever is still PENDING, read consistently (healing: the request's own
  fast path may have died after its transaction);
* a status change becomes a domain event (``events.py``) on the stage's bus.

Both are safe to repeat, which is what a redelivered record does: the sweep declines
only what is PENDING (a second sweep finds nothing), and an event keeps its id, by
which consumers drop duplicates (the mailer does). Nothing is deduplicated here.

A record that can never be processed (an image this code cannot read) is logged,
counted and skipped: it must not block its shard. A failed call fails the record;
with partial responses Lambda retries from the first failed record on, otherwise the
whole batch is failed, as for the decline worker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.booking import Metrics
from chalicelib.domain import EnqueueReport, format_time
from chalicelib.events import APPLICATION, DomainEvent, EntityState, event_of, leaves_open
from chalicelib.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

StateReader = Callable[[dict[str, Any] | None], EntityState | None]


class BatchFailed(RuntimeError):
    """Fails the whole invocation where Lambda is not known to honour partial responses."""


class EventBus(Protocol):
    def publish(self, events: Sequence[DomainEvent]) -> set[str]:
        """Puts the events on the bus; returns the ids of those that were not accepted."""
        ...


class SweepQueue(Protocol):
    def publish(
        self, job_id: str, application_ids: Sequence[str], *, sweep_after: int | None = None
    ) -> EnqueueReport: ...


class Owners(Protocol):
    def owner_of(self, job_id: str) -> str | None: ...


@dataclass
class _Record:
    sequence: str
    old: EntityState | None
    new: EntityState | None
    time: str
    event: DomainEvent | None = None
    error: str | None = None


@dataclass
class StreamOutcome:
    events_published: int = 0
    sweeps_queued: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)  # sequence numbers


def _record_time(dynamodb: Mapping[str, Any]) -> str:
    stamp = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(stamp, int | float):
        return format_time(datetime.fromtimestamp(stamp, UTC))
    return format_time(datetime.now(UTC))


class StreamProcessor:
    def __init__(
        self,
        state_of: StateReader,
        owners: Owners,
        bus: EventBus,
        sweeps: SweepQueue,
        *,
        metrics: Metrics,
        sweep_delay_seconds: int = 0,
    ) -> None:
        self._state_of = state_of
        self._owners = owners
        self._bus = bus
        self._sweeps = sweeps
        self._metrics = metrics
        self._sweep_delay = sweep_delay_seconds

    def process(self, records: Sequence[Mapping[str, Any]]) -> StreamOutcome:
        outcome = StreamOutcome()
        parsed = [r for r in (self._parse(raw, outcome) for raw in records) if r is not None]
        self._derive_events(parsed)
        failed_events = self._publish([r.event for r in parsed if r.event is not None and r.error is None])
        for record in parsed:
            if record.event is not None and record.event.event_id in failed_events:
                record.error = record.error or "event not accepted by the bus"
            if record.error is None and record.new is not None and leaves_open(record.old, record.new):
                self._heal(record, record.new, outcome)
        for record in parsed:
            if record.error is not None:
                outcome.failed.append(record.sequence)
        outcome.events_published = sum(
            1 for r in parsed if r.event is not None and r.error is None and r.event.event_id not in failed_events
        )
        self._metrics.count("EventsPublished", outcome.events_published)
        self._metrics.count("EventsNotPublished", len(failed_events))
        self._metrics.count("HealingSweepsQueued", outcome.sweeps_queued)
        self._metrics.count("StreamRecordsSkipped", outcome.skipped)
        self._metrics.count("StreamRecordsFailed", len(outcome.failed))
        return outcome

    def _parse(self, raw: Mapping[str, Any], outcome: StreamOutcome) -> _Record | None:
        dynamodb = raw.get("dynamodb") if isinstance(raw, dict) else None
        sequence = dynamodb.get("SequenceNumber") if isinstance(dynamodb, dict) else None
        try:
            if not isinstance(dynamodb, dict) or not isinstance(sequence, str):
                raise ValueError("no sequence number")
            return _Record(
                sequence=sequence,
                old=self._state_of(dynamodb.get("OldImage")),
                new=self._state_of(dynamodb.get("NewImage")),
                time=_record_time(dynamodb),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # No retry can make it readable: skip it rather than block the shard behind it.
            outcome.skipped += 1
            logger.error("stream record skipped: unreadable image", extra={"sequence": sequence, "error": str(exc)})
            return None

    def _derive_events(self, records: list[_Record]) -> None:
        owners: dict[str, str | None] = {}
        for record in records:
            owner = None
            if record.new is not None and record.new.kind == APPLICATION:
                job_id = record.new.job_id
                try:
                    if job_id not in owners:
                        owners[job_id] = self._owners.owner_of(job_id)
                    owner = owners[job_id]
                except Exception as exc:
                    record.error = f"owner lookup failed: {type(exc).__name__}"
                    logger.warning("stream record failed", extra={"sequence": record.sequence, "error": record.error})
                    continue
            record.event = event_of(record.old, record.new, owner=owner, fallback_time=record.time)

    def _publish(self, events: list[DomainEvent]) -> set[str]:
        if not events:
            return set()
        try:
            failed = self._bus.publish(events)
        except Exception as exc:
            logger.warning("PutEvents failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            return {e.event_id for e in events}
        if failed:
            logger.warning("the bus refused %d events", len(failed))
        return failed

    def _heal(self, record: _Record, job: EntityState, outcome: StreamOutcome) -> None:
        job_id = job.job_id
        try:
            report = self._sweeps.publish(job_id, [], sweep_after=self._sweep_delay)
        except Exception as exc:
            report = EnqueueReport(sweep_failed=True)
            logger.warning("sweep not queued", extra={"jobId": job_id, "error": f"{type(exc).__name__}: {exc}"})
        if report.sweep_failed:
            record.error = "sweep not queued"
            return
        outcome.sweeps_queued += 1
        logger.info("job left OPEN: sweep queued", extra={"jobId": job_id, "status": job.status})


def handle_stream_batch(
    event: Mapping[str, Any], processor: StreamProcessor, *, partial_responses: bool
) -> PartialItemFailureResponse:
    """One Lambda invocation of the stream subscription."""
    records = event.get("Records") or []
    outcome = processor.process(records)
    if not outcome.failed:
        return {"batchItemFailures": []}
    if not partial_responses:
        raise BatchFailed(f"{len(outcome.failed)} of {len(records)} stream records failed")
    # Lambda resumes from the lowest sequence number reported: everything after it comes again.
    return {"batchItemFailures": [{"itemIdentifier": seq} for seq in outcome.failed]}
