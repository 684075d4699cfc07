"""Checks the functions' IAM policy files against the AWS calls their code makes.

A recorded call (service, operation, parameters) maps to the IAM actions and resource
ARNs it needs: ``TransactWriteItems`` needs the action of every item inside it
(``ConditionCheckItem``, ``PutItem``, ``UpdateItem``, ``DeleteItem``) on that item's
table, a ``Query`` with ``IndexName`` needs ``dynamodb:Query`` on the index ARN,
``SendMessageBatch`` is authorized by ``sqs:SendMessage``. To these come the calls
Lambda makes with the function's role on its behalf (logs, X-Ray, SQS polling).

``compare`` reports both directions: needs the policy does not allow, and grants
that no need uses (excess privilege).

    python -m tools.deploy.iam_check --stage dev      # prints each function's grants
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.deploy.settings import FUNCTIONS
from tools.shared import ROOT, chalice_config

# Actions that IAM cannot scope to a resource.
RESOURCELESS_ACTIONS = frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"})

# Lambda's SQS poller uses the function's role (AWS docs: Lambda with Amazon SQS).
SQS_POLLER_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ChangeMessageVisibility",
)

# Lambda's DynamoDB Streams poller uses the function's role (AWS docs: Lambda with DynamoDB).
STREAM_POLLER_ACTIONS = (
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
)

_TRANSACT_WRITE = {
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
}
_DYNAMODB_SINGLE = {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "DescribeTable"}
_SQS = {
    "SendMessage": "sqs:SendMessage",
    "SendMessageBatch": "sqs:SendMessage",
    "ReceiveMessage": "sqs:ReceiveMessage",
    "DeleteMessage": "sqs:DeleteMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibility": "sqs:ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "GetQueueAttributes": "sqs:GetQueueAttributes",
    "GetQueueUrl": "sqs:GetQueueUrl",
}


class UnmappedOperation(ValueError):
    """A call this module does not know how to authorize: extend the mapping, then the policy."""


@dataclass(frozen=True, order=True)
class Need:
    action: str
    resource: str

    def __str__(self) -> str:
        return f"{self.action} on {self.resource}"


@dataclass(frozen=True)
class Call:
    service: str  # botocore's service name: "dynamodb", "sqs"
    operation: str  # "TransactWriteItems"
    params: dict[str, Any]


@dataclass
class Report:
    missing: list[Need] = field(default_factory=list)  # needed, not allowed
    unused: list[tuple[str, str]] = field(default_factory=list)  # (action, resource pattern) nobody needs
    broad: list[str] = field(default_factory=list)  # wildcard actions, "*" resources

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unused or self.broad)

    def __str__(self) -> str:
        lines = [f"missing: {n}" for n in self.missing]
        lines += [f"unused grant: {a} on {r}" for a, r in self.unused]
        lines += [f"too broad: {b}" for b in self.broad]
        return "\n".join(lines) or "ok"


# ---------------------------------------------------------------- calls -> needs


def table_arn(name: str, region: str, account: str) -> str:
    return f"arn:aws:dynamodb:{region}:{account}:table/{name}"


def queue_arn(name: str, region: str, account: str) -> str:
    return f"arn:aws:sqs:{region}:{account}:{name}"


def parameter_arn(name: str, region: str, account: str) -> str:
    return f"arn:aws:ssm:{region}:{account}:parameter/{name.lstrip('/')}"


def _queue_name(params: dict[str, Any]) -> str:
    if "QueueName" in params:
        return params["QueueName"]
    return str(params["QueueUrl"]).rstrip("/").rsplit("/", 1)[-1]


def needs_for_call(call: Call, region: str, account: str, rename: dict[str, str] | None = None) -> list[Need]:
    """The IAM actions and resources one API call needs. ``rename`` maps recorded table or
    queue names to another stage's (the calls are recorded once, checked per stage)."""
    rename = rename or {}
    p = call.params

    def table(name: str) -> str:
        return table_arn(rename.get(name, name), region, account)

    if call.service == "dynamodb":
        op = call.operation
        if op == "TransactWriteItems":
            needs = []
            for item in p["TransactItems"]:
                ((kind, body),) = item.items()
                needs.append(Need(_TRANSACT_WRITE[kind], table(body["TableName"])))
            return needs
        if op == "TransactGetItems":
            return [Need("dynamodb:GetItem", table(i["Get"]["TableName"])) for i in p["TransactItems"]]
        if op in ("BatchGetItem", "BatchWriteItem"):
            return [Need(f"dynamodb:{op}", table(name)) for name in p["RequestItems"]]
        if op in _DYNAMODB_SINGLE:
            resource = table(p["TableName"])
            if p.get("IndexName"):
                resource = f"{resource}/index/{p['IndexName']}"
            return [Need(f"dynamodb:{op}", resource)]
    elif call.service == "sqs" and call.operation in _SQS:
        name = _queue_name(p)
        return [Need(_SQS[call.operation], queue_arn(rename.get(name, name), region, account))]
    elif call.service == "events" and call.operation == "PutEvents":
        buses = {rename.get(e["EventBusName"], e["EventBusName"]) for e in p["Entries"]}
        return [Need("events:PutEvents", f"arn:aws:events:{region}:{account}:event-bus/{b}") for b in sorted(buses)]
    elif call.service == "sesv2" and call.operation == "SendEmail":
        # Authorized on the sender's identity (in the SES sandbox, the recipients' too).
        sender = rename.get(p["FromEmailAddress"], p["FromEmailAddress"])
        return [Need("ses:SendEmail", f"arn:aws:ses:{region}:{account}:identity/{sender}")]
    elif call.service == "ssm" and call.operation == "GetParameter":
        # A SecureString under the AWS-managed key aws/ssm: that key's own policy lets the
        # account's principals decrypt through SSM, so no kms:Decrypt is needed.
        name = rename.get(p["Name"], p["Name"])
        return [Need("ssm:GetParameter", parameter_arn(name, region, account))]
    raise UnmappedOperation(f"{call.service}.{call.operation}")


def runtime_needs(
    lambda_name: str,
    region: str,
    account: str,
    *,
    xray: bool,
    polled_queue: str | None = None,
    polled_stream_table: str | None = None,
    on_failure_queue: str | None = None,
) -> list[Need]:
    """What Lambda itself does with the function's role: logs, traces, SQS and stream polling,
    and sending what a stream subscription gives up to its on-failure queue."""
    group = f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{lambda_name}"
    stream = f"{group}:log-stream:2030/01/01/[$LATEST]0123456789abcdef"
    needs = [
        # A log group's ARN is written both ways in AWS's documentation and APIs.
        Need("logs:CreateLogGroup", group),
        Need("logs:CreateLogGroup", f"{group}:*"),
        Need("logs:CreateLogStream", stream),
        Need("logs:PutLogEvents", stream),
    ]
    if xray:
        needs += [Need(a, "*") for a in sorted(RESOURCELESS_ACTIONS)]
    if polled_queue:
        needs += [Need(a, queue_arn(polled_queue, region, account)) for a in SQS_POLLER_ACTIONS]
    if polled_stream_table:
        stream = f"{table_arn(polled_stream_table, region, account)}/stream/2030-01-01T00:00:00.000"
        needs += [Need(a, stream) for a in STREAM_POLLER_ACTIONS]
    if on_failure_queue:
        needs.append(Need("sqs:SendMessage", queue_arn(on_failure_queue, region, account)))
    return needs


# ------------------------------------------------------------- policy evaluation


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _pattern(glob: str, *, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile(f"^{regex}$", re.IGNORECASE if ignore_case else 0)


def _matches(glob: str, value: str, *, ignore_case: bool = False) -> bool:
    return bool(_pattern(glob, ignore_case=ignore_case).match(value))


def statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    result = []
    for st in _as_list_of_dicts(policy.get("Statement")):
        unsupported = {"NotAction", "NotResource", "Condition", "NotPrincipal", "Principal"} & set(st)
        if unsupported:
            raise ValueError(f"statement {st.get('Sid')!r} uses {sorted(unsupported)}: not evaluated here")
        result.append(st)
    return result


def _as_list_of_dicts(value: Any) -> list[dict[str, Any]]:
    return [value] if isinstance(value, dict) else list(value or [])


def allows(policy: dict[str, Any], need: Need) -> bool:
    allowed = False
    for st in statements(policy):
        hit = any(_matches(a, need.action, ignore_case=True) for a in _as_list(st.get("Action"))) and any(
            _matches(r, need.resource) for r in _as_list(st.get("Resource"))
        )
        if hit and st.get("Effect") == "Deny":
            return False
        allowed = allowed or (hit and st.get("Effect") == "Allow")
    return allowed


def compare(policy: dict[str, Any], needs: Iterable[Need]) -> Report:
    needs = sorted(set(needs))
    report = Report(missing=[n for n in needs if not allows(policy, n)])
    for st in statements(policy):
        if st.get("Effect") != "Allow":
            continue
        for action in _as_list(st.get("Action")):
            if "*" in action or "?" in action:
                report.broad.append(f"action {action} ({st.get('Sid')})")
            for resource in _as_list(st.get("Resource")):
                if resource == "*" and action not in RESOURCELESS_ACTIONS:
                    report.broad.append(f"{action} on * ({st.get('Sid')})")
                used = any(
                    _matches(action, n.action, ignore_case=True) and _matches(resource, n.resource) for n in needs
                )
                if not used:
                    report.unused.append((action, resource))
    return report


# ------------------------------------------------------------------- the stages


def function_policy(stage: str, function: str, project_dir: Path = ROOT) -> tuple[Path, dict[str, Any]]:
    cfg = chalice_config(stage, function, project_dir)
    if cfg.autogen_policy or not cfg.iam_policy_file:
        raise ValueError(f"{stage}/{function}: no iam_policy_file (autogen_policy={cfg.autogen_policy})")
    path = project_dir / ".chalice" / cfg.iam_policy_file
    return path, json.loads(path.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.deploy.iam_check", description="print each function's grants"
    )
    parser.add_argument("--stage", required=True)
    args = parser.parse_args(argv)
    for function in FUNCTIONS:
        path, policy = function_policy(args.stage, function)
        print(f"{function}: {path.relative_to(ROOT)}")
        for st in statements(policy):
            for action in _as_list(st.get("Action")):
                print(f"  {st.get('Effect')} {action} on {', '.join(_as_list(st.get('Resource')))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
