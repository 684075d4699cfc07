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
import sys
from collections.abc import Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from chalicelib.declines import SqsDeclinePublisher, cached_queue_url
from chalicelib.store import DynamoStore
from tools.ops.page_token_key import rotate_page_token_key
from tools.ops.reconcile import reconcile
from tools.ops.redrive import OpsError, redrive
from tools.shared import Printer, ToolError, say, stage_environment

_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4})


def _names(args: argparse.Namespace) -> tuple[str, str]:
    env = stage_environment(args.stage)
    table = args.table or env.get("TABLE_NAME")
    queue = args.queue or env.get("DECLINES_QUEUE_NAME")
    if not (table and queue):
        raise OpsError(f"stage {args.stage!r} names no TABLE_NAME / DECLINES_QUEUE_NAME; pass --table and --queue")
    return table, queue


def _client(service: str) -> Any:
    return boto3.client(service, config=_CLIENT_CONFIG)


def cmd_reconcile(args: argparse.Namespace, out: Printer = say) -> int:
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


def cmd_redrive(args: argparse.Namespace, out: Printer = say) -> int:
    _, queue = _names(args)
    sqs = _client("sqs")
    queue_url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    out(f"redrive dead letters back to {queue}")
    report = redrive(
        sqs, queue_url, method=args.method, wait_seconds=args.wait_seconds, max_messages=args.max_messages, out=out
    )
    out(report.summary())
    return 0 if report.ok else 1


def cmd_rotate_page_token_key(args: argparse.Namespace, out: Printer = say) -> int:
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


def main(argv: Sequence[str] | None = None, out: Printer = say) -> int:
    args = _parser().parse_args(argv)
    commands = {"reconcile": cmd_reconcile, "redrive": cmd_redrive, "rotate-page-token-key": cmd_rotate_page_token_key}
    try:
        return commands[args.command](args, out)
    except ToolError as exc:  # OpsError too: the one error of every tool
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
