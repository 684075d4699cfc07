"""`make package`: Chalice's SAM template with the resources merged in, clean under cfn-lint.

Runs the real `chalice package` (it builds the deployment zip with the Lambda
requirements, a few seconds with pip's cache) and the real cfn-lint.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest

from tools.deploy import cli, package, templates
from tools.deploy.settings import DeployError
from tools.shared import ROOT, stage_environment


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[str]]:
    out = tmp_path_factory.mktemp("package") / "package-prod"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["package", "--stage", "prod", "--out", str(out)]) == 0
    assert (out / "deployment.zip").stat().st_size > 1_000_000
    return json.loads((out / "sam.json").read_text()), printed.getvalue().splitlines()


def test_package_passes_cfn_lint_without_errors(packaged: tuple[dict, list[str]]) -> None:
    _, lines = packaged
    assert "    cfn-lint: 0 errors, 0 warnings/notes" in lines


def test_package_subscribes_the_worker_with_partial_batch_responses(packaged: tuple[dict, list[str]]) -> None:
    template, _ = packaged
    worker = template["Resources"]["DeclineWorker"]
    (event,) = worker["Properties"]["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["Properties"]["ScalingConfig"] == {"MaximumConcurrency": 10}
    assert event["Properties"]["Queue"] == {
        "Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:booking-declines-prod"
    }
    assert worker["Properties"]["ReservedConcurrentExecutions"] == 10
    assert "DeclinesQueue" in worker["DependsOn"]


def test_package_contains_the_resources_template(packaged: tuple[dict, list[str]]) -> None:
    template, _ = packaged
    resources = templates.infrastructure_template()["Resources"]
    for logical, spec in resources.items():
        assert template["Resources"][logical] == spec
    assert template["Resources"]["Table"]["DeletionPolicy"] == "Retain"
    assert template["Parameters"]["Stage"]["Default"] == "prod"
    assert template["Parameters"]["Stage"]["AllowedValues"] == ["prod"]
    expected = {"TableName", "DeclinesQueueUrl", "DeclinesDeadLetterQueueUrl", "EndpointURL", "RestAPIId"}
    assert expected | {"UserPoolId", "AppClientId", "AdminClientId", "ApiStageName"} <= set(template["Outputs"])


def test_package_names_the_functions_as_chalice_deploy_does(packaged: tuple[dict, list[str]]) -> None:
    # The policies scope their log groups by these names.
    template, _ = packaged
    names = {
        k: v["Properties"].get("FunctionName") for k, v in template["Resources"].items() if "Function" in v["Type"]
    }
    assert names == {
        "APIHandler": "babysitting-booking-prod",
        "TokenAuthorizer": "babysitting-booking-prod-token_authorizer",
        "DeclineWorker": "babysitting-booking-prod-decline_worker",
        "SettleDueJobs": "babysitting-booking-prod-settle_due_jobs",
        "TableStream": "babysitting-booking-prod-table_stream",
        "MailWorker": "babysitting-booking-prod-mail_worker",
    }
    log_groups = {
        k: v["Properties"]["LogGroupName"] for k, v in template["Resources"].items() if k.endswith("LogGroup")
    }
    assert log_groups["ApiHandlerLogGroup"] == {"Fn::Sub": "/aws/lambda/${APIHandler}"}


def test_package_roles_carry_the_stage_policies(packaged: tuple[dict, list[str]]) -> None:
    template, _ = packaged
    root = ROOT / ".chalice"
    for role, policy_file in (
        ("ApiHandlerRole", "policy-prod-api.json"),
        ("TokenAuthorizerRole", "policy-prod-authorizer.json"),
        ("DeclineWorkerRole", "policy-prod-worker.json"),
        ("SettleDueJobsRole", "policy-prod-scheduler.json"),
        ("TableStreamRole", "policy-prod-stream.json"),
        ("MailWorkerRole", "policy-prod-mail.json"),
    ):
        (policy,) = template["Resources"][role]["Properties"]["Policies"]
        assert policy["PolicyDocument"] == json.loads((root / policy_file).read_text())


def test_lint_fails_on_an_invalid_template(tmp_path: Path) -> None:
    # What Chalice 1.34 generates for the API handler's log group, uncorrected.
    bad = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "ApiHandlerLogGroup": {
                "Type": "AWS::Logs::LogGroup",
                "Properties": {"LogGroupName": {"Fn::Sub": "/aws/lambda/${ApiHandler}"}, "RetentionInDays": 14},
            }
        },
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(DeployError, match="cfn-lint found"):
        package.lint(path, out=lambda _: None)


def test_partial_batch_flag_and_subscription_travel_together(packaged: tuple[dict, list[str]]) -> None:
    # The worker reports partial failures ("true") exactly where its SQS event has
    # FunctionResponseTypes; every other function has neither.
    template, _ = packaged
    flags = {
        name: r["Properties"]["Environment"]["Variables"].get("DECLINES_PARTIAL_BATCH_RESPONSES")
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
    }
    assert flags == {
        "APIHandler": None,
        "TokenAuthorizer": None,
        "DeclineWorker": "true",
        "SettleDueJobs": None,
        "TableStream": None,
        "MailWorker": "true",
    }
    assert templates.partial_batch_mismatches(template) == []
    # The stream function's flag is the stack's parameter: false where streams are emulated.
    stream = template["Resources"]["TableStream"]["Properties"]
    assert stream["Environment"]["Variables"]["STREAM_PARTIAL_BATCH_RESPONSES"] == {
        "Ref": "StreamPartialBatchResponses"
    }
    event = stream["Events"]["TableStreamDynamodbEventSource"]["Properties"]
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["BisectBatchOnFunctionError"] is True
    assert event["Stream"] == {"Fn::GetAtt": ["Table", "StreamArn"]}
    assert event["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["StreamFailuresQueue", "Arn"]}
    assert event["MaximumRetryAttempts"] > 0 and event["MaximumRecordAgeInSeconds"] <= 24 * 3600


def test_a_flag_without_its_subscription_setting_fails_the_package(packaged: tuple[dict, list[str]]) -> None:
    template, _ = packaged
    broken = copy.deepcopy(template)
    (event,) = broken["Resources"]["DeclineWorker"]["Properties"]["Events"].values()
    del event["Properties"]["FunctionResponseTypes"]
    assert templates.partial_batch_mismatches(broken) == [
        "DeclineWorker: DECLINES_PARTIAL_BATCH_RESPONSES=True but SQS events report partial failures: False"
    ]
    env = stage_environment("prod")
    with pytest.raises(DeployError, match="FunctionResponseTypes"):
        templates.check_packaged_template(broken, env)
    flag_only = copy.deepcopy(template)
    flag_only["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"][
        "DECLINES_PARTIAL_BATCH_RESPONSES"
    ] = "true"
    with pytest.raises(DeployError, match="APIHandler"):
        templates.check_packaged_template(flag_only, env)


def test_the_functions_verify_tokens_of_the_stage_s_pool(packaged: tuple[dict, list[str]]) -> None:
    template, _ = packaged
    outputs = template["Outputs"]
    for name in ("APIHandler", "TokenAuthorizer", "DeclineWorker"):
        variables = template["Resources"][name]["Properties"]["Environment"]["Variables"]
        assert variables["AUTH_ISSUER"] == outputs["AuthIssuer"]["Value"]
        assert variables["AUTH_AUDIENCE"] == outputs["AuthAudience"]["Value"]
        assert variables["AUTH_JWKS_URL"] == outputs["AuthJwksUrl"]["Value"]
    issuer = outputs["AuthIssuer"]["Value"]["Fn::Sub"]
    assert issuer[0] == "https://cognito-idp.${AWS::Region}.amazonaws.com/${PoolId}"
    assert issuer[1]["PoolId"] == {"Fn::If": ["CreateUserPool", {"Ref": "UserPool"}, {"Ref": "ExistingUserPoolId"}]}
    jwks = outputs["AuthJwksUrl"]["Value"]["Fn::Sub"][1]["Base"]
    assert jwks == {
        "Fn::If": [
            "AwsJwks",
            {"Fn::Sub": "https://cognito-idp.${AWS::Region}.amazonaws.com"},
            {"Ref": "CognitoJwksBaseUrl"},
        ]
    }


def test_the_stage_gets_its_pool_groups_and_clients(packaged: tuple[dict, list[str]]) -> None:
    template, _ = packaged
    resources, params = template["Resources"], template["Parameters"]
    assert {params[p]["Default"] for p in ("ExistingUserPoolId", "ExistingAppClientId", "CognitoJwksBaseUrl")} == {""}
    assert resources["UserPool"]["Condition"] == "CreateUserPool"
    groups = {r["Properties"]["GroupName"] for r in resources.values() if r["Type"] == "AWS::Cognito::UserPoolGroup"}
    assert groups == {"parents", "nannies"}
    app, admin = resources["AppClient"]["Properties"], resources["AdminClient"]["Properties"]
    assert app["ExplicitAuthFlows"] == ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
    assert app["GenerateSecret"] is False
    assert resources["AppClient"]["Condition"] == "CreateAppClient"
    assert "ALLOW_ADMIN_USER_PASSWORD_AUTH" in admin["ExplicitAuthFlows"]
    assert "ALLOW_ADMIN_USER_PASSWORD_AUTH" not in app["ExplicitAuthFlows"]


def test_the_merge_only_touches_resources_chalice_generates() -> None:
    merge = templates.merge_template("dev", stage_environment("dev"), "babysitting-booking")
    # infra/*.yaml's own resources have a Type; infra/operations.yaml's RestAPI entry only
    # adds properties to Chalice's API.
    own = {k for k, v in templates.infrastructure_template("dev")["Resources"].items() if "Type" in v}
    touched = set(merge["Resources"]) - own
    assert touched == {
        "DeclineWorker",
        "APIHandler",
        "TokenAuthorizer",
        "SettleDueJobs",
        "ApiHandlerLogGroup",
        "RestAPI",
        "TableStream",
        "MailWorker",
    }
    events = merge["Resources"]["DeclineWorker"]["Properties"]["Events"]
    assert events == {
        "DeclineWorkerSqsEventSource": {"Properties": {"FunctionResponseTypes": ["ReportBatchItemFailures"]}}
    }


def test_the_authorizer_and_the_worker_run_their_own_lean_handlers(packaged: tuple[dict, list[str]]) -> None:
    template, _ = packaged
    resources = template["Resources"]
    assert resources["TokenAuthorizer"]["Properties"]["Handler"] == "chalicelib.lambda_authorizer.handler"
    assert resources["APIHandler"]["Properties"]["Handler"] == "app.app"
    assert resources["DeclineWorker"]["Properties"]["Handler"] == "chalicelib.lambda_worker.handler"
    broken = copy.deepcopy(template)
    broken["Resources"]["TokenAuthorizer"]["Properties"]["Handler"] = "app.token_authorizer"
    with pytest.raises(DeployError, match="authorizer's Handler"):
        templates.check_packaged_template(broken, stage_environment("prod"))
    broken = copy.deepcopy(template)
    broken["Resources"]["DeclineWorker"]["Properties"]["Handler"] = "app.decline_worker"
    with pytest.raises(DeployError, match="worker's Handler"):
        templates.check_packaged_template(broken, stage_environment("prod"))


def test_the_zip_ships_unchecked_bytecode_and_no_runtime_provided_botocore(packaged: tuple[dict, list[str]]) -> None:
    import zipfile

    from tools.deploy import lambda_zip

    template, printed = packaged
    zip_path = Path(template["Resources"]["APIHandler"]["Properties"]["CodeUri"]).with_name("deployment.zip")
    if not zip_path.is_absolute():  # chalice writes a path relative to the template
        zip_path = Path(next(line.strip() for line in printed if line.strip().endswith("sam.json"))).with_name(
            "deployment.zip"
        )
    assert lambda_zip.uses_unchecked_pycs(zip_path)
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
    assert not [n for n in names if n.startswith(("botocore/", "boto3/"))]
    assert "chalicelib/__pycache__/lambda_authorizer.cpython-311.pyc" in names
    assert "chalicelib/__pycache__/lambda_worker.cpython-311.pyc" in names
    assert any("runtime-provided files, compiled" in line for line in printed)


def test_only_the_api_reads_the_page_token_key(packaged: tuple[dict, list[str]]) -> None:
    template, _ = packaged
    resources = template["Resources"]
    for logical in ("APIHandler", "TokenAuthorizer", "DeclineWorker"):
        variables = resources[logical]["Properties"]["Environment"]["Variables"]
        expected = "/booking/prod/page-token-secret" if logical == "APIHandler" else None
        assert variables.get("PAGE_TOKEN_SECRET_PARAMETER") == expected, logical
        assert "PAGE_TOKEN_SECRET" not in variables
    granted = [
        (statement["Action"], statement["Resource"])
        for resource in resources.values()
        if resource["Type"] == "AWS::IAM::Role"
        for policy in resource["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
        if any(action.startswith(("ssm:", "kms:")) for action in statement["Action"])
    ]
    assert granted == [(["ssm:GetParameter"], ["arn:aws:ssm:*:*:parameter/booking/prod/page-token-secret"])]
