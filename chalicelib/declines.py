"""Decline messages: their schema, the SQS publisher that sends them in batches, the DLQ.

Every message is a JSON object with an integer version ``v`` and a ``kind``. A
consumer refuses a version it does not know (see docs/architecture.md#message-versions).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.domain import EnqueueReport, Reason, is_valid_id
from chalicelib.retries import Backoff

log = logging.getLogger(__name__)

MESSAGE_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})
MESSAGE_KIND = "DeclineApplication"
SWEEP_KIND = "SweepJob"
SQS_BATCH_LIMIT = 10
SWEEP_ENTRY_ID = "sweep"  # batch entry ids are per call; application ids are ULIDs


class InvalidMessage(ValueError):
    """A message that will never be processable: it must end in the DLQ."""


class UnknownVersion(InvalidMessage):
    """A well-formed message of a version this code does not know (a newer producer)."""


def _envelope(body: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise InvalidMessage("message body is not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidMessage("message body is not an object")
    version = data.get("v")
    # bool is a subclass of int: {"v": true} must not pass as version 1.
    if type(version) is not int:
        raise InvalidMessage(f"message version is not an integer: v={version!r}")
    if version not in SUPPORTED_VERSIONS:
        raise UnknownVersion(f"unknown message version: v={version}")
    return data


def _dump(data: dict[str, Any]) -> str:
    return json.dumps({"v": MESSAGE_VERSION, **data}, separators=(",", ":"))


@dataclass(frozen=True)
class DeclineApplication:
    job_id: str
    application_id: str
    reason: Reason | None = None  # optional in version 1: messages queued before reasons existed have none

    def to_json(self) -> str:
        data = {"kind": MESSAGE_KIND, "jobId": self.job_id, "applicationId": self.application_id}
        if self.reason is not None:
            data["reason"] = self.reason.value
        return _dump(data)

    @classmethod
    def from_json(cls, body: str) -> DeclineApplication:
        message = parse_message(body)
        if not isinstance(message, cls):
            raise InvalidMessage(f"not a {MESSAGE_KIND} message")
        return message


@dataclass(frozen=True)
class SweepJob:
    """Decline whatever a booked, cancelled or expired job still has PENDING (read consistently)."""

    job_id: str

    def to_json(self) -> str:
        return _dump({"kind": SWEEP_KIND, "jobId": self.job_id})


Message = DeclineApplication | SweepJob


def parse_message(body: str) -> Message:
    data = _envelope(body)
    kind, job_id = data.get("kind"), data.get("jobId")
    if not is_valid_id(job_id):
        raise InvalidMessage("message jobId is not valid")
    if kind == MESSAGE_KIND:
        application_id = data.get("applicationId")
        if not is_valid_id(application_id):
            raise InvalidMessage("message applicationId is not valid")
        reason = data.get("reason")
        if reason is not None and reason not in Reason.__members__:
            raise InvalidMessage("message reason is not valid")
        return DeclineApplication(
            job_id=job_id, application_id=application_id, reason=Reason(reason) if reason else None
        )
    if kind == SWEEP_KIND:
        return SweepJob(job_id=job_id)
    raise InvalidMessage(f"unsupported message kind: {kind!r}")


@dataclass(frozen=True)
class _Entry:
    entry_id: str
    body: str
    delay: int | None = None

    def to_api(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"Id": self.entry_id, "MessageBody": self.body}
        if self.delay is not None:
            entry["DelaySeconds"] = self.delay
        return entry


class SqsDeclinePublisher:
    """Sends decline messages (and a booking's delayed sweep) with SendMessageBatch, concurrently.

    botocore retries a call that fails (timeouts, throttling, 5xx) under its own
    policy; this class does not retry such calls again, so the attempts do not
    multiply. It only re-sends entries SQS answered as ``Failed``, with backoff,
    and starts no new attempt past ``deadline_seconds``. What still fails is
    reported, never dropped silently.
    """

    def __init__(
        self,
        client: Any,
        queue_url: Callable[[], str],
        *,
        max_attempts: int = 3,
        backoff_seconds: float = 0.05,
        deadline_seconds: float = 0.5,
        concurrency: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sqs = client
        self._queue_url = queue_url
        self._max_attempts = max(1, max_attempts)
        # Doubling from backoff_seconds, spread by half either way.
        self._backoff = Backoff(first=backoff_seconds, jitter=(0.5, 1.5))
        self._deadline = deadline_seconds
        self._concurrency = max(1, concurrency)
        self._sleep = sleep
        self._clock = clock
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def publish(
        self,
        job_id: str,
        application_ids: Sequence[str],
        *,
        sweep_after: int | None = None,
        reason: Reason | None = None,
    ) -> EnqueueReport:
        entries = [_Entry(app_id, DeclineApplication(job_id, app_id, reason).to_json()) for app_id in application_ids]
        if sweep_after is not None:
            # First: it must not wait for a last round of batches that a timeout could cut off.
            entries.insert(0, _Entry(SWEEP_ENTRY_ID, SweepJob(job_id).to_json(), delay=max(0, min(sweep_after, 900))))
        batches = [entries[i : i + SQS_BATCH_LIMIT] for i in range(0, len(entries), SQS_BATCH_LIMIT)]
        report = EnqueueReport()
        if not batches:
            return report
        deadline = self._clock() + self._deadline
        if len(batches) == 1 or self._concurrency == 1:
            results = [self._send_batch(b, deadline) for b in batches]
        else:
            results = list(self._executor().map(lambda b: self._send_batch(b, deadline), batches))
        for sent, failed in results:
            report.queued += sum(1 for i in sent if i != SWEEP_ENTRY_ID)
            report.failed_ids.extend(i for i in failed if i != SWEEP_ENTRY_ID)
            report.sweep_failed = report.sweep_failed or SWEEP_ENTRY_ID in failed
        return report

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="declines")
            return self._pool

    def _send_batch(self, batch: list[_Entry], deadline: float) -> tuple[list[str], list[str]]:
        pending = {e.entry_id: e for e in batch}
        sent: list[str] = []
        for attempt in range(1, self._max_attempts + 1):
            try:
                resp = self._sqs.send_message_batch(
                    QueueUrl=self._queue_url(), Entries=[e.to_api() for e in pending.values()]
                )
            except (ClientError, BotoCoreError) as exc:
                # botocore has already retried this call: give up and report.
                log.warning("SendMessageBatch failed: %s", exc)
                break
            for ok in resp.get("Successful") or []:
                if pending.pop(ok["Id"], None) is not None:
                    sent.append(ok["Id"])
            failed = resp.get("Failed") or []
            if not pending:
                break
            log.warning(
                "SendMessageBatch left %d entries unsent (attempt %d): %s",
                len(failed),
                attempt,
                sorted({f.get("Code", "?") for f in failed}),
            )
            pause = self._backoff.pause(attempt)
            if attempt == self._max_attempts or self._clock() + pause > deadline:
                break
            self._sleep(pause)
        return sent, list(pending)


class DeadLetters:
    """Parks a message in the declines queue's dead-letter queue at once.

    For messages no retry can help (an unknown version): waiting for
    ``maxReceiveCount`` receives would only delay them by 5 x the visibility
    timeout. The DLQ is the one the queue's RedrivePolicy names, looked up once.
    """

    def __init__(self, client: Any, queue_url: Callable[[], str], dlq_url: str | None = None) -> None:
        self._sqs = client
        self._queue_url = queue_url
        self._dlq_url = dlq_url
        self._lock = threading.Lock()

    def park(self, body: str, reason: str) -> None:
        self._sqs.send_message(
            QueueUrl=self._url(),
            MessageBody=body,
            MessageAttributes={"parkedReason": {"DataType": "String", "StringValue": reason[:256]}},
        )

    def _url(self) -> str:
        with self._lock:
            if self._dlq_url is None:
                attrs = self._sqs.get_queue_attributes(QueueUrl=self._queue_url(), AttributeNames=["RedrivePolicy"])
                policy = json.loads(attrs["Attributes"]["RedrivePolicy"])
                _, _, _, _, account, name = policy["deadLetterTargetArn"].split(":", 5)
                resp = self._sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
                self._dlq_url = resp["QueueUrl"]
            return self._dlq_url


def cached_queue_url(client: Any, queue_url: str | None, queue_name: str | None) -> Callable[[], str]:
    """The queue's URL, from settings or looked up once per container."""
    resolved: list[str] = [queue_url] if queue_url else []
    lock = threading.Lock()

    def get() -> str:
        if not resolved:
            with lock:
                if not resolved:
                    resolved.append(client.get_queue_url(QueueName=queue_name)["QueueUrl"])
        return resolved[0]

    return get
