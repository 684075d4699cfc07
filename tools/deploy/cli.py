"""Deploys a stage to AWS (or to an emulated account), packages it, or deletes it.

    python -m tools.deploy deploy  --stage dev [--parameter Name=value ...] [--build-dir DIR]
    python -m tools.deploy deploy  --stage dev --via chalice
    python -m tools.deploy package --stage prod [--out build/package-prod]
    python -m tools.deploy destroy --stage dev [--yes]

``deploy`` (the default, ``--via stack``) packages the app with ``chalice package
--merge-template`` and deploys that one template as the CloudFormation stack
``booking-<stage>`` (tools/deploy/stack.py). ``--via chalice`` runs ``chalice deploy``
between a resources stack and the steps Chalice cannot do itself
(tools/deploy/via_chalice.py). Every step is safe to repeat. boto3 and Chalice honour the
usual credential, region and endpoint settings (``AWS_PROFILE``, ``AWS_REGION``,
``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``...): with an emulator's endpoint
set, the same command deploys to it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from tools.deploy import preflight, smoke
from tools.deploy.destroy import destroy
from tools.deploy.package import package
from tools.deploy.settings import (
    DeployError,
    aws_session,
)
from tools.deploy.stack import deploy_packaged
from tools.deploy.via_chalice import deploy_via_chalice


def parse_parameters(pairs: Sequence[str]) -> dict[str, str]:
    """``Name=value`` pairs (``--parameter``, or ``PARAMS=`` of make) as a dict."""
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise DeployError(f"a parameter is Name=value, got {pair!r}")
        params[name.strip()] = value
    return params


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
    p.add_argument(
        "--no-smoke", action="store_true", help="skip the smoke test after the deploy (tools/deploy/smoke.py)"
    )
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
