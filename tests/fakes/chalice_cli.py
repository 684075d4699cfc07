"""The chalice CLI, in process: `deploy` creates on a (moto) session what Chalice would, and
writes `.chalice/deployed/<stage>.json` as Chalice does."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import boto3

from tools.deploy import chalice_cli, settings
from tools.shared import stage_environment

APP_NAME = "babysitting-booking"
API_URL = "https://abc123.execute-api.us-east-1.amazonaws.com/api/"


def _function(
    session: boto3.session.Session, stage: str, handler: str, env: dict[str, str] | None = None
) -> tuple[str, str]:
    """The function (and its role) `chalice deploy` creates for ``handler``: its name and ARN."""
    name = settings.function_name(APP_NAME, stage, handler)
    role = session.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as zf:
        zf.writestr("app.py", f"def {handler}(event, context):\n    return {{}}\n")
    environment = {} if env is None else {"Environment": {"Variables": env}}
    arn = session.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role,
        Handler=f"app.{handler}",
        Code={"ZipFile": code.getvalue()},
        **environment,
    )["FunctionArn"]
    return name, arn


def worker_subscription(
    session: boto3.session.Session, stage: str = "dev", env: dict[str, str] | None = None
) -> dict[str, Any]:
    """What `chalice deploy` creates for the worker: role, function, SQS event source mapping."""
    sqs = session.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"booking-declines-{stage}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    name, function_arn = _function(session, stage, "decline_worker", env or {})
    mapping = session.client("lambda").create_event_source_mapping(
        EventSourceArn=queue_arn, FunctionName=name, BatchSize=10
    )
    return {"function_arn": function_arn, "queue_arn": queue_arn, "queue": f"booking-declines-{stage}", **mapping}


def stream_subscription(session: boto3.session.Session, stage: str, env: dict[str, str]) -> dict[str, Any]:
    """What `chalice deploy` creates for the stream function: its function and the table's subscription."""
    name, function_arn = _function(session, stage, "table_stream")
    mapping = session.client("lambda").create_event_source_mapping(
        EventSourceArn=env["TABLE_STREAM_ARN"], FunctionName=name, BatchSize=100, StartingPosition="TRIM_HORIZON"
    )
    return {"function_arn": function_arn, "stream_arn": env["TABLE_STREAM_ARN"], **mapping}


def deployed_resources(sub: dict[str, Any], url: str = API_URL, stream: dict[str, Any] | None = None) -> dict:
    """.chalice/deployed/<stage>.json as Chalice 1.34 writes it (abridged to the workers and the API)."""
    streams = (
        [
            {
                "name": "table_stream-dynamodb-event-source",
                "resource_type": "dynamodb_event",
                "stream_arn": stream["stream_arn"],
                "event_uuid": stream["UUID"],
                "lambda_arn": stream["function_arn"],
            }
        ]
        if stream
        else []
    )
    return {
        "resources": [
            *streams,
            {"name": "decline_worker", "resource_type": "lambda_function", "lambda_arn": sub["function_arn"]},
            {
                "name": "decline_worker-sqs-event-source",
                "resource_type": "sqs_event",
                "queue_arn": sub["queue_arn"],
                "event_uuid": sub["UUID"],
                "queue": sub["queue"],
                "lambda_arn": sub["function_arn"],
            },
            {"name": "rest_api", "resource_type": "rest_api", "rest_api_id": "abc123", "rest_api_url": url},
        ],
        "schema_version": "2.0",
        "backend": "api",
    }


class FakeChalice:
    """Stands in for the chalice CLI: records commands; `deploy` does what Chalice would."""

    def __init__(self, session: boto3.session.Session, project: Path, exit_code: int = 0) -> None:
        self.session, self.project, self.exit_code = session, project, exit_code
        self.commands: list[list[str]] = []
        self.stage_env: dict[str, str] = {}

    def __call__(self, command: Sequence[str], extra_env: dict[str, str]) -> int:
        self.commands.append(list(command))
        if self.exit_code:
            return self.exit_code
        if "deploy" in command:
            stage = command[command.index("--stage") + 1]
            # The function's environment: config.json's, plus what the wrapper adds.
            self.stage_env = json.loads(extra_env.get(chalice_cli.STAGE_ENV_VARIABLE, "{}"))
            env = {**stage_environment(stage, project_dir=self.project), **self.stage_env}
            sub = worker_subscription(self.session, stage, env)
            stream = stream_subscription(self.session, stage, env)
            deployed = self.project / ".chalice" / "deployed"
            deployed.mkdir(exist_ok=True)
            (deployed / f"{stage}.json").write_text(json.dumps(deployed_resources(sub, stream=stream)))
        if "delete" in command:
            (self.project / ".chalice" / "deployed" / "dev.json").unlink()
        return 0
