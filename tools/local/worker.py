"""Runs the app's SQS handler the way Lambda's SQS event source does, against a local queue.

``chalice local`` serves HTTP only. This poller long-polls the declines queue,
hands each batch to the decorated handler as a Lambda-shaped event with a fake
context, and settles the batch as Lambda does with ``ReportBatchItemFailures``:

* a normal return deletes every record except the ``batchItemFailures`` it names;
* an exception, or a malformed failure list, fails the whole batch (nothing deleted);
* failed records become visible again after ``retry_delay`` seconds instead of the
  queue's visibility timeout, so retries (and the DLQ after ``maxReceiveCount``
  receives, which the queue's RedrivePolicy enforces) happen in seconds locally.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("tools.local.worker")

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """The parts of Lambda's context object handlers and Powertools read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 256
    timeout_seconds: float = 30.0
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _lambda_message_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """SQS API message attributes → the camelCase shape Lambda puts in the event."""

    def b64(value: bytes) -> str:
        return base64.b64encode(value).decode("ascii")

    out: dict[str, Any] = {}
    for name, attr in attributes.items():
        entry: dict[str, Any] = {
            "stringListValues": list(attr.get("StringListValues") or []),
            "binaryListValues": [b64(v) for v in attr.get("BinaryListValues") or []],
            "dataType": attr["DataType"],
        }
        if "StringValue" in attr:
            entry["stringValue"] = attr["StringValue"]
        if "BinaryValue" in attr:
            entry["binaryValue"] = b64(attr["BinaryValue"])
        out[name] = entry
    return out


def sqs_event(messages: Iterable[Mapping[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's SQS event source builds from ReceiveMessage's messages."""
    records = []
    for m in messages:
        record: dict[str, Any] = {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": {k: str(v) for k, v in (m.get("Attributes") or {}).items()},
            "messageAttributes": _lambda_message_attributes(m.get("MessageAttributes") or {}),
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        }
        if m.get("MD5OfMessageAttributes"):
            record["md5OfMessageAttributes"] = m["MD5OfMessageAttributes"]
        records.append(record)
    return {"Records": records}


def reported_failures(result: Any, identifiers: Sequence[str]) -> tuple[list[str], str | None]:
    """The identifiers a handler's result reports failed, or all of them and why the whole batch.

    As documented for ReportBatchItemFailures (SQS and streams alike): no response, an
    empty response or an empty list means success; an item without a valid identifier
    from this batch fails the whole batch.
    """
    if result is None or result == "" or result == {}:
        return [], None
    if not isinstance(result, Mapping):
        return list(identifiers), f"response is not an object: {type(result).__name__}"
    items = result.get("batchItemFailures")
    if items is None:
        return [], None
    if not isinstance(items, list):
        return list(identifiers), "batchItemFailures is not a list"
    known = set(identifiers)
    failed: list[str] = []
    for item in items:
        ident = item.get("itemIdentifier") if isinstance(item, Mapping) else None
        if not isinstance(ident, str) or ident not in known:
            return list(identifiers), f"invalid itemIdentifier {ident!r}"
        failed.append(ident)
    return failed, None


def failed_message_ids(result: Any, message_ids: list[str]) -> tuple[set[str], str | None]:
    """Which records Lambda would retry for this handler result, and why all of them if so."""
    failed, whole_batch = reported_failures(result, message_ids)
    return set(failed), whole_batch


@dataclass
class BatchOutcome:
    received: int
    deleted: int
    failed: int
    whole_batch_error: str | None = None


class QueuePoller:
    """Feeds one queue to one SQS handler until ``stop`` is set.

    ``batching_window_seconds`` plays the part of Lambda's MaximumBatchingWindowInSeconds:
    after a batch smaller than ``batch_size`` the poller waits that long before it
    receives again, so that messages arriving one by one are handed over ten at a
    time rather than one or two, at a tenth of the calls. A full batch is followed at
    once by the next receive, so a backlog drains at full speed.
    """

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        handler: Handler,
        *,
        function_name: str,
        batch_size: int = 10,
        wait_seconds: int = 1,
        batching_window_seconds: float = 0.0,
        retry_delay_seconds: int = 1,
        timeout_seconds: float = 30.0,
        memory_limit_in_mb: int = 256,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._handler = handler
        self._function_name = function_name
        self._batch_size = batch_size
        self._wait_seconds = wait_seconds
        self._batching_window = batching_window_seconds
        self.batches = 0  # batches and messages handed to the handler, for the stack's summary
        self.messages = 0
        self._count_lock = threading.Lock()
        self._retry_delay = retry_delay_seconds
        self._timeout = timeout_seconds
        self._memory = memory_limit_in_mb
        self._queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        _, _, _, self._region, self._account, _ = self._queue_arn.split(":", 5)

    def run(self, stop: threading.Event) -> None:
        log.info("polling %s for %s", self._queue_url, self._function_name)
        while not stop.is_set():
            try:
                outcome = self.poll_once()
                if self._batching_window and outcome is not None and outcome.received < self._batch_size:
                    stop.wait(self._batching_window)
            except Exception as exc:  # the emulator may be restarting or shutting down: retry
                if stop.is_set():
                    break
                log.warning("polling %s failed: %s", self._queue_url, exc)
                stop.wait(1.0)
        log.info("stopped polling %s", self._queue_url)

    def poll_once(self) -> BatchOutcome | None:
        resp = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=self._batch_size,
            WaitTimeSeconds=self._wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = resp.get("Messages") or []
        if not messages:
            return None
        with self._count_lock:
            self.batches += 1
            self.messages += len(messages)
        outcome = self.process(messages)
        # A line per batch only when something is retried: at a few hundred declines a
        # second, a line per batch costs the stack's process more than the poll does.
        log.log(
            logging.INFO if outcome.failed else logging.DEBUG,
            "batch of %d: %d deleted, %d to retry%s",
            outcome.received,
            outcome.deleted,
            outcome.failed,
            f" (whole batch failed: {outcome.whole_batch_error})" if outcome.whole_batch_error else "",
        )
        return outcome

    def process(self, messages: list[dict[str, Any]]) -> BatchOutcome:
        ids = [m["MessageId"] for m in messages]
        event = sqs_event(messages, self._queue_arn, self._region)
        context = LambdaContext(
            function_name=self._function_name,
            invoked_function_arn=f"arn:aws:lambda:{self._region}:{self._account}:function:{self._function_name}",
            memory_limit_in_mb=self._memory,
            timeout_seconds=self._timeout,
        )
        try:
            result = self._handler(event, context)
        except Exception as exc:
            # Powertools' BatchProcessingError carries every traceback; the first line is enough here.
            summary = (str(exc).strip().splitlines() or [""])[0]
            failed, reason = set(ids), f"{type(exc).__name__}: {summary}"
        else:
            failed, reason = failed_message_ids(result, ids)
        done = [m for m in messages if m["MessageId"] not in failed]
        retry = [m for m in messages if m["MessageId"] in failed]
        deleted = self._delete(done)
        self._retry_soon(retry)
        return BatchOutcome(received=len(messages), deleted=deleted, failed=len(retry), whole_batch_error=reason)

    def _entries(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Batch entry ids must be unique and short; positions are both.
        return [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]

    def _delete(self, messages: list[dict[str, Any]]) -> int:
        if not messages:
            return 0
        resp = self._sqs.delete_message_batch(QueueUrl=self._queue_url, Entries=self._entries(messages))
        for failure in resp.get("Failed") or []:
            log.warning("could not delete a processed message: %s", failure)
        return len(resp.get("Successful") or [])

    def _retry_soon(self, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        entries = [{**e, "VisibilityTimeout": self._retry_delay} for e in self._entries(messages)]
        resp = self._sqs.change_message_visibility_batch(QueueUrl=self._queue_url, Entries=entries)
        for failure in resp.get("Failed") or []:
            log.warning("could not shorten a failed message's visibility: %s", failure)


def start_in_thread(poller: QueuePoller, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=poller.run, args=(stop,), name="decline-worker", daemon=True)
    thread.start()
    return thread
