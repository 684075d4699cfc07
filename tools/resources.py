"""Applies the table, queues, bus and sender of ``infra/resources.yaml`` to any endpoint.

AWS gets the template through CloudFormation; MiniStack, moto and the tests
get the very same resource definitions through this module, so there is no second
copy of their settings.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from tools.shared import ROOT

TEMPLATE = ROOT / "infra" / "resources.yaml"


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !Sub, !GetAtt...) as their long form."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def parameters(template: dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    values = {name: spec.get("Default") for name, spec in template.get("Parameters", {}).items()}
    values.update(overrides or {})
    return values


class _Resolver:
    def __init__(self, template: dict[str, Any], params: dict[str, Any]) -> None:
        self.template = template
        self.params = params
        self.physical: dict[str, dict[str, Any]] = {}  # logical id -> {"Ref": ..., attrs}

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                if arg in self.params:
                    return self.params[arg]
                return self.physical[arg]["Ref"]
            if key == "Fn::Sub":
                return re.sub(r"\$\{([^}]+)\}", lambda m: str(self._sub(m.group(1))), arg)
            if key == "Fn::GetAtt":
                logical, attr = arg
                return self.physical[logical][attr]
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        return value

    def _sub(self, name: str) -> Any:
        if "." in name:
            logical, attr = name.split(".", 1)
            return self.physical[logical][attr]
        if name in self.params:
            return self.params[name]
        return self.physical[name]["Ref"]


def _table_request(props: dict[str, Any]) -> dict[str, Any]:
    request = {
        "TableName": props["TableName"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if props.get("GlobalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    if props.get("SSESpecification", {}).get("SSEEnabled"):
        request["SSESpecification"] = {"Enabled": True}
    if props.get("StreamSpecification"):
        view = props["StreamSpecification"]["StreamViewType"]
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": view}
    return request


def _queue_attributes(props: dict[str, Any]) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for name in ("VisibilityTimeout", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds", "DelaySeconds"):
        if name in props:
            attrs[name] = str(props[name])
    if "SqsManagedSseEnabled" in props:
        attrs["SqsManagedSseEnabled"] = "true" if props["SqsManagedSseEnabled"] else "false"
    if "RedrivePolicy" in props:
        policy = dict(props["RedrivePolicy"])
        policy["maxReceiveCount"] = int(policy["maxReceiveCount"])
        attrs["RedrivePolicy"] = json.dumps(policy)
    return attrs


def _order(resources: dict[str, Any]) -> list[str]:
    """Logical ids with every resource after the ones it references."""

    def deps(value: Any) -> set[str]:
        found: set[str] = set()
        if isinstance(value, dict):
            for key, arg in value.items():
                if key == "Ref" and isinstance(arg, str) and arg in resources:
                    found.add(arg)
                elif key == "Fn::GetAtt":
                    found.add(arg[0])
                elif key == "Fn::Sub" and isinstance(arg, str):
                    found |= {n.split(".")[0] for n in re.findall(r"\$\{([^}]+)\}", arg)} & set(resources)
                else:
                    found |= deps(arg)
        elif isinstance(value, list):
            for v in value:
                found |= deps(v)
        return found

    ordered: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        for dep in sorted(deps(resources[name])):
            visit(dep)
        ordered.append(name)

    for name in resources:
        visit(name)
    return ordered


def _find_or_create_queue(sqs: Any, props: dict[str, Any]) -> str:
    # Found by name first: MiniStack keys a queue by the URL it was created under, port
    # included, so CreateQueue after a restart on another port would shadow the saved queue.
    try:
        return sqs.get_queue_url(QueueName=props["QueueName"])["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        return sqs.create_queue(QueueName=props["QueueName"], Attributes=_queue_attributes(props))["QueueUrl"]


def _apply_bus(events: Any, props: dict[str, Any]) -> dict[str, Any]:
    try:
        arn = events.describe_event_bus(Name=props["Name"])["Arn"]
    except events.exceptions.ResourceNotFoundException:
        arn = events.create_event_bus(Name=props["Name"])["EventBusArn"]
    return {"Ref": props["Name"], "Name": props["Name"], "Arn": arn}


def _apply_rule(events: Any, props: dict[str, Any]) -> dict[str, Any]:
    arn = events.put_rule(
        Name=props["Name"],
        EventBusName=props["EventBusName"],
        EventPattern=json.dumps(props["EventPattern"]),
        State=props.get("State", "ENABLED"),
    )["RuleArn"]
    targets = [
        {k: v for k, v in t.items() if k in ("Id", "Arn", "DeadLetterConfig", "RetryPolicy")} for t in props["Targets"]
    ]
    events.put_targets(Rule=props["Name"], EventBusName=props["EventBusName"], Targets=targets)
    return {"Ref": props["Name"], "Arn": arn}


def _apply_identity(ses: Any, props: dict[str, Any]) -> dict[str, Any]:
    with contextlib.suppress(ses.exceptions.AlreadyExistsException):
        ses.create_email_identity(EmailIdentity=props["EmailIdentity"])
    return {"Ref": props["EmailIdentity"]}


def apply(
    dynamodb: Any,
    sqs: Any,
    stage: str,
    template_path: Path = TEMPLATE,
    *,
    events: Any = None,
    sesv2: Any = None,
) -> dict[str, Any]:
    """Creates (or finds) the template's tables, queues, bus, rule and sender; returns its outputs.

    Without an ``events`` (``sesv2``) client the bus and rule (the sender identity) are left
    out, with the outputs that name them. Queue policies are AWS's alone: no emulator checks
    them. Safe to run again: existing resources are kept as they are.
    """
    template = load_template(template_path)
    resolve = _Resolver(template, parameters(template, {"Stage": stage}))
    resources = template["Resources"]
    for logical in _order(resources):
        spec = resources[logical]
        kind = spec["Type"]
        if kind == "AWS::SQS::QueuePolicy" or (
            (kind.startswith("AWS::Events::") and events is None) or (kind.startswith("AWS::SES::") and sesv2 is None)
        ):
            continue
        props = resolve(spec.get("Properties", {}))
        if kind == "AWS::DynamoDB::Table":
            with contextlib.suppress(dynamodb.exceptions.ResourceInUseException):
                dynamodb.create_table(**_table_request(props))
            dynamodb.get_waiter("table_exists").wait(TableName=props["TableName"], WaiterConfig={"Delay": 0.2})
            table = dynamodb.describe_table(TableName=props["TableName"])["Table"]
            resolve.physical[logical] = {
                "Ref": props["TableName"],
                "Arn": table["TableArn"],
                "StreamArn": table.get("LatestStreamArn"),
            }
        elif kind == "AWS::SQS::Queue":
            url = _find_or_create_queue(sqs, props)
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            resolve.physical[logical] = {"Ref": url, "Arn": arn, "QueueName": props["QueueName"]}
        elif kind == "AWS::Events::EventBus":
            resolve.physical[logical] = _apply_bus(events, props)
        elif kind == "AWS::Events::Rule":
            resolve.physical[logical] = _apply_rule(events, props)
        elif kind == "AWS::SES::EmailIdentity":
            resolve.physical[logical] = _apply_identity(sesv2, props)
        else:
            raise ValueError(f"{logical}: {kind} cannot be applied locally")
    outputs = {}
    for name, out in template.get("Outputs", {}).items():
        with contextlib.suppress(KeyError):  # names a resource left out above
            outputs[name] = resolve(out["Value"])
    return outputs
