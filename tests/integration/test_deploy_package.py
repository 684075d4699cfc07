"""`make package`: Chalice's SAM template with the resources merged in, clean under cfn-lint.

Runs the real `chalice package` (it builds the deployment zip with the Lambda
requirements, a few seconds with pip's cache) and the real cfn-lint.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from tools import deploy
from tools.resources import load_template


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[str]]:
    out = tmp_path_factory.mktemp("package") / "package-prod"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert deploy.main(["package", "--stage", "prod", "--out", str(out)]) == 0
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
    resources = load_template()["Resources"]
    for logical, spec in resources.items():
        assert template["Resources"][logical] == spec
    assert template["Resources"]["Table"]["DeletionPolicy"] == "Retain"
    assert template["Parameters"]["Stage"]["Default"] == "prod"
    assert template["Parameters"]["Stage"]["AllowedValues"] == ["prod"]
    assert {"TableName", "DeclinesQueueUrl", "DeclinesDeadLetterQueueUrl", "EndpointURL"} <= set(template["Outputs"])


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
    }
    log_groups = {
        k: v["Properties"]["LogGroupName"] for k, v in template["Resources"].items() if k.endswith("LogGroup")
    }
    assert log_groups["ApiHandlerLogGroup"] == {"Fn::Sub": "/aws/lambda/${APIHandler}"}


def test_package_roles_carry_the_stage_policies(packaged: tuple[dict, list[str]]) -> None:
    template, _ = packaged
    root = Path(deploy.PROJECT_DIR) / ".chalice"
    for role, policy_file in (
        ("ApiHandlerRole", "policy-prod-api.json"),
        ("TokenAuthorizerRole", "policy-prod-authorizer.json"),
        ("DeclineWorkerRole", "policy-prod-worker.json"),
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
    with pytest.raises(deploy.DeployError, match="cfn-lint found"):
        deploy.lint(path, out=lambda _: None)


def test_the_merge_only_touches_resources_chalice_generates() -> None:
    merge = deploy.merge_template("dev", deploy.stage_environment("dev"), "babysitting-booking")
    own = set(load_template()["Resources"])
    touched = set(merge["Resources"]) - own
    assert touched == {"DeclineWorker", "APIHandler", "TokenAuthorizer", "ApiHandlerLogGroup"}
    events = merge["Resources"]["DeclineWorker"]["Properties"]["Events"]
    assert events == {
        "DeclineWorkerSqsEventSource": {"Properties": {"FunctionResponseTypes": ["ReportBatchItemFailures"]}}
    }
