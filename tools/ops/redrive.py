"""Moves the declines DLQ's messages back to the declines queue: SQS's own move task, or batch by batch."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tools.shared import Printer, ToolError, say

# A failure of an operation; the message says what to do.
OpsError = ToolError


@dataclass
class RedriveReport:
    method: str = ""
    moved: int = 0
    not_sent: int = 0
    not_deleted: int = 0  # sent but still in the DLQ: will be redriven again (a harmless duplicate)
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.not_sent or self.not_deleted or self.failure)

    def summary(self) -> str:
        text = f"{self.moved} messages moved back ({self.method})"
        if self.not_sent:
            text += f", {self.not_sent} could not be sent and stay in the DLQ"
        if self.not_deleted:
            text += f", {self.not_deleted} sent but not deleted from the DLQ (they will repeat, harmlessly)"
        if self.failure:
            text += f"; failed: {self.failure}"
        return text


# StartMessageMoveTask is missing from some SQS implementations (emulators).
_UNSUPPORTED_CODES = {
    "NotImplemented",
    "NotImplementedException",
    "UnsupportedOperation",
    "AWS.SimpleQueueService.UnsupportedOperation",
    "InvalidAction",
    "UnknownOperation",
    "UnknownOperationException",
}
_TASK_DONE = {"COMPLETED", "FAILED", "CANCELLED"}


class MoveTaskUnsupported(Exception):
    pass


def queue_arns(sqs: Any, queue_url: str) -> tuple[str, str, str]:
    """(queue ARN, DLQ ARN, DLQ URL), the DLQ found through the queue's RedrivePolicy."""
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn", "RedrivePolicy"])["Attributes"]
    if "RedrivePolicy" not in attrs:
        raise OpsError(f"{queue_url} has no RedrivePolicy, so no dead-letter queue")
    dlq_arn = json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"]
    _, _, _, _, account, dlq_name = dlq_arn.split(":", 5)
    dlq_url = sqs.get_queue_url(QueueName=dlq_name, QueueOwnerAWSAccountId=account)["QueueUrl"]
    return attrs["QueueArn"], dlq_arn, dlq_url


def depth(sqs: Any, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages, approximately."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def move_with_task(
    sqs: Any,
    dlq_arn: str,
    queue_arn: str,
    *,
    poll_seconds: float = 5.0,
    timeout_seconds: float = 3600.0,
    sleep: Callable[[float], None] = time.sleep,
    out: Printer = say,
) -> RedriveReport:
    """SQS's own redrive (StartMessageMoveTask), polled until it ends."""
    report = RedriveReport(method="message move task")
    try:
        running = [
            t
            for t in sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=10).get("Results", [])
            if t.get("Status") == "RUNNING"
        ]
        if running:
            out(f"  a move task is already running for {dlq_arn}: following it")
        else:
            handle = sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=queue_arn)["TaskHandle"]
            out(f"  started move task {handle[:24]}...")
    except NotImplementedError as exc:
        raise MoveTaskUnsupported(str(exc)) from exc
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _UNSUPPORTED_CODES or status >= 500:
            raise MoveTaskUnsupported(f"{code or status}: {exc}") from exc
        raise
    deadline = time.monotonic() + timeout_seconds
    while True:
        tasks = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=1).get("Results", [])
        task = tasks[0] if tasks else {}
        status = task.get("Status", "UNKNOWN")
        moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
        if status in _TASK_DONE or not tasks:
            break
        if time.monotonic() > deadline:
            report.failure = f"still {status} after {timeout_seconds:.0f} s ({moved} moved so far); run redrive again"
            report.moved = moved
            return report
        out(f"  {status}: {moved} of ~{task.get('ApproximateNumberOfMessagesToMove', '?')} moved")
        sleep(poll_seconds)
    report.moved = moved
    if status != "COMPLETED":
        report.failure = f"move task ended {status}: {task.get('FailureReason', 'no reason given')}"
    return report


def move_by_copy(
    sqs: Any,
    dlq_url: str,
    queue_url: str,
    *,
    wait_seconds: int = 2,
    visibility_seconds: int = 60,
    max_messages: int | None = None,
    out: Printer = say,
) -> RedriveReport:
    """Receive from the DLQ, send to the queue, and only then delete from the DLQ.

    Interrupted at any point, a message is in the DLQ, in the queue, or in both:
    never lost. Both means a duplicate decline, which changes nothing.
    """
    report = RedriveReport(method="receive, send, delete")
    while max_messages is None or report.moved + report.not_sent < max_messages:
        want = 10 if max_messages is None else max(1, min(10, max_messages - report.moved - report.not_sent))
        messages = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=want,
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility_seconds,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        by_id = {str(i): m for i, m in enumerate(messages)}
        entries = []
        for entry_id, m in by_id.items():
            entry: dict[str, Any] = {"Id": entry_id, "MessageBody": m["Body"]}
            if m.get("MessageAttributes"):
                entry["MessageAttributes"] = m["MessageAttributes"]
            entries.append(entry)
        try:
            sent = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            # Nothing deleted: the batch reappears in the DLQ after its visibility timeout.
            report.not_sent += len(entries)
            report.failure = f"SendMessageBatch failed: {exc}"
            break
        ok_ids = [s["Id"] for s in sent.get("Successful", [])]
        report.not_sent += len(sent.get("Failed", []))
        if ok_ids:
            deletions = [{"Id": i, "ReceiptHandle": by_id[i]["ReceiptHandle"]} for i in ok_ids]
            try:
                deleted = sqs.delete_message_batch(QueueUrl=dlq_url, Entries=deletions)
                report.not_deleted += len(deleted.get("Failed", []))
            except (ClientError, BotoCoreError):
                report.not_deleted += len(deletions)
        report.moved += len(ok_ids)
        out(f"  moved {report.moved} so far")
    return report


def redrive(
    sqs: Any,
    queue_url: str,
    *,
    method: str = "auto",
    wait_seconds: int = 2,
    poll_seconds: float = 5.0,
    max_messages: int | None = None,
    out: Printer = say,
) -> RedriveReport:
    queue_arn, dlq_arn, dlq_url = queue_arns(sqs, queue_url)
    visible, in_flight = depth(sqs, dlq_url)
    out(f"  DLQ {dlq_arn}: ~{visible} messages waiting, ~{in_flight} in flight")
    if method in ("auto", "task"):
        try:
            return move_with_task(sqs, dlq_arn, queue_arn, poll_seconds=poll_seconds, out=out)
        except MoveTaskUnsupported as exc:
            if method == "task":
                raise OpsError(f"StartMessageMoveTask is not available here: {exc}") from exc
            out("  StartMessageMoveTask is not available here: moving messages one batch at a time")
        except ClientError as exc:
            raise OpsError(f"StartMessageMoveTask refused: {exc} (try --method copy)") from exc
    return move_by_copy(sqs, dlq_url, queue_url, wait_seconds=wait_seconds, max_messages=max_messages, out=out)
