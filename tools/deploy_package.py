"""``chalice package --merge-template``: one SAM template with the app, table, queues and identity.

The merge adds, to what Chalice generates: the resources of ``infra/resources.yaml`` and
``infra/identity.yaml``; ``FunctionResponseTypes: [ReportBatchItemFailures]`` on the
workers' SQS events together with ``DECLINES_PARTIAL_BATCH_RESPONSES=true`` on them
(the one flag is only safe with the other, so they travel in one template); the stream
subscription's table, failure settings (partial responses, bisect, retries, record age,
an on-failure queue) and its flag, a parameter because the emulated account does not
honour partial responses on streams; and the functions' ``AUTH_*`` settings, derived
from the user pool.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import boto3

from tools.deploy_chalice import Runner, run_chalice, run_command
from tools.deploy_settings import (
    APP_NAME,
    MAIL_FUNCTION,
    PARTIAL_BATCH_FLAG,
    PARTIAL_BATCH_RESPONSES,
    PROJECT_DIR,
    SCHEDULER_FUNCTION,
    STREAM_FUNCTION,
    STREAM_PARTIAL_BATCH_FLAG,
    WORKER_FUNCTION,
    DeployError,
    Printer,
    chalice_config,
    function_name,
    require_deployable,
    say,
    step,
)
from tools.resources import TEMPLATE, load_template

IDENTITY_TEMPLATE = PROJECT_DIR / "infra" / "identity.yaml"
OPERATIONS_TEMPLATE = PROJECT_DIR / "infra" / "operations.yaml"  # merges into Chalice's RestAPI: packaged only
# Function settings read from the identity template's outputs of the same name.
AUTH_SETTINGS = {"AUTH_ISSUER": "AuthIssuer", "AUTH_AUDIENCE": "AuthAudience", "AUTH_JWKS_URL": "AuthJwksUrl"}
# The packaged authorizer's handler (the chalice path keeps Chalice's app.token_authorizer).
LEAN_AUTHORIZER_HANDLER = "chalicelib.lambda_authorizer.handler"
# The packaged worker's handler (the chalice path keeps Chalice's app.decline_worker).
LEAN_WORKER_HANDLER = "chalicelib.lambda_worker.handler"
# The stream subscription's failure handling (Chalice cannot set any of it): a failing
# record is retried from itself on (partial responses), a failing batch is split until
# the poison record is alone (bisect), and none holds its shard longer than the retries or
# the record age allow before its position goes to the on-failure queue (alarmed).
STREAM_EVENT_SETTINGS: dict[str, Any] = {
    "FunctionResponseTypes": [PARTIAL_BATCH_RESPONSES],
    "BisectBatchOnFunctionError": True,
    "MaximumRetryAttempts": 5,
    "MaximumRecordAgeInSeconds": 3600,
    "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": ["StreamFailuresQueue", "Arn"]}}},
}
STREAM_PARTIAL_PARAMETER = "StreamPartialBatchResponses"
STREAM_PARTIAL_PARAMETER_SPEC: dict[str, Any] = {
    "Type": "String",
    "Default": "true",
    "AllowedValues": ["true", "false"],
    "Description": (
        "Whether the stream function reports failed records one by one. true on AWS, whose stream "
        "subscriptions honour the report; false on an emulator that does not (it would take a report "
        "for success and drop the failed records): the whole batch fails instead."
    ),
}


def infrastructure_template(stage: str | None = None) -> dict[str, Any]:
    """``infra/resources.yaml`` and ``infra/identity.yaml`` as one template (they share ``Stage``)."""
    parts = [load_template(TEMPLATE), load_template(IDENTITY_TEMPLATE)]
    parts += [load_template(OPERATIONS_TEMPLATE)] if stage else []
    combined: dict[str, Any] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Babysitting booking: table, declines queues and user pool",
    }
    for section in ("Parameters", "Conditions", "Resources", "Outputs"):
        merged: dict[str, Any] = {}
        for part in parts:
            clash = (set(merged) & set(part.get(section, {}))) - {"Stage"}
            if clash:
                raise DeployError(f"infra templates both define {section} {sorted(clash)}")
            merged.update(part.get(section, {}))
        combined[section] = merged
    if stage:
        combined["Parameters"][STREAM_PARTIAL_PARAMETER] = STREAM_PARTIAL_PARAMETER_SPEC
        # One stage per template: the names in the functions' environment are fixed.
        stage_param = combined["Parameters"]["Stage"]
        combined["Parameters"]["Stage"] = {**stage_param, "Default": stage, "AllowedValues": [stage]}
    return combined


def auth_environment(template: dict[str, Any]) -> dict[str, Any]:
    """The functions' AUTH_* values as the template's own output expressions (Fn::Sub on the pool)."""
    return {var: template["Outputs"][output]["Value"] for var, output in AUTH_SETTINGS.items()}


def merge_template(stage: str, env: dict[str, str], app_name: str = APP_NAME) -> dict[str, Any]:
    """What ``chalice package --merge-template`` adds to Chalice's SAM template.

    Dicts merge into Chalice's resources recursively; scalars and lists replace.
    """
    from chalice.package import to_cfn_resource_name

    infra = infrastructure_template(stage)
    auth = auth_environment(infra)
    worker = to_cfn_resource_name(WORKER_FUNCTION)
    event = to_cfn_resource_name(f"{WORKER_FUNCTION}-sqs-event-source")
    resources: dict[str, Any] = dict(infra["Resources"])
    resources[worker] = {
        # The subscription names the queue by ARN string: make the ordering explicit.
        "DependsOn": ["DeclinesQueue", "Table"],
        "Properties": {
            "FunctionName": function_name(app_name, stage, WORKER_FUNCTION),
            # A handler of its own: the worker's cold start imports neither Chalice nor the routes.
            "Handler": LEAN_WORKER_HANDLER,
            "Events": {event: {"Properties": {"FunctionResponseTypes": [PARTIAL_BATCH_RESPONSES]}}},
            # Safe only because the event above reports partial failures: same template, same update.
            "Environment": {"Variables": {**auth, PARTIAL_BATCH_FLAG: "true"}},
        },
    }
    # Same function names as `chalice deploy`, which the policies' log-group ARNs name.
    resources["APIHandler"] = {
        "DependsOn": ["DeclinesQueue", "Table"],
        "Properties": {
            "FunctionName": function_name(app_name, stage, "api_handler"),
            "Environment": {"Variables": auth},
        },
    }
    resources[to_cfn_resource_name("token_authorizer")] = {
        "Properties": {
            "FunctionName": function_name(app_name, stage, "token_authorizer"),
            # A handler of its own: the authorizer's cold start imports PyJWT, not app.py.
            "Handler": LEAN_AUTHORIZER_HANDLER,
            "Environment": {"Variables": auth},
        }
    }
    resources[to_cfn_resource_name(SCHEDULER_FUNCTION)] = {
        "DependsOn": ["DeclinesQueue", "Table"],
        "Properties": {"FunctionName": function_name(app_name, stage, SCHEDULER_FUNCTION)},
    }
    stream_event = to_cfn_resource_name(f"{STREAM_FUNCTION}-dynamodb-event-source")
    resources[to_cfn_resource_name(STREAM_FUNCTION)] = {
        "DependsOn": ["DeclinesQueue", "EventBus"],
        "Properties": {
            "FunctionName": function_name(app_name, stage, STREAM_FUNCTION),
            # The stream's ARN is known only once the table exists: the table's own.
            "Events": {
                stream_event: {
                    "Properties": {"Stream": {"Fn::GetAtt": ["Table", "StreamArn"]}, **STREAM_EVENT_SETTINGS}
                }
            },
            "Environment": {"Variables": {**auth, STREAM_PARTIAL_BATCH_FLAG: {"Ref": STREAM_PARTIAL_PARAMETER}}},
        },
    }
    mail_event = to_cfn_resource_name(f"{MAIL_FUNCTION}-sqs-event-source")
    resources[to_cfn_resource_name(MAIL_FUNCTION)] = {
        "DependsOn": ["NotificationsQueue", "Table"],
        "Properties": {
            "FunctionName": function_name(app_name, stage, MAIL_FUNCTION),
            "Events": {mail_event: {"Properties": {"FunctionResponseTypes": [PARTIAL_BATCH_RESPONSES]}}},
            # The sender is the stack's own identity (its domain is a parameter).
            "Environment": {
                "Variables": {**auth, PARTIAL_BATCH_FLAG: "true", "MAIL_SENDER": {"Ref": "MailSenderIdentity"}}
            },
        },
    }
    # Chalice 1.34 names the API handler's log group after "ApiHandler", a resource that
    # does not exist (the function is "APIHandler"): point it at the real one.
    resources["ApiHandlerLogGroup"] = {"Properties": {"LogGroupName": {"Fn::Sub": "/aws/lambda/${APIHandler}"}}}
    return {
        "Parameters": infra["Parameters"],
        "Conditions": infra["Conditions"],
        "Resources": resources,
        "Outputs": {
            **infra["Outputs"],
            "ApiStageName": {"Value": chalice_config(stage).api_gateway_stage},
        },
    }


def _sqs_events(function: dict[str, Any]) -> list[dict[str, Any]]:
    events = function.get("Properties", {}).get("Events", {})
    return [e for e in events.values() if e.get("Type") == "SQS"]


def partial_batch_mismatches(template: dict[str, Any]) -> list[str]:
    """Functions whose partial-batch flag and SQS subscriptions disagree (empty when safe).

    The flag may only be "true" on a function all of whose SQS events report partial
    failures; a function with such an event and without the flag is merely slower to retry.
    """
    wrong = []
    for name, resource in template.get("Resources", {}).items():
        if resource.get("Type") not in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            continue
        variables = resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
        flag = str(variables.get(PARTIAL_BATCH_FLAG, "")).lower() == "true"
        events = _sqs_events(resource)
        reporting = bool(events) and all(
            PARTIAL_BATCH_RESPONSES in (e.get("Properties", {}).get("FunctionResponseTypes") or []) for e in events
        )
        if flag != reporting:
            wrong.append(f"{name}: {PARTIAL_BATCH_FLAG}={flag} but SQS events report partial failures: {reporting}")
    return wrong


def check_packaged_template(template: dict[str, Any], env: dict[str, str]) -> None:
    from chalice.package import to_cfn_resource_name

    resources = template.get("Resources", {})
    sqs_events = _sqs_events(resources.get(to_cfn_resource_name(WORKER_FUNCTION), {}))
    if len(sqs_events) != 1:
        raise DeployError(f"the packaged worker has {len(sqs_events)} SQS events, expected 1")
    props = sqs_events[0].get("Properties", {})
    if props.get("FunctionResponseTypes") != [PARTIAL_BATCH_RESPONSES]:
        raise DeployError(f"the packaged SQS event lacks FunctionResponseTypes: {props}")
    if not str(props.get("Queue", {}).get("Fn::Sub", "")).endswith(f":{env['DECLINES_QUEUE_NAME']}"):
        raise DeployError(f"the packaged SQS event does not read {env['DECLINES_QUEUE_NAME']}: {props.get('Queue')}")
    mismatches = partial_batch_mismatches(template)
    if mismatches:
        raise DeployError("partial batch responses would be ignored: " + "; ".join(mismatches))
    stream_events = [
        e
        for e in resources.get(to_cfn_resource_name(STREAM_FUNCTION), {})
        .get("Properties", {})
        .get("Events", {})
        .values()
        if e.get("Type") == "DynamoDB"
    ]
    if len(stream_events) != 1:
        raise DeployError(f"the packaged stream function has {len(stream_events)} DynamoDB events, expected 1")
    stream_props = stream_events[0].get("Properties", {})
    wrong = {k: stream_props.get(k) for k, v in STREAM_EVENT_SETTINGS.items() if stream_props.get(k) != v}
    if stream_props.get("Stream") != {"Fn::GetAtt": ["Table", "StreamArn"]} or wrong:
        raise DeployError(
            f"the packaged stream subscription lacks its table or failure settings: {wrong or stream_props}"
        )
    missing = [r for r in ("Table", "DeclinesQueue", "DeclinesDeadLetterQueue", "UserPool") if r not in resources]
    if missing:
        raise DeployError(f"the merge left out {missing}")
    authorizer = resources.get(to_cfn_resource_name("token_authorizer"), {}).get("Properties", {})
    if authorizer.get("Handler") != LEAN_AUTHORIZER_HANDLER:
        raise DeployError(f"the packaged authorizer's Handler is {authorizer.get('Handler')!r}")
    worker_handler = resources.get(to_cfn_resource_name(WORKER_FUNCTION), {}).get("Properties", {}).get("Handler")
    if worker_handler != LEAN_WORKER_HANDLER:
        raise DeployError(f"the packaged worker's Handler is {worker_handler!r}")
    dangling = [k for k, v in resources.items() if "Type" not in v]
    if dangling:
        raise DeployError(f"the merge created resources Chalice did not generate (renamed?): {dangling}")


def optimise_zip(zip_path: Path, out: Printer = say) -> None:
    """Drops what the runtime provides and ships unchecked-hash bytecode (tools/lambda_zip.py).

    Runs before the zip's digest is taken for the upload, so an unchanged app still maps
    to the same object and an unchanged stack.
    """
    from tools import lambda_zip

    step(out, "optimise deployment.zip for cold starts")
    before = zip_path.stat().st_size
    done = lambda_zip.optimise(zip_path)
    if not lambda_zip.uses_unchecked_pycs(zip_path):
        raise DeployError(f"{zip_path} lacks unchecked-hash bytecode for some module after optimising it")
    out(
        f"    dropped {done['dropped_files']} runtime-provided files, compiled {done['compiled_modules']} modules; "
        f"{before / 1e6:.1f} MB -> {zip_path.stat().st_size / 1e6:.1f} MB"
    )


def cfn_lint_command(template: Path) -> list[str]:
    exe = Path(sys.executable).with_name("cfn-lint")
    program = str(exe) if exe.exists() else (shutil.which("cfn-lint") or "cfn-lint")
    return [program, "--format", "json", str(template)]


def lint(template: Path, out: Printer = say) -> tuple[list[dict], list[dict]]:
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
    out: Printer = say,
) -> Path:
    """Writes ``sam.json`` + ``deployment.zip`` for one stage, with the infrastructure merged in."""
    env = require_deployable(stage, project_dir)
    cfg = chalice_config(stage, project_dir=project_dir)
    out_dir = (out_dir or project_dir / "build" / f"package-{stage}").resolve()
    merge = merge_template(stage, env, cfg.app_name)
    step(out, f"chalice package --stage {stage} {out_dir}")
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
    optimise_zip(out_dir / "deployment.zip", out)
    step(out, "cfn-lint")
    lint(sam, out)
    out(f"    {sam}")
    return sam
