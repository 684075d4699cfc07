"""Part 7: the article's Express workflow, on the emulated account's Step Functions, beside our API.

Written from the article's description, not its code: a synchronous EXPRESS state
machine that books a nanny with the same table and queue as the service:

1. ``FindApplications``: the job's applications from the ``jobApplications`` index (an
   ``aws-sdk:dynamodb:query`` task). The article filters PENDING there; this table's
   index holds keys only, so the workflow lists every application, as our booking does;
2. ``Book``: the service's own transaction (job OPEN, owned and not started -> CLOSED;
   application PENDING -> ACCEPTED; the listing item deleted), ``aws-sdk:dynamodb:
   transactWriteItems``; a refusal ends the execution failed (``NotBooked``);
3. ``DeclineOthers``: a Map of one ``sqs:sendMessage`` per application but the one booked,
   the message the service's worker reads (``DeclineApplication``, version 1).

The run: one MiniStack with DynamoDB, SQS and Step Functions; the local stack on it (our
API, ``chalice local``, and the queue pollers that run the worker); jobs booked in turn
through our API and through ``StartSyncExecution``; then the queue drained and the same
invariants checked for both (one ACCEPTED, every other application DECLINED, nothing
lost). Both answer from the emulator: the latencies compare two paths on one machine,
not AWS; bench/aws_model.py puts both on AWS's terms. This is a comparison kept under
bench/, not a second product.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.config import Config

from bench.checks import check_invariants, wait_queues_empty
from bench.dataset import PreparedJob, prepare_jobs
from bench.stack import clean_env
from bench.stats import latency_summary
from chalicelib import items as item_shapes
from chalicelib.domain import format_time, utc_now
from tools.local import ministack
from tools.local.stack_process import start_stack
from tools.local.tokens import local_user_id, make_token

SERVICES = ("dynamodb", "sqs", "stepfunctions")
MAP_CONCURRENCY = 40
ROLE_ARN = "arn:aws:iam::000000000000:role/express-booking"


def definition(table: str, queue_url: str, index: str = item_shapes.JOB_APPLICATIONS_INDEX) -> dict[str, Any]:
    """The Express workflow's Amazon States Language: query, transaction, a Map of sends."""
    status = {"#status": "status"}
    return {
        "Comment": "Book a nanny: the article's Express workflow, from its description",
        "StartAt": "FindApplications",
        "States": {
            "FindApplications": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:dynamodb:query",
                "Parameters": {
                    "TableName": table,
                    "IndexName": index,
                    # The index holds keys only: every application is listed, whatever its
                    # status; the worker leaves one no longer PENDING as it is.
                    "KeyConditionExpression": "GSI1PK = :pk AND begins_with(GSI1SK, :application)",
                    "ExpressionAttributeValues": {
                        ":pk": {"S.$": "$.jobPartition"},
                        ":application": {"S": item_shapes.APPLICATION_PREFIX},
                    },
                },
                "ResultSelector": {"items.$": "$.Items"},
                "ResultPath": "$.found",
                "Next": "Book",
            },
            "Book": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:dynamodb:transactWriteItems",
                "Parameters": {
                    "TransactItems": [
                        {
                            "Update": {
                                "TableName": table,
                                "Key": {"PK": {"S.$": "$.jobPartition"}, "SK": {"S": item_shapes.JOB_SORT}},
                                "ConditionExpression": "attribute_exists(PK) AND #owner = :owner "
                                "AND #status = :open AND startsAt > :now",
                                "UpdateExpression": "SET #status = :closed, acceptedApplicationId = :app, "
                                "closedAt = :now",
                                "ExpressionAttributeNames": {**status, "#owner": "owner"},
                                "ExpressionAttributeValues": {
                                    ":owner": {"S.$": "$.owner"},
                                    ":open": {"S": "OPEN"},
                                    ":closed": {"S": "CLOSED"},
                                    ":app": {"S.$": "$.applicationId"},
                                    ":now": {"S.$": "$.now"},
                                },
                            }
                        },
                        {
                            "Update": {
                                "TableName": table,
                                "Key": {"PK": {"S.$": "$.jobPartition"}, "SK": {"S.$": "$.applicationSort"}},
                                "ConditionExpression": "attribute_exists(PK) AND #status = :pending",
                                "UpdateExpression": "SET #status = :accepted, updatedAt = :now",
                                "ExpressionAttributeNames": status,
                                "ExpressionAttributeValues": {
                                    ":pending": {"S": "PENDING"},
                                    ":accepted": {"S": "ACCEPTED"},
                                    ":now": {"S.$": "$.now"},
                                },
                            }
                        },
                        {
                            "Delete": {
                                "TableName": table,
                                "Key": {"PK": {"S.$": "$.jobPartition"}, "SK": {"S": item_shapes.LISTING_SORT}},
                            }
                        },
                    ]
                },
                "ResultPath": None,
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "NotBooked"}],
                "Next": "DeclineOthers",
            },
            "NotBooked": {"Type": "Fail", "Error": "NotBooked", "Cause": "the transaction was refused"},
            "DeclineOthers": {
                "Type": "Map",
                "ItemsPath": "$.found.items",
                "MaxConcurrency": MAP_CONCURRENCY,
                "ItemSelector": {
                    "jobId.$": "$.jobId",
                    "accepted.$": "$.applicationId",
                    "applicationId.$": "States.ArrayGetItem(States.StringSplit($$.Map.Item.Value.GSI1SK.S, '#'), 1)",
                },
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "IsAccepted",
                    "States": {
                        "IsAccepted": {
                            "Type": "Choice",
                            "Choices": [
                                {"Variable": "$.applicationId", "StringEqualsPath": "$.accepted", "Next": "Kept"}
                            ],
                            "Default": "SendDecline",
                        },
                        "Kept": {"Type": "Succeed"},
                        "SendDecline": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::sqs:sendMessage",
                            "Parameters": {
                                "QueueUrl": queue_url,
                                "MessageBody": {
                                    "v": 1,
                                    "kind": "DeclineApplication",
                                    "jobId.$": "$.jobId",
                                    "applicationId.$": "$.applicationId",
                                },
                            },
                            "ResultPath": None,
                            "End": True,
                        },
                    },
                },
                "ResultPath": None,
                "End": True,
            },
        },
    }


def execution_input(job: PreparedJob, user_id: Callable[[str], str] = local_user_id) -> dict[str, str]:
    """What the API's integration would pass the workflow: the ids, and the keys derived from them."""
    return {
        "jobId": job.job_id,
        "jobPartition": item_shapes.job_partition(job.job_id),
        "applicationId": job.accepted,
        "applicationSort": item_shapes.application_sort(job.accepted),
        "owner": user_id(job.owner),
        "now": format_time(utc_now()),
    }


def run(workdir: Path, say: Callable[[str], None], bookings: int = 20, apps_per_job: int = 5) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    emulator = ministack.start(services=SERVICES, log_path=workdir / "ministack-express.log")
    try:
        endpoint = emulator.endpoint
        stack = start_stack(
            workdir / "stack-express",
            env=clean_env(AWS_ENDPOINT_URL_DYNAMODB=endpoint, AWS_ENDPOINT_URL_SQS=endpoint),
        )
    except BaseException:
        emulator.stop()
        raise
    try:
        say(f"  part 7: MiniStack with {', '.join(SERVICES)} at {endpoint}; our API at {stack.api_url}")
        owner = "bench-p7-parent"
        headers = {"Authorization": f"Bearer {make_token(owner, 'parent')}"}
        target = Target(stack.client("dynamodb"), stack.client("sqs"), stack.table, stack.queue_url, endpoint)
        return compare(target, _api_booker(stack.api_url, headers), owner, local_user_id, say, bookings, apps_per_job)
    finally:
        stack.stop()
        emulator.stop()


@dataclass(frozen=True)
class Target:
    """Where both designs book: the table and queue, and the emulator's Step Functions."""

    dynamodb: Any
    sqs: Any
    table: str
    queue_url: str
    endpoint: str


def _api_booker(api_url: str, headers: dict[str, str]) -> Callable[[PreparedJob], tuple[bool, str]]:
    def book(job: PreparedJob) -> tuple[bool, str]:
        resp = requests.post(
            f"{api_url}/jobs/{job.job_id}/book", json={"applicationId": job.accepted}, headers=headers, timeout=30
        )
        if resp.status_code == 200:
            return True, "HTTP 200"
        return False, f"HTTP {resp.status_code} {resp.text[:120]}"

    return book


def compare(
    target: Target,
    book_ours: Callable[[PreparedJob], tuple[bool, str]],
    owner: str,
    user_id: Callable[[str], str],
    say: Callable[[str], None],
    bookings: int,
    apps_per_job: int,
) -> dict[str, Any]:
    """Books jobs in turn through ``book_ours`` and the Express workflow, then checks both."""
    sfn = boto3.client(
        "stepfunctions",
        endpoint_url=target.endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - the emulator accepts anything
        # StartSyncExecution goes to sync-<host> on AWS; the emulator answers on its own host only.
        config=Config(inject_host_prefix=False),
    )
    machine = sfn.create_state_machine(
        name="book-nanny-express",
        definition=json.dumps(definition(target.table, target.queue_url)),
        roleArn=ROLE_ARN,
        type="EXPRESS",
    )["stateMachineArn"]
    warm = 2
    jobs = prepare_jobs(target.dynamodb, target.table, 2 * (bookings + warm), apps_per_job, [owner], "p7", user_id)
    samples: dict[str, list[float]] = {"ours": [], "express_workflow": []}
    booked: dict[str, set[str]] = {"ours": set(), "express_workflow": set()}
    failures: dict[str, list[str]] = {"ours": [], "express_workflow": []}
    assigned: dict[str, list[PreparedJob]] = {"ours": [], "express_workflow": []}
    for i in range(bookings + warm):
        pair = jobs[2 * i : 2 * i + 2]
        order = ("ours", "express_workflow") if i % 2 == 0 else ("express_workflow", "ours")
        for design, job in zip(order, pair, strict=True):
            assigned[design].append(job)
            t0 = time.perf_counter()
            if design == "ours":
                ok, detail = book_ours(job)
            else:
                answer = sfn.start_sync_execution(
                    stateMachineArn=machine, input=json.dumps(execution_input(job, user_id))
                )
                ok, detail = answer["status"] == "SUCCEEDED", f"{answer['status']} {answer.get('error', '')}"
            ms = (time.perf_counter() - t0) * 1000
            if ok:
                booked[design].add(job.job_id)
            else:
                failures[design].append(detail)
            if i >= warm:
                samples[design].append(ms)
    # A second booking of a booked job, through the workflow: refused, and nothing changes.
    first = next(j for j in assigned["express_workflow"] if j.job_id in booked["express_workflow"])
    again = PreparedJob(first.job_id, first.owner, first.application_ids)
    other = next(a for a in first.application_ids if a != first.accepted)
    second = execution_input(again, user_id) | {
        "applicationId": other,
        "applicationSort": item_shapes.application_sort(other),
    }
    refused = sfn.start_sync_execution(stateMachineArn=machine, input=json.dumps(second))
    # Every message handled, the bookings' delayed sweeps included: then the declines have all landed.
    drained = wait_queues_empty(target.sqs, [target.queue_url], timeout=120)
    out: dict[str, Any] = {"bookings": bookings, "apps_per_job": apps_per_job, "map_concurrency": MAP_CONCURRENCY}
    for design in samples:
        invariants = check_invariants(target.dynamodb, target.table, assigned[design], booked[design])
        out[design] = {
            "latency": latency_summary(samples[design]),
            "booked": len(booked[design]),
            "failures": failures[design][:5],
            "invariants": invariants,
        }
        say(
            f"  part 7: {design}: p50 {out[design]['latency']['p50']:.1f} ms, booked {len(booked[design])}, "
            f"invariants {'held' if invariants['ok'] else 'VIOLATED: ' + '; '.join(invariants['examples'][:3])}"
        )
    out["queues_drained"] = drained
    # The invariants above cover the refused job too: still CLOSED on its first application.
    out["second_booking_refused"] = refused["status"] == "FAILED" and refused.get("error") == "NotBooked"
    return out
