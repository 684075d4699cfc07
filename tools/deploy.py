"""Deploys a stage to AWS, packages it as CloudFormation, or deletes it.

    python -m tools.deploy deploy  --stage dev
    python -m tools.deploy package --stage prod [--out build/package-prod]
    python -m tools.deploy destroy --stage dev [--yes]

``deploy`` runs three steps and stops at the first one that fails:

1. the resources stack ``booking-resources-<stage>`` (table, declines queue, DLQ) from
   ``infra/resources.yaml``, created or updated, and checked against the stage's
   environment in ``.chalice/config.json``;
2. ``chalice deploy --stage <stage>`` (IAM roles, Lambda functions, API Gateway, the
   worker's SQS subscription);
3. ``FunctionResponseTypes=[ReportBatchItemFailures]`` on the worker's event source
   mapping, which Chalice cannot set itself, read back to verify it.

Every step is safe to repeat. boto3 and Chalice honour the usual credential, region
and endpoint settings (``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_<SERVICE>``...).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError, WaiterError
from chalice.config import Config

from tools.resources import TEMPLATE, load_template

PROJECT_DIR = Path(__file__).resolve().parent.parent
WORKER_FUNCTION = "decline_worker"
FUNCTIONS = ("api_handler", "token_authorizer", WORKER_FUNCTION)
PARTIAL_BATCH_RESPONSES = "ReportBatchItemFailures"
NOT_DEPLOYABLE = {"local"}  # served by `make local`, never deployed

# Runs a command (argv, extra environment) and returns its exit code.
Runner = Callable[[Sequence[str], dict[str, str]], int]
Printer = Callable[[str], None]


class DeployError(RuntimeError):
    """A step failed; the message says which and what to do."""


# ------------------------------------------------------------------ settings


def stack_name(stage: str) -> str:
    return f"booking-resources-{stage}"


def load_project_config(project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    path = project_dir / ".chalice" / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DeployError(f"cannot read {path}: {exc}") from exc


def chalice_config(stage: str, function: str = "api_handler", project_dir: Path = PROJECT_DIR) -> Config:
    """The stage's settings for one function, looked up exactly as Chalice does."""
    on_disk = load_project_config(project_dir)
    if stage not in on_disk.get("stages", {}):
        known = ", ".join(sorted(on_disk.get("stages", {})))
        raise DeployError(f"stage {stage!r} is not in .chalice/config.json (stages: {known})")
    return Config(
        chalice_stage=stage,
        function_name=function,
        config_from_disk=on_disk,
        default_params={"project_dir": str(project_dir), "autogen_policy": True},
    )


def stage_environment(stage: str, project_dir: Path = PROJECT_DIR) -> dict[str, str]:
    """The environment variables the stage's functions get (top level merged with the stage's)."""
    return dict(chalice_config(stage, project_dir=project_dir).environment_variables)


def function_name(app_name: str, stage: str, function: str) -> str:
    """The Lambda function name ``chalice deploy`` gives each function."""
    if function == "api_handler":
        return f"{app_name}-{stage}"
    return f"{app_name}-{stage}-{function}"


def require_deployable(stage: str, project_dir: Path = PROJECT_DIR) -> dict[str, str]:
    if stage in NOT_DEPLOYABLE:
        raise DeployError(f"stage {stage!r} is for the local stack (`make local`), not for AWS")
    env = stage_environment(stage, project_dir)
    for name in ("TABLE_NAME", "DECLINES_QUEUE_NAME"):
        if not env.get(name):
            raise DeployError(f"stage {stage!r} has no {name} in .chalice/config.json")
    return env


def _say(text: str) -> None:
    print(text, flush=True)


def _step(out: Printer, text: str) -> None:
    out(f"==> {text}")


def describe_target(session: Any, out: Printer = _say) -> dict[str, str]:
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


# ------------------------------------------------------ step 1: resources stack

_BUSY = ("_IN_PROGRESS",)
_UPDATABLE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE"}


def _stack(cfn: Any, name: str) -> dict[str, Any] | None:
    try:
        return cfn.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def _failure_reasons(cfn: Any, name: str, limit: int = 10) -> list[str]:
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


def _wait(cfn: Any, waiter: str, name: str, delay: float) -> None:
    try:
        cfn.get_waiter(waiter).wait(StackName=name, WaiterConfig={"Delay": delay, "MaxAttempts": int(3600 / delay)})
    except WaiterError as exc:
        stack = _stack(cfn, name)
        status = stack["StackStatus"] if stack else "gone"
        details = "\n    ".join(_failure_reasons(cfn, name)) or str(exc)
        raise DeployError(f"stack {name} ended in {status}:\n    {details}") from exc


def _retained_table_conflict(dynamodb: Any, table: str) -> bool:
    try:
        dynamodb.describe_table(TableName=table)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return False
        raise
    return True


def ensure_resources_stack(
    cfn: Any,
    dynamodb: Any,
    stage: str,
    *,
    template_path: Path = TEMPLATE,
    wait_delay: float = 5.0,
    out: Printer = _say,
) -> dict[str, str]:
    """Creates or updates ``booking-resources-<stage>``, waits, and returns its outputs."""
    name = stack_name(stage)
    body = template_path.read_text(encoding="utf-8")
    params = [{"ParameterKey": "Stage", "ParameterValue": stage}]
    tags = [{"Key": "app", "Value": "babysitting-booking"}, {"Key": "stage", "Value": stage}]
    stack = _stack(cfn, name)
    if stack and stack["StackStatus"] == "ROLLBACK_COMPLETE":
        # A create that failed and was rolled back holds nothing; it can only be deleted.
        out(f"    {name} is ROLLBACK_COMPLETE from a failed first create: deleting it before trying again")
        cfn.delete_stack(StackName=name)
        _wait(cfn, "stack_delete_complete", name, wait_delay)
        stack = None
    if stack is None:
        table = load_template(template_path)["Resources"]["Table"]["Properties"]["TableName"]["Fn::Sub"]
        table = table.replace("${Stage}", stage)
        if _retained_table_conflict(dynamodb, table):
            raise DeployError(
                f"table {table} already exists outside CloudFormation (kept by an earlier `destroy`, "
                "DeletionPolicy Retain). Delete it (aws dynamodb delete-table --table-name "
                f"{table}) or import it into a {name} stack, then deploy again."
            )
        out(f"    creating stack {name}")
        cfn.create_stack(StackName=name, TemplateBody=body, Parameters=params, Tags=tags)
        _wait(cfn, "stack_create_complete", name, wait_delay)
    else:
        status = stack["StackStatus"]
        if status.endswith(_BUSY):
            raise DeployError(f"stack {name} is busy ({status}); wait until it settles and run deploy again")
        if status not in _UPDATABLE:
            raise DeployError(
                f"stack {name} is in {status} and cannot be updated; fix it in the CloudFormation console"
            )
        out(f"    updating stack {name}")
        try:
            cfn.update_stack(StackName=name, TemplateBody=body, Parameters=params, Tags=tags)
        except ClientError as exc:
            if "No updates are to be performed" not in str(exc):
                raise DeployError(f"update of stack {name} refused: {exc}") from exc
            out("    no changes")
        else:
            _wait(cfn, "stack_update_complete", name, wait_delay)
    stack = _stack(cfn, name) or {}
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


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


# --------------------------------------------------------- step 2: chalice CLI


def chalice_command(*args: str, project_dir: Path = PROJECT_DIR) -> list[str]:
    exe = Path(sys.executable).with_name("chalice")
    program = str(exe) if exe.exists() else (shutil.which("chalice") or "chalice")
    return [program, "--project-dir", str(project_dir), *args]


def run_command(command: Sequence[str], extra_env: dict[str, str]) -> int:
    env = {**os.environ, **extra_env}
    return subprocess.run(list(command), env=env, check=False).returncode  # noqa: S603 - our own argv


def run_chalice(run: Runner, *args: str, project_dir: Path = PROJECT_DIR, extra_env: dict | None = None) -> None:
    command = chalice_command(*args, project_dir=project_dir)
    code = run(command, dict(extra_env or {}))
    if code != 0:
        raise DeployError(f"`chalice {' '.join(args)}` failed (exit {code}); its output is above")


# ------------------------------------------------ step 3: partial batch responses


def load_deployed(stage: str, project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
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
    out: Printer = _say,
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


# -------------------------------------------------------------------- deploy


def deploy(
    stage: str,
    *,
    session: Any = None,
    run: Runner = run_command,
    project_dir: Path = PROJECT_DIR,
    wait_delay: float = 5.0,
    out: Printer = _say,
) -> str | None:
    env = require_deployable(stage, project_dir)
    session = session or boto3.session.Session()
    _step(out, f"target of stage {stage}")
    describe_target(session, out)

    _step(out, f"1/3 resources stack {stack_name(stage)} from {TEMPLATE.relative_to(PROJECT_DIR)}")
    outputs = ensure_resources_stack(
        session.client("cloudformation"), session.client("dynamodb"), stage, wait_delay=wait_delay, out=out
    )
    check_outputs_match_config(outputs, env)
    out(f"    table {outputs['TableName']}, queue {outputs['DeclinesQueueName']}")

    _step(out, f"2/3 chalice deploy --stage {stage}")
    run_chalice(run, "deploy", "--stage", stage, project_dir=project_dir)

    _step(out, f"3/3 {PARTIAL_BATCH_RESPONSES} on the {WORKER_FUNCTION} subscription")
    deployed = load_deployed(stage, project_dir)
    uuid = worker_event_source_uuid(deployed, env["DECLINES_QUEUE_NAME"])
    enable_partial_batch_responses(session.client("lambda"), uuid, out=out)

    url = api_url(deployed)
    _step(out, f"stage {stage} deployed")
    out(f"    API: {url}" if url else "    API: (no rest_api in the deployed resources)")
    return url


# ------------------------------------------------------------------- package


def merge_template(stage: str, env: dict[str, str], app_name: str) -> dict[str, Any]:
    """What ``chalice package --merge-template`` adds to Chalice's SAM template.

    Dicts merge into Chalice's resources recursively; scalars and lists replace.
    """
    from chalice.package import to_cfn_resource_name

    resources_template = load_template(TEMPLATE)
    params = resources_template.get("Parameters", {})
    # The package is for one stage: names in the functions' environment are fixed.
    params["Stage"] = {**params["Stage"], "Default": stage, "AllowedValues": [stage]}
    worker = to_cfn_resource_name(WORKER_FUNCTION)
    event = to_cfn_resource_name(f"{WORKER_FUNCTION}-sqs-event-source")
    resources: dict[str, Any] = dict(resources_template["Resources"])
    resources[worker] = {
        # The subscription names the queue by ARN string: make the ordering explicit.
        "DependsOn": ["DeclinesQueue", "Table"],
        "Properties": {
            "FunctionName": function_name(app_name, stage, WORKER_FUNCTION),
            "Events": {event: {"Properties": {"FunctionResponseTypes": [PARTIAL_BATCH_RESPONSES]}}},
        },
    }
    # Same function names as `chalice deploy`, which the policies' log-group ARNs name.
    resources["APIHandler"] = {
        "DependsOn": ["DeclinesQueue", "Table"],
        "Properties": {"FunctionName": function_name(app_name, stage, "api_handler")},
    }
    resources[to_cfn_resource_name("token_authorizer")] = {
        "Properties": {"FunctionName": function_name(app_name, stage, "token_authorizer")}
    }
    # Chalice 1.34 names the API handler's log group after "ApiHandler", a resource that
    # does not exist (the function is "APIHandler"): point it at the real one.
    resources["ApiHandlerLogGroup"] = {"Properties": {"LogGroupName": {"Fn::Sub": "/aws/lambda/${APIHandler}"}}}
    return {
        "Parameters": params,
        "Resources": resources,
        "Outputs": resources_template.get("Outputs", {}),
    }


def check_packaged_template(template: dict[str, Any], env: dict[str, str]) -> None:
    from chalice.package import to_cfn_resource_name

    resources = template.get("Resources", {})
    worker = resources.get(to_cfn_resource_name(WORKER_FUNCTION), {})
    events = worker.get("Properties", {}).get("Events", {})
    sqs_events = [e for e in events.values() if e.get("Type") == "SQS"]
    if len(sqs_events) != 1:
        raise DeployError(f"the packaged worker has {len(sqs_events)} SQS events, expected 1: {sorted(events)}")
    props = sqs_events[0].get("Properties", {})
    if props.get("FunctionResponseTypes") != [PARTIAL_BATCH_RESPONSES]:
        raise DeployError(f"the packaged SQS event lacks FunctionResponseTypes: {props}")
    if not str(props.get("Queue", {}).get("Fn::Sub", "")).endswith(f":{env['DECLINES_QUEUE_NAME']}"):
        raise DeployError(f"the packaged SQS event does not read {env['DECLINES_QUEUE_NAME']}: {props.get('Queue')}")
    missing = [r for r in ("Table", "DeclinesQueue", "DeclinesDeadLetterQueue") if r not in resources]
    if missing:
        raise DeployError(f"the merge left out {missing}")
    dangling = [k for k, v in resources.items() if "Type" not in v]
    if dangling:
        raise DeployError(f"the merge created resources Chalice did not generate (renamed?): {dangling}")


def cfn_lint_command(template: Path) -> list[str]:
    exe = Path(sys.executable).with_name("cfn-lint")
    program = str(exe) if exe.exists() else (shutil.which("cfn-lint") or "cfn-lint")
    return [program, "--format", "json", str(template)]


def lint(template: Path, out: Printer = _say) -> tuple[list[dict], list[dict]]:
    """Runs cfn-lint; returns (errors, warnings and notes). Raises on errors."""
    try:
        proc = subprocess.run(cfn_lint_command(template), capture_output=True, text=True, check=False)  # noqa: S603
    except FileNotFoundError as exc:
        raise DeployError("cfn-lint is not installed (pip install cfn-lint)") from exc
    try:
        findings = json.loads(proc.stdout or "[]")
    except ValueError as exc:
        raise DeployError(f"cfn-lint failed (exit {proc.returncode}): {proc.stderr or proc.stdout}") from exc
    errors = [f for f in findings if f.get("Level") == "Error"]
    others = [f for f in findings if f.get("Level") != "Error"]
    for f in errors + others:
        path = "/".join(str(p) for p in f.get("Location", {}).get("Path", []))
        out(f"    {f.get('Level')} {f.get('Rule', {}).get('Id')} {path}: {f.get('Message')}")
    out(f"    cfn-lint: {len(errors)} errors, {len(others)} warnings/notes")
    if errors:
        raise DeployError(f"cfn-lint found {len(errors)} errors in {template}")
    return errors, others


def package(
    stage: str,
    out_dir: Path | None = None,
    *,
    run: Runner = run_command,
    project_dir: Path = PROJECT_DIR,
    out: Printer = _say,
) -> Path:
    """Writes ``sam.json`` + ``deployment.zip`` for one stage, with the resources merged in."""
    env = require_deployable(stage, project_dir)
    cfg = chalice_config(stage, project_dir=project_dir)
    out_dir = (out_dir or project_dir / "build" / f"package-{stage}").resolve()
    merge = merge_template(stage, env, cfg.app_name)
    _step(out, f"1/2 chalice package --stage {stage} {out_dir}")
    with tempfile.TemporaryDirectory() as tmp:
        merge_file = Path(tmp) / "merge.json"
        merge_file.write_text(json.dumps(merge, indent=2), encoding="utf-8")
        args = ["package", "--stage", stage, "--merge-template", str(merge_file), str(out_dir)]
        extra_env = {}
        if boto3.session.Session().region_name is None:
            # Chalice insists on a region although the SAM template only uses ${AWS::Region}.
            extra_env["AWS_DEFAULT_REGION"] = "us-east-1"
        if out_dir.exists():
            shutil.rmtree(out_dir)
        run_chalice(run, *args, project_dir=project_dir, extra_env=extra_env)
    sam = out_dir / "sam.json"
    try:
        template = json.loads(sam.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DeployError(f"chalice package wrote no readable {sam}: {exc}") from exc
    check_packaged_template(template, env)
    _step(out, "2/2 cfn-lint")
    lint(sam, out)
    out(f"    {sam}")
    out(
        f"    deploy with: aws cloudformation package --template-file {sam} --s3-bucket BUCKET "
        f"--output-template-file packaged.yaml && aws cloudformation deploy --template-file packaged.yaml "
        f"--stack-name booking-{stage} --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND"
    )
    return sam


# ------------------------------------------------------------------- destroy


def confirm(stage: str, ask: Callable[[str], str] = input) -> bool:
    try:
        answer = ask(
            f"This deletes stage {stage!r}: its API, functions and roles, and the queues with their messages.\n"
            f"Type the stage name to go on: "
        )
    except EOFError:
        return False
    return answer.strip() == stage


def delete_resources_stack(cfn: Any, stage: str, *, wait_delay: float = 5.0, out: Printer = _say) -> None:
    name = stack_name(stage)
    stack = _stack(cfn, name)
    if stack is None:
        out(f"    no stack {name}")
        return
    cfn.delete_stack(StackName=name)
    _wait(cfn, "stack_delete_complete", name, wait_delay)
    out(f"    deleted stack {name}")


def destroy(
    stage: str,
    *,
    yes: bool = False,
    session: Any = None,
    run: Runner = run_command,
    ask: Callable[[str], str] = input,
    project_dir: Path = PROJECT_DIR,
    wait_delay: float = 5.0,
    out: Printer = _say,
) -> None:
    env = require_deployable(stage, project_dir)
    if not yes and not confirm(stage, ask):
        raise DeployError("not confirmed; nothing was deleted")
    session = session or boto3.session.Session()
    _step(out, f"target of stage {stage}")
    describe_target(session, out)

    _step(out, f"1/2 chalice delete --stage {stage}")
    if (project_dir / ".chalice" / "deployed" / f"{stage}.json").exists():
        run_chalice(run, "delete", "--stage", stage, project_dir=project_dir)
    else:
        out(f"    nothing recorded in .chalice/deployed/{stage}.json: skipped")

    _step(out, f"2/2 resources stack {stack_name(stage)}")
    delete_resources_stack(session.client("cloudformation"), stage, wait_delay=wait_delay, out=out)
    out(
        f"    table {env['TABLE_NAME']} is kept (DeletionPolicy Retain) with its data. To delete it too: "
        f"aws dynamodb delete-table --table-name {env['TABLE_NAME']}"
    )


# ----------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.deploy", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("deploy", help="resources stack + chalice deploy + partial batch responses")
    p.add_argument("--stage", required=True)
    p = sub.add_parser("package", help="SAM template with the resources merged in, checked by cfn-lint")
    p.add_argument("--stage", required=True)
    p.add_argument("--out", type=Path, help="output directory (default build/package-<stage>)")
    p = sub.add_parser("destroy", help="chalice delete + delete the resources stack (the table is kept)")
    p.add_argument("--stage", required=True)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "deploy":
            deploy(args.stage)
        elif args.command == "package":
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
