"""Deletes a stage: ``python -m tools.deploy destroy --stage dev [--yes]``.

What either deploy path made of the stage goes; the table, the user pool and the
artifacts bucket are kept (and named, with the command that deletes each).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.deploy import cfn_stack
from tools.deploy.chalice_cli import run_chalice
from tools.deploy.secret import delete_page_token_key
from tools.deploy.settings import (
    DeployError,
    aws_session,
    describe_target,
    require_deployable,
    resources_stack_name,
    stack_name,
    step,
)
from tools.deploy.stack import artifacts_bucket_name, destroy_packaged
from tools.shared import ROOT, Printer, Runner, run_command, say


def confirm(stage: str, ask: Callable[[str], str] = input) -> bool:
    """The stage's name typed back; no answer (no standard input) is a refusal."""
    try:
        answer = ask(
            f"This deletes stage {stage!r}: its API, functions and roles, the queues with their messages, "
            f"and its page-token key.\nThe table and the user pool are kept. Type the stage name to go on: "
        )
    except EOFError:
        raise DeployError(
            "no answer on standard input: nothing was deleted (pass --yes, or YES=1 to make, to destroy without asking)"
        ) from None
    return answer.strip() == stage


def destroy(
    stage: str,
    *,
    yes: bool = False,
    session: Any = None,
    run: Runner = run_command,
    ask: Callable[[str], str] = input,
    project_dir: Path = ROOT,
    wait_delay: float = 5.0,
    out: Printer = say,
) -> dict[str, str]:
    """Deletes what either deploy path made of the stage; keeps the table, the user pool and the bucket.

    Works from a fresh clone: CloudFormation knows what the stacks own; the chalice path's
    functions are deleted only where ``.chalice/deployed/<stage>.json`` recorded them.
    Returns what was left, by kind.
    """
    env = require_deployable(stage, project_dir)
    if not yes and not confirm(stage, ask):
        raise DeployError("not confirmed; nothing was deleted")
    session = session or aws_session()
    step(out, f"target of stage {stage}")
    target = describe_target(session, out)
    cfn = session.client("cloudformation")
    # What the stacks name, read before they go: the pool is kept and worth naming.
    outputs = {
        **cfn_stack.outputs(cfn_stack.describe(cfn, resources_stack_name(stage))),
        **cfn_stack.outputs(cfn_stack.describe(cfn, stack_name(stage))),
    }

    step(out, f"1/4 stack {stack_name(stage)} (the packaged template)")
    destroy_packaged(session, stage, wait_delay=wait_delay, out=out)

    step(out, f"2/4 chalice delete --stage {stage}")
    if (project_dir / ".chalice" / "deployed" / f"{stage}.json").exists():
        run_chalice(run, "delete", "--stage", stage, project_dir=project_dir)
    else:
        out(f"    nothing recorded in .chalice/deployed/{stage}.json: skipped")

    step(out, f"3/4 resources stack {resources_stack_name(stage)}")
    cfn_stack.delete_stack(cfn, resources_stack_name(stage), wait_delay=wait_delay, out=out)

    step(out, "4/4 the page-token key")
    delete_page_token_key(session.client("ssm"), stage, out=out)

    table = env["TABLE_NAME"]
    bucket = artifacts_bucket_name(target["account"], target["region"], stage)
    left = {"table": table, "bucket": bucket}
    step(out, f"stage {stage} destroyed; kept on purpose:")
    protection = (
        f"aws dynamodb update-table --table-name {table} --no-deletion-protection-enabled && "
        if stage == "prod"
        else ""
    )
    out(
        f"    table {table}, with its data (DeletionPolicy Retain). To delete it: {protection}"
        f"aws dynamodb delete-table --table-name {table}"
    )
    pool = outputs.get("UserPoolId")
    if pool and not outputs.get("AdminClientId"):
        out(f"    user pool {pool} is your own (ExistingUserPoolId): untouched")
    elif pool:
        left["user_pool"] = pool
        out(
            f"    user pool {pool}, with its users (DeletionPolicy Retain). To delete it: "
            f"aws cognito-idp delete-user-pool --user-pool-id {pool}"
        )
    out(
        f"    artifacts bucket {bucket} (deployment packages; the next deploy reuses it). To delete it: "
        f"aws s3 rb s3://{bucket} --force"
    )
    return left
