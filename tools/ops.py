"""Operations on a running stage: heal leftover declines, redrive the dead-letter queue.

    python -m tools.ops reconcile --stage dev [--dry-run]
    python -m tools.ops redrive   --stage dev [--method auto|task|copy]

Both read the stage's table and queue names from ``.chalice/config.json`` (override
with ``--table`` / ``--queue``) and talk to whatever boto3 is configured for, so
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_DYNAMODB`` / ``AWS_ENDPOINT_URL_SQS`` point
them at the local stack. Both are safe to run at any time: a decline of an
application that is no longer PENDING changes nothing, so a duplicate message is
harmless. The exit status is non-zero when anything failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from chalicelib.declines import SqsDeclinePublisher, cached_queue_url
from chalicelib.domain import decline_reason
from chalicelib.store import DynamoStore
from tools.deploy_secret import rotate_page_token_key
from tools.deploy_settings import DeployError

Printer = Callable[[str], None]

_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4})


def _say(text: str) -> None:
    print(text, flush=True)


class OpsError(RuntimeError):
    pass


# ----------------------------------------------------------------- reconcile


@dataclass
class ReconcileReport:
    jobs_scanned: int = 0
    jobs_with_leftovers: int = 0
    jobs_healed: int = 0
    declines_queued: int = 0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.jobs_scanned} closed or cancelled jobs scanned, {self.jobs_with_leftovers} with PENDING leftovers, "
            f"{self.jobs_healed} healed, {self.declines_queued} declines queued, {len(self.failures)} failures"
        )


def reconcile(store: Any, publisher: Any, *, dry_run: bool = False, out: Printer = _say) -> ReconcileReport:
    """Queues a decline for every PENDING application of every job out of OPEN (with its reason).

    A booking commits first and queues its declines after; a crash or an SQS outage
    in between leaves PENDING applications on a closed job. The worker only ever
    moves PENDING to DECLINED, so re-queuing is always safe, also for declines that
    are still on their way.
    """
    report = ReconcileReport()
    for job in store.closed_jobs():
        report.jobs_scanned += 1
        try:
            _, pending = store.job_with_pending_applications(job.job_id)
            leftovers = [a for a in pending if a != job.accepted_application_id]
            if not leftovers:
                continue
            report.jobs_with_leftovers += 1
            if dry_run:
                out(f"  job {job.job_id}: would queue {len(leftovers)} declines")
                continue
            sent = publisher.publish(job.job_id, leftovers, reason=decline_reason(job.status))
            report.declines_queued += sent.queued
            if sent.failed_ids:
                report.failures.append(f"job {job.job_id}: {len(sent.failed_ids)} declines not queued")
                out(f"  job {job.job_id}: queued {sent.queued}, NOT queued {len(sent.failed_ids)}")
            else:
                report.jobs_healed += 1
                out(f"  job {job.job_id}: queued {sent.queued} declines")
        except Exception as exc:  # one job's failure must not stop the others
            report.failures.append(f"job {job.job_id}: {exc}")
            out(f"  job {job.job_id}: failed: {exc}")
    return report


# ------------------------------------------------------------------- redrive


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
    out: Printer = _say,
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
    out: Printer = _say,
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
    out: Printer = _say,
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


# ----------------------------------------------------------------------- CLI


def _names(args: argparse.Namespace) -> tuple[str, str]:
    from tools.deploy import DeployError, stage_environment

    try:
        env = stage_environment(args.stage)
    except DeployError as exc:
        raise OpsError(str(exc)) from exc
    table = args.table or env.get("TABLE_NAME")
    queue = args.queue or env.get("DECLINES_QUEUE_NAME")
    if not (table and queue):
        raise OpsError(f"stage {args.stage!r} names no TABLE_NAME / DECLINES_QUEUE_NAME; pass --table and --queue")
    return table, queue


def _client(service: str) -> Any:
    return boto3.client(service, config=_CLIENT_CONFIG)


def cmd_reconcile(args: argparse.Namespace, out: Printer = _say) -> int:
    table, queue = _names(args)
    dynamodb, sqs = _client("dynamodb"), _client("sqs")
    store = DynamoStore(dynamodb, table)
    publisher = SqsDeclinePublisher(sqs, cached_queue_url(sqs, None, queue), concurrency=1)
    out(f"reconcile {'(dry run) ' if args.dry_run else ''}table {table} -> queue {queue}")
    report = reconcile(store, publisher, dry_run=args.dry_run, out=out)
    out(report.summary())
    for failure in report.failures:
        out(f"  FAILED {failure}")
    return 1 if report.failures else 0


def cmd_redrive(args: argparse.Namespace, out: Printer = _say) -> int:
    _, queue = _names(args)
    sqs = _client("sqs")
    queue_url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    out(f"redrive dead letters back to {queue}")
    report = redrive(
        sqs, queue_url, method=args.method, wait_seconds=args.wait_seconds, max_messages=args.max_messages, out=out
    )
    out(report.summary())
    return 0 if report.ok else 1


def cmd_rotate_page_token_key(args: argparse.Namespace, out: Printer = _say) -> int:
    out(f"rotate the page-token key of stage {args.stage}")
    rotate_page_token_key(_client("ssm"), args.stage, force=args.force, out=out)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.ops", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("reconcile", "queue declines for PENDING applications of jobs out of OPEN"),
        ("redrive", "move the declines DLQ's messages back to the declines queue"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--stage", required=True)
        p.add_argument("--table", help="table name (default: the stage's TABLE_NAME)")
        p.add_argument("--queue", help="declines queue name (default: the stage's DECLINES_QUEUE_NAME)")
        if name == "reconcile":
            p.add_argument("--dry-run", action="store_true", help="report, queue nothing")
        else:
            p.add_argument("--method", choices=("auto", "task", "copy"), default="auto")
            p.add_argument("--wait-seconds", type=int, default=2, help="long-poll time of each DLQ receive (copy)")
            p.add_argument("--max-messages", type=int, help="stop after this many (copy)")
    rotate = sub.add_parser(
        "rotate-page-token-key", help="one step of replacing the page-token key (run twice, 5 minutes apart)"
    )
    rotate.add_argument("--stage", required=True)
    rotate.add_argument("--force", action="store_true", help="step 2 without waiting for the containers' max age")
    return parser


def main(argv: Sequence[str] | None = None, out: Printer = _say) -> int:
    args = _parser().parse_args(argv)
    commands = {"reconcile": cmd_reconcile, "redrive": cmd_redrive, "rotate-page-token-key": cmd_rotate_page_token_key}
    try:
        return commands[args.command](args, out)
    except (OpsError, DeployError) as exc:
        print(f"{args.command} failed: {exc}", file=sys.stderr)
    except NoRegionError:
        print(f"{args.command} failed: no AWS region configured (set AWS_REGION)", file=sys.stderr)
    except NoCredentialsError:
        print(f"{args.command} failed: no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID)", file=sys.stderr)
    except (ClientError, BotoCoreError) as exc:
        print(f"{args.command} failed: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
