"""What ``chalice package --merge-template`` merges into its SAM template, and the checks of the result.

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

from typing import Any

from tools.deploy.settings import (
    APP_NAME,
    MAIL_FUNCTION,
    PARTIAL_BATCH_FLAG,
    PARTIAL_BATCH_RESPONSES,
    SCHEDULER_FUNCTION,
    STREAM_FUNCTION,
    STREAM_PARTIAL_BATCH_FLAG,
    WORKER_FUNCTION,
    DeployError,
    function_name,
)
from tools.resources import TEMPLATE, load_template
from tools.shared import ROOT, chalice_config

IDENTITY_TEMPLATE = ROOT / "infra" / "identity.yaml"
OPERATIONS_TEMPLATE = ROOT / "infra" / "operations.yaml"  # merges into Chalice's RestAPI: packaged only
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
