"""The stage settings in .chalice/config.json agree with infra/resources.yaml and with AWS's rules."""

from __future__ import annotations

import pytest

from tools.deploy.settings import FUNCTIONS, NOT_DEPLOYABLE, WORKER_FUNCTION
from tools.resources import load_template, parameters
from tools.shared import ROOT, chalice_config, load_project_config, stage_environment

STAGES = ("dev", "prod")


def _resolve_name(spec: dict, stage: str) -> str:
    return spec["QueueName"]["Fn::Sub"].replace("${Stage}", stage)


@pytest.mark.parametrize("stage", STAGES)
def test_the_stage_names_the_template_s_table_and_queue(stage: str) -> None:
    template = load_template()["Resources"]
    env = stage_environment(stage)
    assert env["TABLE_NAME"] == template["Table"]["Properties"]["TableName"]["Fn::Sub"].replace("${Stage}", stage)
    assert env["DECLINES_QUEUE_NAME"] == _resolve_name(template["DeclinesQueue"]["Properties"], stage)


@pytest.mark.parametrize("stage", STAGES)
def test_the_worker_cannot_outrun_its_reserved_concurrency(stage: str) -> None:
    # The event source scales to DECLINES_MAX_CONCURRENCY (app.py's maximum_concurrency);
    # reserving as much keeps that capacity and caps the table's write load.
    worker = chalice_config(stage, WORKER_FUNCTION)
    maximum = int(stage_environment(stage)["DECLINES_MAX_CONCURRENCY"])
    assert 2 <= maximum <= 1000  # Lambda's bounds for an SQS event source's MaximumConcurrency
    assert worker.reserved_concurrency == maximum


@pytest.mark.parametrize("stage", STAGES)
def test_the_queue_hides_a_message_for_six_worker_timeouts(stage: str) -> None:
    visibility = parameters(load_template())["DeclinesVisibilityTimeoutSeconds"]
    assert visibility >= 6 * chalice_config(stage, WORKER_FUNCTION).lambda_timeout


@pytest.mark.parametrize("stage", STAGES)
def test_every_function_has_memory_timeout_and_a_policy_file(stage: str) -> None:
    for function in FUNCTIONS:
        cfg = chalice_config(stage, function)
        assert cfg.lambda_memory_size and cfg.lambda_timeout, function
        assert cfg.iam_policy_file == f"policy-{stage}-{_short(function)}.json"
        assert cfg.autogen_policy is False
    # API Gateway gives up on an integration after 29 s.
    assert chalice_config(stage, "api_handler").lambda_timeout < 29
    assert chalice_config(stage, "token_authorizer").lambda_timeout < 29


def _short(function: str) -> str:
    return {
        "api_handler": "api",
        "token_authorizer": "authorizer",
        "decline_worker": "worker",
        "settle_due_jobs": "scheduler",
        "table_stream": "stream",
        "mail_worker": "mail",
    }[function]


def test_no_deployed_stage_reports_partial_failures_by_configuration() -> None:
    # Plain `chalice deploy` applies config.json alone, and leaves the subscription without
    # ReportBatchItemFailures: a worker told to report partial failures there would have its
    # failed declines deleted. Only a deploy path that set and verified the subscription sets
    # the flag (tools/deploy/templates.py, tools/deploy/via_chalice.py).
    config = load_project_config()
    for stage in config["stages"]:
        if stage in NOT_DEPLOYABLE:
            continue
        for function in FUNCTIONS:
            assert "DECLINES_PARTIAL_BATCH_RESPONSES" not in stage_environment(stage, function=function), stage
    assert "DECLINES_PARTIAL_BATCH_RESPONSES" not in config.get("environment_variables", {})


def test_config_holds_no_identity_placeholders() -> None:
    # The functions' AUTH_* come from the stage's user pool at deploy time.
    text = (ROOT / ".chalice" / "config.json").read_text()
    for placeholder in ("REGION", "USER_POOL_ID", "APP_CLIENT_ID"):
        assert placeholder not in text
    for stage in STAGES:
        assert not {"AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_JWKS_URL"} & set(stage_environment(stage))
