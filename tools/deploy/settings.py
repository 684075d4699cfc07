"""What every deploy path shares: the stage's settings, the target account, output helpers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from tools.shared import ROOT, Printer, ToolError, say, stage_environment

APP_NAME = "babysitting-booking"
WORKER_FUNCTION = "decline_worker"
SCHEDULER_FUNCTION = "settle_due_jobs"  # expires and completes due jobs, every minute
STREAM_FUNCTION = "table_stream"
MAIL_FUNCTION = "mail_worker"
FUNCTIONS = ("api_handler", "token_authorizer", WORKER_FUNCTION, SCHEDULER_FUNCTION, STREAM_FUNCTION, MAIL_FUNCTION)
PARTIAL_BATCH_RESPONSES = "ReportBatchItemFailures"
# The worker returns batchItemFailures only when this is "true" (chalicelib/config.py); a
# deploy path sets it only where the subscription is known to honour such a report.
PARTIAL_BATCH_FLAG = "DECLINES_PARTIAL_BATCH_RESPONSES"
# The same for the stream function: true only where the stream subscription honours a report
# (AWS); MiniStack's stream subscriptions do not, so the emulated account's stack says false.
STREAM_PARTIAL_BATCH_FLAG = "STREAM_PARTIAL_BATCH_RESPONSES"
NOT_DEPLOYABLE = {"local"}  # served by `make local`, never deployed

# One error class for every tool: a stage missing from config.json (tools.shared) fails a deploy as its own steps do.
DeployError = ToolError


def step(out: Printer, text: str) -> None:
    out(f"==> {text}")


def stack_name(stage: str) -> str:
    """The one CloudFormation stack of a stage deployed from the packaged template."""
    return f"booking-{stage}"


def resources_stack_name(stage: str) -> str:
    """The resources + identity stack of a stage deployed with ``chalice deploy``."""
    return f"booking-resources-{stage}"


def function_name(app_name: str, stage: str, function: str) -> str:
    """The Lambda function name ``chalice deploy`` gives each function."""
    if function == "api_handler":
        return f"{app_name}-{stage}"
    return f"{app_name}-{stage}-{function}"


def require_deployable(stage: str, project_dir: Path = ROOT) -> dict[str, str]:
    if stage in NOT_DEPLOYABLE:
        raise DeployError(f"stage {stage!r} is for the local stack (`make local`), not for AWS")
    env = stage_environment(stage, project_dir)
    for name in ("TABLE_NAME", "DECLINES_QUEUE_NAME"):
        if not env.get(name):
            raise DeployError(f"stage {stage!r} has no {name} in .chalice/config.json")
    return env


def aws_session() -> Any:
    """A boto3 session that also honours ``AWS_REGION`` (boto3 reads only ``AWS_DEFAULT_REGION``).

    The region is exported for the ``chalice`` subprocesses too.
    """
    region = os.environ.get("AWS_REGION")
    if region and not os.environ.get("AWS_DEFAULT_REGION"):
        os.environ["AWS_DEFAULT_REGION"] = region
    return boto3.session.Session()


def describe_target(session: Any, out: Printer = say) -> dict[str, str]:
    """Fails early, and clearly, without a region or credentials; says where we deploy."""
    region = session.region_name
    if not region:
        raise DeployError("no AWS region configured: set AWS_REGION (or AWS_DEFAULT_REGION, or a profile's region)")
    try:
        identity = session.client("sts").get_caller_identity()
    except NoCredentialsError as exc:
        raise DeployError("no AWS credentials found: set AWS_PROFILE or the AWS_ACCESS_KEY_ID variables") from exc
    except (ClientError, BotoCoreError) as exc:
        raise DeployError(f"the AWS credentials do not work: {exc}") from exc
    overrides = {k: v for k, v in os.environ.items() if k.startswith("AWS_ENDPOINT_URL")}
    out(f"    account {identity['Account']}, region {region}, as {identity['Arn']}")
    for key, value in sorted(overrides.items()):
        out(f"    endpoint override {key}={value}")
    return {"account": identity["Account"], "region": region}


def emulated_cognito_base(session: Any) -> str | None:
    """The Cognito endpoint when it is not AWS's (an emulator), else None.

    Cognito's issuer is always ``https://cognito-idp.<region>.amazonaws.com/<pool>``, and
    on AWS the JWKS lives under the issuer; an emulator serves it from its own endpoint.
    """
    url = session.client("cognito-idp").meta.endpoint_url.rstrip("/")
    host = urlparse(url).hostname or ""
    if host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws")):
        return None
    return url
