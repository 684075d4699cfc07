"""Create-or-update of one CloudFormation stack, waiting for it, with readable failures."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from tools.deploy.settings import DeployError
from tools.shared import Printer, say

_UPDATABLE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE"}
# CloudFormation takes at most this much template inline; larger ones go through S3.
MAX_TEMPLATE_BODY = 51_200


def describe(cfn: Any, name: str) -> dict[str, Any] | None:
    try:
        return cfn.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def outputs(stack: dict[str, Any] | None) -> dict[str, str]:
    return {o["OutputKey"]: o.get("OutputValue", "") for o in (stack or {}).get("Outputs", [])}


def failure_reasons(cfn: Any, name: str, limit: int = 10) -> list[str]:
    try:
        events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    except (ClientError, BotoCoreError):
        return []
    reasons = [
        f"{e['LogicalResourceId']}: {e.get('ResourceStatus')} {e.get('ResourceStatusReason', '')}".strip()
        for e in events
        if str(e.get("ResourceStatus", "")).endswith("_FAILED")
    ]
    return reasons[:limit]


def wait(cfn: Any, waiter: str, name: str, delay: float) -> None:
    try:
        cfn.get_waiter(waiter).wait(StackName=name, WaiterConfig={"Delay": delay, "MaxAttempts": int(3600 / delay)})
    except WaiterError as exc:
        stack = describe(cfn, name)
        status = stack["StackStatus"] if stack else "gone"
        details = "\n    ".join(failure_reasons(cfn, name)) or str(exc)
        raise DeployError(f"stack {name} ended in {status}:\n    {details}") from exc


def parameter_list(values: dict[str, str], previous: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Given values, plus the previous value of every other parameter the stack already has.

    As ``aws cloudformation deploy`` does: a second run without ``--parameter`` keeps what
    the first one chose instead of falling back to the template's defaults.
    """
    params = [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]
    for old in (previous or {}).get("Parameters", []):
        if old["ParameterKey"] not in values:
            params.append({"ParameterKey": old["ParameterKey"], "UsePreviousValue": True})
    return params


def ensure_stack(
    cfn: Any,
    name: str,
    *,
    template: dict[str, str],
    parameters: dict[str, str],
    tags: dict[str, str],
    capabilities: tuple[str, ...] = (),
    wait_delay: float = 5.0,
    out: Printer = say,
) -> dict[str, str]:
    """Creates or updates a stack and waits; returns its outputs. ``template``: TemplateBody or TemplateURL."""
    stack = describe(cfn, name)
    if stack and stack["StackStatus"] == "ROLLBACK_COMPLETE":
        # A create that failed and was rolled back holds nothing; it can only be deleted.
        out(f"    {name} is ROLLBACK_COMPLETE from a failed first create: deleting it before trying again")
        cfn.delete_stack(StackName=name)
        wait(cfn, "stack_delete_complete", name, wait_delay)
        stack = None
    request: dict[str, Any] = {
        "StackName": name,
        **template,
        "Parameters": parameter_list(parameters, stack),
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }
    if capabilities:
        request["Capabilities"] = list(capabilities)
    if stack is None:
        out(f"    creating stack {name}")
        cfn.create_stack(**request)
        wait(cfn, "stack_create_complete", name, wait_delay)
    else:
        status = stack["StackStatus"]
        if status.endswith("_IN_PROGRESS"):
            raise DeployError(f"stack {name} is busy ({status}); wait until it settles and run deploy again")
        if status not in _UPDATABLE:
            raise DeployError(
                f"stack {name} is in {status} and cannot be updated; fix it in the CloudFormation console"
            )
        out(f"    updating stack {name}")
        try:
            cfn.update_stack(**request)
        except ClientError as exc:
            if "No updates are to be performed" not in str(exc):
                raise DeployError(f"update of stack {name} refused: {exc}") from exc
            out("    no changes")
        else:
            wait(cfn, "stack_update_complete", name, wait_delay)
    return outputs(describe(cfn, name))


def delete_stack(cfn: Any, name: str, *, wait_delay: float = 5.0, out: Printer = say) -> bool:
    if describe(cfn, name) is None:
        out(f"    no stack {name}")
        return False
    cfn.delete_stack(StackName=name)
    wait(cfn, "stack_delete_complete", name, wait_delay)
    out(f"    deleted stack {name}")
    return True
