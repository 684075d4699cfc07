"""Decline messages: their schema, and the SQS publisher that sends them in batches."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.domain import EnqueueReport, is_valid_id

log = logging.getLogger(__name__)

MESSAGE_VERSION = 1
MESSAGE_KIND = "DeclineApplication"
SQS_BATCH_LIMIT = 10


class InvalidMessage(ValueError):
    """A message that will never be processable: it must end in the DLQ."""


@dataclass(frozen=True)
class DeclineApplication:
    job_id: str
    application_id: str

    def to_json(self) -> str:
        return json.dumps(
            {"v": MESSAGE_VERSION, "kind": MESSAGE_KIND, "jobId": self.job_id, "applicationId": self.application_id},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, body: str) -> DeclineApplication:
        try:
            data = json.loads(body)
        except (TypeError, ValueError) as exc:
            raise InvalidMessage("message body is not JSON") from exc
        if not isinstance(data, dict):
            raise InvalidMessage("message body is not an object")
        if data.get("v") != MESSAGE_VERSION or data.get("kind") != MESSAGE_KIND:
            raise InvalidMessage(f"unsupported message: v={data.get('v')!r} kind={data.get('kind')!r}")
        job_id, application_id = data.get("jobId"), data.get("applicationId")
        if not (is_valid_id(job_id) and is_valid_id(application_id)):
            raise InvalidMessage("message ids are not valid")
        return cls(job_id=job_id, application_id=application_id)


class SqsDeclinePublisher:
    """Sends decline messages with SendMessageBatch, concurrently and with retries.

    Entries SQS reports as ``Failed`` and batches whose call raised are retried
    with exponential backoff and jitter; what still fails is reported, never dropped
    silently.
    """

    def __init__(
        self,
        client: Any,
        queue_url: Callable[[], str],
        *,
        max_attempts: int = 5,
        backoff_seconds: float = 0.05,
        concurrency: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._sqs = client
        self._queue_url = queue_url
        self._max_attempts = max(1, max_attempts)
        self._backoff = backoff_seconds
        self._concurrency = max(1, concurrency)
        self._sleep = sleep
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def publish(self, job_id: str, application_ids: Sequence[str]) -> EnqueueReport:
        messages = [DeclineApplication(job_id, app_id) for app_id in application_ids]
        batches = [messages[i : i + SQS_BATCH_LIMIT] for i in range(0, len(messages), SQS_BATCH_LIMIT)]
        report = EnqueueReport()
        if not batches:
            return report
        if len(batches) == 1 or self._concurrency == 1:
            results = [self._send_batch(b) for b in batches]
        else:
            results = list(self._executor().map(self._send_batch, batches))
        for sent, failed in results:
            report.queued += sent
            report.failed_ids.extend(failed)
        return report

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="declines")
            return self._pool

    def _send_batch(self, batch: list[DeclineApplication]) -> tuple[int, list[str]]:
        pending = {m.application_id: m for m in batch}
        sent = 0
        for attempt in range(self._max_attempts):
            if attempt:
                self._sleep(self._backoff * (2 ** (attempt - 1)) * random.uniform(0.5, 1.5))
            entries = [{"Id": app_id, "MessageBody": m.to_json()} for app_id, m in pending.items()]
            try:
                resp = self._sqs.send_message_batch(QueueUrl=self._queue_url(), Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                log.warning("SendMessageBatch failed (attempt %d): %s", attempt + 1, exc)
                continue
            for ok in resp.get("Successful") or []:
                if pending.pop(ok["Id"], None) is not None:
                    sent += 1
            failed = resp.get("Failed") or []
            if failed:
                log.warning(
                    "SendMessageBatch left %d entries unsent (attempt %d): %s",
                    len(failed),
                    attempt + 1,
                    sorted({f.get("Code", "?") for f in failed}),
                )
            if not pending:
                break
        return sent, list(pending)


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
