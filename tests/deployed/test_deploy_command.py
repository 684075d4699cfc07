"""`make deploy` into the emulated account: one stack, its outputs, and a second run in place."""

from __future__ import annotations

import json

from tests.deployed.stage import FIGURES, STAGE, VISIBILITY_SECONDS, Deployment, packaged_template, run_make_deploy
from tools.deploy.templates import partial_batch_mismatches

FUNCTIONS = {
    "APIHandler": "babysitting-booking-dev",
    "TokenAuthorizer": "babysitting-booking-dev-token_authorizer",
    "DeclineWorker": "babysitting-booking-dev-decline_worker",
}


def test_one_stack_names_everything_a_client_needs(deployment: Deployment) -> None:
    outputs = deployment.outputs
    for key in ("EndpointURL", "RestAPIId", "UserPoolId", "AppClientId", "AdminClientId", "TableName"):
        assert outputs.get(key), key
    assert outputs["TableName"] == f"booking-{STAGE}"
    assert outputs["DeclinesQueueUrl"].endswith(f"/booking-declines-{STAGE}")
    assert outputs["DeclinesDeadLetterQueueUrl"].endswith(f"/booking-declines-dlq-{STAGE}")
    assert outputs["AuthIssuer"] == f"https://cognito-idp.us-east-1.amazonaws.com/{outputs['UserPoolId']}"
    # The deploy saw the emulator's endpoint and pointed the JWKS at it.
    assert outputs["AuthJwksUrl"] == f"{deployment.endpoint}/{outputs['UserPoolId']}/.well-known/jwks.json"
    for key in ("RestAPIId", "UserPoolId", "AppClientId", "TableName", "DeclinesQueueUrl"):
        assert outputs[key] in deployment.first.output, key
    stacks = deployment.client("cloudformation").list_stacks(StackStatusFilter=["CREATE_COMPLETE", "UPDATE_COMPLETE"])
    assert [s["StackName"] for s in stacks["StackSummaries"]] == [f"booking-{STAGE}"]


def test_the_pool_has_the_groups_and_the_two_clients(deployment: Deployment) -> None:
    idp, pool = deployment.client("cognito-idp"), deployment.outputs["UserPoolId"]
    assert {g["GroupName"] for g in idp.list_groups(UserPoolId=pool)["Groups"]} == {"parents", "nannies"}
    app = idp.describe_user_pool_client(UserPoolId=pool, ClientId=deployment.outputs["AppClientId"])["UserPoolClient"]
    assert sorted(app["ExplicitAuthFlows"]) == ["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_SRP_AUTH"]
    assert not app.get("ClientSecret")
    admin = idp.describe_user_pool_client(UserPoolId=pool, ClientId=deployment.outputs["AdminClientId"])
    assert "ALLOW_ADMIN_USER_PASSWORD_AUTH" in admin["UserPoolClient"]["ExplicitAuthFlows"]


def test_the_worker_reports_partial_failures_only_to_a_subscription_that_honours_them(deployment: Deployment) -> None:
    lam = deployment.client("lambda")
    (mapping,) = lam.list_event_source_mappings(FunctionName=FUNCTIONS["DeclineWorker"])["EventSourceMappings"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["EventSourceArn"].endswith(f":booking-declines-{STAGE}")
    for logical, name in FUNCTIONS.items():
        variables = lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
        assert variables.get("DECLINES_PARTIAL_BATCH_RESPONSES") == ("true" if logical == "DeclineWorker" else None)
        assert variables["AUTH_ISSUER"] == deployment.outputs["AuthIssuer"]
    assert partial_batch_mismatches(packaged_template(deployment)) == []


def test_the_queue_takes_the_parameter_override(deployment: Deployment) -> None:
    sqs = deployment.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=deployment.outputs["DeclinesQueueUrl"], AttributeNames=["All"])
    assert attributes["Attributes"]["VisibilityTimeout"] == str(VISIBILITY_SECONDS)
    assert json.loads(attributes["Attributes"]["RedrivePolicy"])["maxReceiveCount"] == 5


def test_a_second_deploy_from_elsewhere_changes_nothing(deployment: Deployment, tmp_path) -> None:
    # Given the stage deployed; when deploy runs again with nothing but CloudFormation's state
    # (another build directory, no parameters given)
    run = run_make_deploy(deployment.endpoint, tmp_path / "package-again", smoke=False)
    FIGURES.append(f"second make deploy: {run.seconds:.1f} s")

    # Then it updates the same stack in place, which has nothing to do, and keeps the parameters
    assert run.returncode == 0, run.output
    assert "updating stack booking-dev" in run.output
    assert "creating stack" not in run.output
    assert "smoke test of stage" not in run.output  # SMOKE=0
    assert "page-token key /booking/dev/page-token-secret: exists, kept" in run.output
    if "(already uploaded)" in run.output:
        # The same code (the working tree may have changed meanwhile): nothing for CloudFormation to do.
        assert "no changes" in run.output, run.output
    stack = deployment.client("cloudformation").describe_stacks(StackName=f"booking-{STAGE}")["Stacks"][0]
    assert {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]} == deployment.outputs
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert params["DeclinesVisibilityTimeoutSeconds"] == str(VISIBILITY_SECONDS)


def test_the_first_deploy_ran_pre_flight_and_ended_with_a_passing_smoke_test(deployment: Deployment) -> None:
    output = deployment.first.output
    assert "pre-flight: configuration, parameters, user pool and concurrency OK" in output
    assert "page-token key /booking/dev/page-token-secret: created" in output
    assert "dropped" in output and "compiled" in output  # the zip, optimised before its digest
    assert "smoke test of stage dev" in output
    for step in ("no token -> 401", "forged token -> 403", "book", "declines applied", "page with nextToken"):
        assert any(line.startswith(step) and " ok " in line for line in output.splitlines()), step
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("step "))
    end = next(i for i, line in enumerate(lines) if line.startswith("delete ") and i > start)
    FIGURES.extend(["smoke test in the first make deploy:", *lines[start : end + 1]])
