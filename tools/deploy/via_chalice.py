"""The ``chalice deploy`` path: ``python -m tools.deploy deploy --stage dev --via chalice``.

1. the stack ``booking-resources-<stage>`` (table, queues, user pool: ``infra/*.yaml``),
   created or updated, checked against the stage's names in ``.chalice/config.json``;
2. ``chalice deploy --stage <stage>``, with the ``AUTH_*`` settings, the table's stream
   ARN (``TABLE_STREAM_ARN``, which ``app.py`` subscribes to) and the sender address read
   from that stack's outputs added to the stage's environment (``tools/deploy/chalice_with_env.py``);
3. ``FunctionResponseTypes=[ReportBatchItemFailures]`` on the worker's event source
   mapping, which Chalice cannot set itself, read back to verify it;
4. only then ``DECLINES_PARTIAL_BATCH_RESPONSES=true`` in the worker's environment, read
   back too. Until step 4, the worker answers a failed record by failing the whole batch;
5. the stream subscription's failure settings (bisect, retries, record age, the on-failure
   queue), which Chalice cannot set either. The stream function keeps failing whole
   batches on this path (no partial responses): slower to retry, never dropping a record.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError, WaiterError

from tools.deploy import cfn_stack, preflight
from tools.deploy.chalice_cli import run_chalice
from tools.deploy.secret import ensure_page_token_key
from tools.deploy.settings import (
    APP_NAME,
    PARTIAL_BATCH_FLAG,
    PARTIAL_BATCH_RESPONSES,
    WORKER_FUNCTION,
    DeployError,
    describe_target,
    emulated_cognito_base,
    function_name,
    require_deployable,
    resources_stack_name,
    step,
)
from tools.deploy.templates import AUTH_SETTINGS, STREAM_EVENT_SETTINGS, infrastructure_template
from tools.shared import ROOT, Printer, Runner, load_project_config, run_command, say

TAGS = {"app": APP_NAME}


# ------------------------------------------------- step 1: resources + identity


def _retained_table_conflict(dynamodb: Any, table: str) -> bool:
    try:
        dynamodb.describe_table(TableName=table)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return False
        raise
    return True


def refuse_retained_table(cfn: Any, dynamodb: Any, stack: str, table: str) -> None:
    """A first create would fail on a table an earlier ``destroy`` kept: say what to do instead."""
    if cfn_stack.describe(cfn, stack) is None and _retained_table_conflict(dynamodb, table):
        raise DeployError(
            f"table {table} already exists outside CloudFormation (kept by an earlier `destroy`, "
            f"DeletionPolicy Retain). Delete it (aws dynamodb delete-table --table-name {table}) "
            f"or import it into a {stack} stack, then deploy again."
        )


def ensure_resources_stack(
    cfn: Any,
    dynamodb: Any,
    stage: str,
    *,
    parameters: dict[str, str] | None = None,
    wait_delay: float = 5.0,
    out: Printer = say,
) -> dict[str, str]:
    """Creates or updates ``booking-resources-<stage>``, waits, and returns its outputs."""
    name = resources_stack_name(stage)
    stack = cfn_stack.describe(cfn, name)
    if stack is None or stack["StackStatus"] == "ROLLBACK_COMPLETE":
        refuse_retained_table(cfn, dynamodb, name, f"booking-{stage}")
    return cfn_stack.ensure_stack(
        cfn,
        name,
        template={"TemplateBody": json.dumps(infrastructure_template())},
        parameters={"Stage": stage, **(parameters or {})},
        tags={**TAGS, "stage": stage},
        wait_delay=wait_delay,
        out=out,
    )


def check_outputs_match_config(outputs: dict[str, str], env: dict[str, str]) -> None:
    """The app finds its table and queue by the names in config.json: they must be the stack's."""
    pairs = (("TableName", "TABLE_NAME"), ("DeclinesQueueName", "DECLINES_QUEUE_NAME"))
    wrong = [
        f"{output}={outputs.get(output)!r} but {var}={env.get(var)!r}"
        for output, var in pairs
        if outputs.get(output) != env.get(var)
    ]
    if wrong:
        raise DeployError("the resources stack and .chalice/config.json disagree: " + "; ".join(wrong))


def auth_settings(outputs: dict[str, str]) -> dict[str, str]:
    missing = [o for o in AUTH_SETTINGS.values() if not outputs.get(o)]
    if missing:
        raise DeployError(f"the resources stack has no outputs {missing}")
    return {var: outputs[output] for var, output in AUTH_SETTINGS.items()}


# ------------------------------------------------ step 3: partial batch responses


def load_deployed(stage: str, project_dir: Path = ROOT) -> dict[str, Any]:
    path = project_dir / ".chalice" / "deployed" / f"{stage}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DeployError(f"{path} is missing: `chalice deploy --stage {stage}` has not completed") from exc
    except ValueError as exc:
        raise DeployError(f"{path} is not JSON: {exc}") from exc


def worker_event_source_uuid(deployed: dict[str, Any], queue_name: str, worker: str = WORKER_FUNCTION) -> str:
    """The UUID of the worker's SQS subscription, as recorded by ``chalice deploy``."""
    matches = [
        r
        for r in deployed.get("resources", [])
        if r.get("resource_type") == "sqs_event"
        and r.get("queue") == queue_name
        and str(r.get("lambda_arn", "")).endswith(f"-{worker}")
    ]
    if len(matches) != 1:
        found = [(r.get("name"), r.get("queue")) for r in deployed.get("resources", []) if r.get("resource_type")]
        raise DeployError(
            f"expected one sqs_event for {worker} on {queue_name} in the deployed resources, "
            f"found {len(matches)} (resources: {found})"
        )
    uuid = matches[0].get("event_uuid")
    if not uuid:
        raise DeployError(f"the sqs_event {matches[0].get('name')} has no event_uuid")
    return uuid


def api_url(deployed: dict[str, Any]) -> str | None:
    for resource in deployed.get("resources", []):
        if resource.get("resource_type") == "rest_api":
            return resource.get("rest_api_url")
    return None


def enable_partial_batch_responses(
    lambda_client: Any,
    uuid: str,
    *,
    timeout: float = 120.0,
    poll: float = 2.0,
    out: Printer = say,
) -> dict[str, Any]:
    """Sets ReportBatchItemFailures on the mapping, then reads it back; raises unless it is set."""
    try:
        current = lambda_client.get_event_source_mapping(UUID=uuid)
    except ClientError as exc:
        raise DeployError(f"event source mapping {uuid} not found: {exc}") from exc
    if PARTIAL_BATCH_RESPONSES in (current.get("FunctionResponseTypes") or []):
        out(f"    {uuid}: {PARTIAL_BATCH_RESPONSES} already set")
    else:
        try:
            lambda_client.update_event_source_mapping(UUID=uuid, FunctionResponseTypes=[PARTIAL_BATCH_RESPONSES])
        except ClientError as exc:
            raise DeployError(f"could not update event source mapping {uuid}: {exc}") from exc
        out(f"    {uuid}: {PARTIAL_BATCH_RESPONSES} requested")
    deadline = time.monotonic() + timeout
    while True:
        mapping = lambda_client.get_event_source_mapping(UUID=uuid)
        if mapping.get("State") not in ("Creating", "Updating", "Enabling") or time.monotonic() > deadline:
            break
        time.sleep(poll)
    if PARTIAL_BATCH_RESPONSES not in (mapping.get("FunctionResponseTypes") or []):
        raise DeployError(
            f"event source mapping {uuid} reads back FunctionResponseTypes={mapping.get('FunctionResponseTypes')} "
            f"(state {mapping.get('State')}): failed declines would be deleted with their batch"
        )
    out(f"    verified: {PARTIAL_BATCH_RESPONSES} on {mapping.get('EventSourceArn')} (state {mapping.get('State')})")
    return mapping


# ------------------------------------------- step 4: the worker reports failures


def _wait_for_function(lambda_client: Any, name: str, delay: float) -> None:
    try:
        lambda_client.get_waiter("function_updated_v2").wait(
            FunctionName=name, WaiterConfig={"Delay": max(delay, 0.1), "MaxAttempts": 300}
        )
    except WaiterError as exc:
        raise DeployError(f"function {name} did not settle after an update: {exc}") from exc


def enable_partial_batch_flag(lambda_client: Any, name: str, *, poll: float = 1.0, out: Printer = say) -> None:
    """Adds DECLINES_PARTIAL_BATCH_RESPONSES=true to the worker's environment and reads it back.

    Call it only after ``enable_partial_batch_responses`` verified the subscription.
    """
    _wait_for_function(lambda_client, name, poll)  # chalice deploy's own update may still run
    config = lambda_client.get_function_configuration(FunctionName=name)
    variables = dict((config.get("Environment") or {}).get("Variables") or {})
    if variables.get(PARTIAL_BATCH_FLAG) == "true":
        out(f"    {name}: {PARTIAL_BATCH_FLAG}=true already set")
        return
    variables[PARTIAL_BATCH_FLAG] = "true"
    lambda_client.update_function_configuration(FunctionName=name, Environment={"Variables": variables})
    _wait_for_function(lambda_client, name, poll)
    back = lambda_client.get_function_configuration(FunctionName=name)
    if (back.get("Environment") or {}).get("Variables", {}).get(PARTIAL_BATCH_FLAG) != "true":
        raise DeployError(f"{name} does not read back {PARTIAL_BATCH_FLAG}=true")
    out(f"    verified: {PARTIAL_BATCH_FLAG}=true on {name}")


# ------------------------------------------ step 5: the stream's failure handling


def configure_stream_subscription(
    lambda_client: Any, deployed: dict[str, Any], outputs: dict[str, str], *, out: Printer = say
) -> dict[str, Any]:
    """Bisect, retries, record age and the on-failure queue on the stream mapping, read back
    (none to set when the app has no stream function)."""
    matches = [
        r
        for r in deployed.get("resources", [])
        if r.get("resource_type") == "dynamodb_event" and r.get("stream_arn") == outputs["TableStreamArn"]
    ]
    if not matches:  # an app without a stream function (the deploy tests' own)
        out(f"    no subscription to {outputs['TableStreamArn']} was deployed: nothing to set")
        return {}
    if len(matches) != 1 or not matches[0].get("event_uuid"):
        raise DeployError(f"expected one dynamodb_event on {outputs['TableStreamArn']}, found {len(matches)}")
    uuid = matches[0]["event_uuid"]
    settings = {
        k: v for k, v in STREAM_EVENT_SETTINGS.items() if k not in ("FunctionResponseTypes", "DestinationConfig")
    }
    destination = {"OnFailure": {"Destination": outputs["StreamFailuresQueueArn"]}}
    lambda_client.update_event_source_mapping(UUID=uuid, DestinationConfig=destination, **settings)
    mapping = lambda_client.get_event_source_mapping(UUID=uuid)
    wrong = {k: mapping.get(k) for k, v in settings.items() if mapping.get(k) != v}
    if (
        wrong
        or mapping.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        != (outputs["StreamFailuresQueueArn"])
    ):
        raise DeployError(f"the stream subscription {uuid} reads back {wrong or mapping.get('DestinationConfig')}")
    out(f"    verified: {', '.join(f'{k}={v}' for k, v in settings.items())} and the on-failure queue on {uuid}")
    return mapping


# -------------------------------------------------------------------- deploy


def deploy_via_chalice(
    stage: str,
    *,
    session: Any,
    parameters: dict[str, str] | None = None,
    run: Runner = run_command,
    project_dir: Path = ROOT,
    wait_delay: float = 5.0,
    out: Printer = say,
) -> str | None:
    env = require_deployable(stage, project_dir)
    step(out, f"target of stage {stage}")
    describe_target(session, out)
    params = dict(parameters or {})
    jwks_base = emulated_cognito_base(session)
    if jwks_base:
        params.setdefault("CognitoJwksBaseUrl", jwks_base)
    step(out, "pre-flight")
    preflight.run(
        stage,
        session=session,
        parameters=params,
        previous=preflight.previous_parameters(session.client("cloudformation"), resources_stack_name(stage)),
        jwks_base=jwks_base,
        project_dir=project_dir,
        out=out,
    )
    ensure_page_token_key(session.client("ssm"), stage, out=out)

    step(out, f"1/5 resources stack {resources_stack_name(stage)} from infra/resources.yaml + infra/identity.yaml")
    outputs = ensure_resources_stack(
        session.client("cloudformation"),
        session.client("dynamodb"),
        stage,
        parameters=params,
        wait_delay=wait_delay,
        out=out,
    )
    check_outputs_match_config(outputs, env)
    out(
        f"    table {outputs['TableName']}, queue {outputs['DeclinesQueueName']}, user pool {outputs.get('UserPoolId')}"
    )

    step(out, f"2/5 chalice deploy --stage {stage}")
    stage_env = {**auth_settings(outputs), "TABLE_STREAM_ARN": outputs["TableStreamArn"]}
    if outputs.get("MailSender"):  # the stack's identity; config.json names the same by default
        stage_env["MAIL_SENDER"] = outputs["MailSender"]
    run_chalice(run, "deploy", "--stage", stage, project_dir=project_dir, stage_env=stage_env)

    step(out, f"3/5 {PARTIAL_BATCH_RESPONSES} on the {WORKER_FUNCTION} subscription")
    deployed = load_deployed(stage, project_dir)
    uuid = worker_event_source_uuid(deployed, env["DECLINES_QUEUE_NAME"])
    lambda_client = session.client("lambda")
    enable_partial_batch_responses(lambda_client, uuid, out=out)

    step(out, f"4/5 {PARTIAL_BATCH_FLAG}=true on the {WORKER_FUNCTION} function")
    app_name = load_project_config(project_dir)["app_name"]
    enable_partial_batch_flag(lambda_client, function_name(app_name, stage, WORKER_FUNCTION), out=out)

    step(out, "5/5 failure settings of the table's stream subscription")
    configure_stream_subscription(lambda_client, deployed, outputs, out=out)

    url = api_url(deployed)
    step(out, f"stage {stage} deployed")
    out(f"    API: {url}" if url else "    API: (no rest_api in the deployed resources)")
    for key in ("UserPoolId", "AppClientId", "AdminClientId", "TableName", "DeclinesQueueUrl"):
        out(f"    {key}: {outputs.get(key)}")
    return url
