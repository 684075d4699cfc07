"""Deploys a stage to AWS (or to an emulated account), packages it, or deletes it.

    python -m tools.deploy deploy  --stage dev [--parameter Name=value ...] [--build-dir DIR]
    python -m tools.deploy deploy  --stage dev --via chalice
    python -m tools.deploy package --stage prod [--out build/package-prod]
    python -m tools.deploy destroy --stage dev [--yes]

``deploy`` (the default, ``--via stack``) packages the app with ``chalice package
--merge-template`` and deploys that one template as the CloudFormation stack
``booking-<stage>`` (tools/deploy_stack.py). ``--via chalice`` runs ``chalice deploy``
between a resources stack and the steps Chalice cannot do itself
(tools/deploy_chalice.py). Every step is safe to repeat. boto3 and Chalice honour the
usual credential, region and endpoint settings (``AWS_PROFILE``, ``AWS_REGION``,
``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``...): with an emulator's endpoint
set, the same command deploys to it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from tools import cfn_stack, preflight, smoke
from tools.deploy_chalice import Runner, deploy_via_chalice, run_chalice, run_command
from tools.deploy_package import package
from tools.deploy_secret import delete_page_token_key
from tools.deploy_settings import (
    FUNCTIONS,
    PROJECT_DIR,
    WORKER_FUNCTION,
    DeployError,
    Printer,
    aws_session,
    chalice_config,
    describe_target,
    function_name,
    require_deployable,
    resources_stack_name,
    say,
    stack_name,
    stage_environment,
    step,
)
from tools.deploy_stack import artifacts_bucket_name, deploy_packaged, destroy_packaged

# The stage settings other tools (ops, iam_check) read through this module.
__all__ = [
    "FUNCTIONS",
    "WORKER_FUNCTION",
    "DeployError",
    "chalice_config",
    "function_name",
    "main",
    "stage_environment",
]


def parse_parameters(pairs: Sequence[str]) -> dict[str, str]:
    """``Name=value`` pairs (``--parameter``, or ``PARAMS=`` of make) as a dict."""
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise DeployError(f"a parameter is Name=value, got {pair!r}")
        params[name.strip()] = value
    return params


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
    project_dir: Path = PROJECT_DIR,
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


# ----------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.deploy", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("deploy", help="deploy the stage (the packaged stack, or --via chalice)")
    p.add_argument("--stage", required=True)
    p.add_argument("--via", choices=("stack", "chalice"), default="stack")
    p.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a template parameter, e.g. DeclinesVisibilityTimeoutSeconds=5 or ExistingUserPoolId=us-east-1_abc",
    )
    p.add_argument("--build-dir", type=Path, help="where to package (default build/package-<stage>)")
    p.add_argument("--no-smoke", action="store_true", help="skip the smoke test after the deploy (tools/smoke.py)")
    p = sub.add_parser("package", help="SAM template with the infrastructure merged in, checked by cfn-lint")
    p.add_argument("--stage", required=True)
    p.add_argument("--out", type=Path, help="output directory (default build/package-<stage>)")
    p = sub.add_parser("destroy", help="delete the stage's stacks (the table and user pool are kept)")
    p.add_argument("--stage", required=True)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parser


def smoke_after_deploy(stage: str, session: Any) -> int:
    try:
        smoke.smoke(stage, session=session)
    except smoke.SmokeFailure as exc:
        print(
            f"\ndeploy finished, but the smoke test failed at step '{exc.step}': {exc.detail}\n"
            f"(make smoke STAGE={stage} runs it again)",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "deploy":
            params = parse_parameters(args.parameter)
            session = aws_session()
            if args.via == "chalice":
                deploy_via_chalice(args.stage, session=session, parameters=params)
            else:
                deploy_packaged(args.stage, session=session, parameters=params, build_dir=args.build_dir)
            if not args.no_smoke:
                return smoke_after_deploy(args.stage, session)
        elif args.command == "package":
            problems = preflight.config_problems(args.stage)
            if problems:
                raise DeployError("pre-flight refused:\n  - " + "\n  - ".join(problems))
            package(args.stage, args.out)
        else:
            destroy(args.stage, yes=args.yes)
    except DeployError as exc:
        print(f"\n{args.command} failed: {exc}", file=sys.stderr)
        return 1
    except NoRegionError:
        print(f"\n{args.command} failed: no AWS region configured (set AWS_REGION)", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as exc:
        print(f"\n{args.command} failed: AWS refused a call: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
