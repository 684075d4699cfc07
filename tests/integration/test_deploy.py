"""The `chalice deploy` path (`deploy --via chalice`), step by step against moto, and as a
whole against a moto server.

A full `chalice deploy` of this app cannot run on moto (its API Gateway import takes
OpenAPI 3 only, Chalice sends Swagger 2) nor on MiniStack (README: emulator
differences): the steps around it are tested here with moto's CloudFormation and Lambda,
and the whole command runs against a moto server for an app with the worker only.
moto's CloudFormation creates no Cognito resources, so the pool's outputs are stubbed
(`pool_outputs`); the packaged path's identity runs for real in tests/deployed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.fakes.aws_session import FakeSession, RecordingLambda
from tests.fakes.chalice_cli import FakeChalice, deployed_resources, worker_subscription
from tools.deploy import cfn_stack, chalice_cli, destroy, preflight, settings, via_chalice
from tools.deploy.settings import DeployError
from tools.resources import load_template
from tools.shared import stage_environment

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SQS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture(autouse=True)
def concurrency_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto has no GetAccountSettings; the pre-flight's concurrency check has tests of its own."""
    monkeypatch.setattr(preflight, "concurrency_problems", lambda *args, **kwargs: [])


@pytest.fixture
def moto(env: None) -> Iterator[boto3.session.Session]:
    with mock_aws():
        yield boto3.session.Session(region_name=REGION)


POOL = "us-east-1_Example1"
AUTH = {
    "AUTH_ISSUER": f"https://cognito-idp.us-east-1.amazonaws.com/{POOL}",
    "AUTH_AUDIENCE": "appclient,adminclient",
    "AUTH_JWKS_URL": f"https://cognito-idp.us-east-1.amazonaws.com/{POOL}/.well-known/jwks.json",
}


@pytest.fixture
def pool_outputs(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The identity outputs moto's CloudFormation leaves out (it has no AWS::Cognito::* resources)."""
    monkeypatch.setattr(via_chalice, "auth_settings", lambda outputs: dict(AUTH))
    return AUTH


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's Chalice settings, so the tests can write .chalice/deployed."""
    (tmp_path / ".chalice").mkdir()
    for path in (ROOT / ".chalice").glob("*.json"):
        shutil.copy(path, tmp_path / ".chalice" / path.name)
    return tmp_path


def _quiet(_: str) -> None:
    return None


# ----------------------------------------------------------- resources stack


def _template_resource(logical: str) -> dict[str, Any]:
    return load_template()["Resources"][logical]["Properties"]


def test_resources_stack_creates_exactly_what_the_template_says(moto: boto3.session.Session) -> None:
    outputs = via_chalice.ensure_resources_stack(
        moto.client("cloudformation"), moto.client("dynamodb"), "dev", wait_delay=0.1, out=_quiet
    )

    via_chalice.check_outputs_match_config(outputs, stage_environment("dev"))
    table = moto.client("dynamodb").describe_table(TableName="booking-dev")["Table"]
    spec = _template_resource("Table")
    assert table["KeySchema"] == spec["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(spec["AttributeDefinitions"], key=str)
    assert table["BillingModeSummary"]["BillingMode"] == spec["BillingMode"] == "PAY_PER_REQUEST"
    assert {g["IndexName"]: (g["KeySchema"], g["Projection"]) for g in table["GlobalSecondaryIndexes"]} == {
        g["IndexName"]: (g["KeySchema"], g["Projection"]) for g in spec["GlobalSecondaryIndexes"]
    }
    assert {g["IndexName"] for g in table["GlobalSecondaryIndexes"]} == {
        "jobApplications",
        "applicantApplications",
        "openJobs",
        "dueJobs",
    }
    # moto's CloudFormation ignores these two; the template must still ask for them.
    assert spec["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert spec["SSESpecification"] == {"SSEEnabled": True}

    sqs = moto.client("sqs")
    queue = sqs.get_queue_attributes(QueueUrl=outputs["DeclinesQueueUrl"], AttributeNames=["All"])["Attributes"]
    dlq = sqs.get_queue_attributes(QueueUrl=outputs["DeclinesDeadLetterQueueUrl"], AttributeNames=["All"])["Attributes"]
    queue_spec, dlq_spec = _template_resource("DeclinesQueue"), _template_resource("DeclinesDeadLetterQueue")
    assert queue["VisibilityTimeout"] == "180"  # the Stage-independent parameter default
    assert queue["MessageRetentionPeriod"] == str(queue_spec["MessageRetentionPeriod"])
    assert queue["ReceiveMessageWaitTimeSeconds"] == str(queue_spec["ReceiveMessageWaitTimeSeconds"]) == "20"
    assert json.loads(queue["RedrivePolicy"]) == {
        "deadLetterTargetArn": outputs["DeclinesDeadLetterQueueArn"],
        "maxReceiveCount": 5,
    }
    assert queue["SqsManagedSseEnabled"] == dlq["SqsManagedSseEnabled"] == "true"
    assert dlq["MessageRetentionPeriod"] == str(dlq_spec["MessageRetentionPeriod"]) == "1209600"
    assert "RedrivePolicy" not in dlq


def test_resources_stack_can_be_deployed_again(moto: boto3.session.Session) -> None:
    cfn, ddb = moto.client("cloudformation"), moto.client("dynamodb")
    first = via_chalice.ensure_resources_stack(cfn, ddb, "dev", wait_delay=0.1, out=_quiet)
    lines: list[str] = []

    second = via_chalice.ensure_resources_stack(cfn, ddb, "dev", wait_delay=0.1, out=lines.append)

    assert second == first
    assert "    updating stack booking-resources-dev" in lines
    assert cfn.describe_stacks(StackName="booking-resources-dev")["Stacks"][0]["StackStatus"].endswith("_COMPLETE")


def test_resources_stack_stops_at_a_table_kept_from_an_earlier_stack(moto: boto3.session.Session) -> None:
    ddb = moto.client("dynamodb")
    ddb.create_table(
        TableName="booking-dev",
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    with pytest.raises(DeployError, match="booking-dev already exists outside CloudFormation"):
        via_chalice.ensure_resources_stack(moto.client("cloudformation"), ddb, "dev", wait_delay=0.1, out=_quiet)


def test_outputs_that_disagree_with_config_stop_the_deploy() -> None:
    outputs = {"TableName": "booking-dev", "DeclinesQueueName": "booking-declines-elsewhere"}
    with pytest.raises(DeployError, match="DECLINES_QUEUE_NAME='booking-declines-dev'"):
        via_chalice.check_outputs_match_config(outputs, stage_environment("dev"))


def test_the_local_stage_is_not_deployable() -> None:
    with pytest.raises(DeployError, match="local stack"):
        settings.require_deployable("local")
    with pytest.raises(DeployError, match=r"not in \.chalice/config\.json"):
        settings.require_deployable("staging")


# ------------------------------------------------- partial batch responses


def test_partial_batch_responses_are_enabled_and_read_back(moto: boto3.session.Session) -> None:
    sub = worker_subscription(moto)
    lam = moto.client("lambda")
    assert not lam.get_event_source_mapping(UUID=sub["UUID"]).get("FunctionResponseTypes")
    uuid = via_chalice.worker_event_source_uuid(deployed_resources(sub), "booking-declines-dev")
    assert uuid == sub["UUID"]

    mapping = via_chalice.enable_partial_batch_responses(lam, uuid, poll=0, out=_quiet)

    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert lam.get_event_source_mapping(UUID=uuid)["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # Again: nothing to change, still verified.
    lines: list[str] = []
    via_chalice.enable_partial_batch_responses(lam, uuid, poll=0, out=lines.append)
    assert any("already set" in line for line in lines) and any("verified" in line for line in lines)


def test_a_setting_that_does_not_read_back_fails_the_deploy(moto: boto3.session.Session) -> None:
    sub = worker_subscription(moto)
    with pytest.raises(DeployError, match="failed declines would be deleted"):
        via_chalice.enable_partial_batch_responses(
            RecordingLambda(moto.client("lambda"), apply_mapping_updates=False), sub["UUID"], poll=0, out=_quiet
        )


def test_an_unknown_mapping_fails_the_deploy(moto: boto3.session.Session) -> None:
    with pytest.raises(DeployError, match="not found"):
        via_chalice.enable_partial_batch_responses(
            moto.client("lambda"), "00000000-0000-0000-0000-000000000000", out=_quiet
        )


def test_the_worker_subscription_must_be_in_the_deployed_resources() -> None:
    sub = {"function_arn": "arn:aws:lambda:r:1:function:babysitting-booking-dev-decline_worker", "UUID": "u"}
    sub |= {"queue_arn": "arn:aws:sqs:r:1:booking-declines-dev", "queue": "booking-declines-dev"}
    deployed = deployed_resources(sub)
    with pytest.raises(DeployError, match="found 0"):
        via_chalice.worker_event_source_uuid(deployed, "booking-declines-prod")
    deployed["resources"].append(dict(deployed["resources"][1], name="copy"))
    with pytest.raises(DeployError, match="found 2"):
        via_chalice.worker_event_source_uuid(deployed, "booking-declines-dev")
    assert via_chalice.api_url(deployed) == "https://abc123.execute-api.us-east-1.amazonaws.com/api/"


# ---------------------------------------------------------- deploy, destroy


WORKER = "babysitting-booking-dev-decline_worker"


def _worker_env(session: boto3.session.Session) -> dict[str, str]:
    return session.client("lambda").get_function_configuration(FunctionName=WORKER)["Environment"]["Variables"]


def test_deploy_runs_the_four_steps_and_prints_the_api_url(
    moto: boto3.session.Session, project: Path, pool_outputs: dict[str, str]
) -> None:
    chalice = FakeChalice(moto, project)
    lines: list[str] = []

    url = via_chalice.deploy_via_chalice(
        "dev", session=moto, run=chalice, project_dir=project, wait_delay=0.1, out=lines.append
    )

    assert url == "https://abc123.execute-api.us-east-1.amazonaws.com/api/"
    assert chalice.commands == [chalice_cli.chalice_with_env_command("deploy", "--stage", "dev", project_dir=project)]
    assert chalice.commands[0][1:5] == ["-m", "tools.deploy.chalice_with_env", "--project-dir", str(project)]
    # chalice deploy got the pool's settings, the stream and the sender from the stack, and not
    # the partial-batch flag
    assert {k: v for k, v in chalice.stage_env.items() if k.startswith("AUTH_")} == pool_outputs
    assert chalice.stage_env["TABLE_STREAM_ARN"].startswith("arn:aws:dynamodb:")
    # moto's CloudFormation leaves the SES identity out (no MailSender output): config.json's sender stays
    assert chalice.stage_env.get("MAIL_SENDER", "booking-dev@example.com") == "booking-dev@example.com"
    # the stream subscription got its failure handling
    stream = next(
        m
        for m in moto.client("lambda").list_event_source_mappings()["EventSourceMappings"]
        if ":table/booking-dev/stream/" in m["EventSourceArn"]
    )
    assert stream["BisectBatchOnFunctionError"] is True and stream["MaximumRetryAttempts"] == 5
    assert stream["DestinationConfig"]["OnFailure"]["Destination"].endswith(":booking-stream-failures-dev")
    lam = moto.client("lambda")
    (mapping,) = lam.list_event_source_mappings(FunctionName=WORKER)["EventSourceMappings"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    env = _worker_env(moto)
    assert env["DECLINES_PARTIAL_BATCH_RESPONSES"] == "true"
    assert env["AUTH_ISSUER"] == pool_outputs["AUTH_ISSUER"]
    assert f"    API: {url}" in lines
    assert moto.client("cloudformation").describe_stacks(StackName="booking-resources-dev")["Stacks"]
    # The page-token key was made before the functions that read it
    key = moto.client("ssm").get_parameter(Name="/booking/dev/page-token-secret", WithDecryption=True)["Parameter"]
    assert key["Type"] == "SecureString" and len(key["Value"]) == 64
    assert lines.index("    pre-flight: configuration, parameters, user pool and concurrency OK") < lines.index(
        "==> 2/5 chalice deploy --stage dev"
    )


def test_the_flag_follows_the_verified_subscription(
    moto: boto3.session.Session, project: Path, pool_outputs: dict[str, str]
) -> None:
    lam = RecordingLambda(moto.client("lambda"))
    session = FakeSession(lam, real=moto)

    via_chalice.deploy_via_chalice(
        "dev", session=session, run=FakeChalice(moto, project), project_dir=project, wait_delay=0.1, out=_quiet
    )

    # The worker's environment changes once, after the mapping was set and read back.
    assert lam.calls.count("update_function_configuration") == 1
    flag_at = lam.calls.index("update_function_configuration")
    assert "update_event_source_mapping" in lam.calls[:flag_at]
    assert lam.calls[flag_at - 1] == "get_event_source_mapping"


def test_a_subscription_that_ignores_reports_leaves_the_worker_failing_whole_batches(
    moto: boto3.session.Session, project: Path, pool_outputs: dict[str, str]
) -> None:
    # Given a Lambda that accepts the mapping update without applying it
    lam = RecordingLambda(moto.client("lambda"), apply_mapping_updates=False)
    session = FakeSession(lam, real=moto)

    # When the chalice path deploys
    with pytest.raises(DeployError, match="failed declines would be deleted"):
        via_chalice.deploy_via_chalice(
            "dev", session=session, run=FakeChalice(moto, project), project_dir=project, wait_delay=0.1, out=_quiet
        )

    # Then the worker never learnt it may report partial failures
    assert "update_function_configuration" not in lam.calls
    assert "DECLINES_PARTIAL_BATCH_RESPONSES" not in _worker_env(moto)


def test_a_redeploy_resets_the_flag_until_the_subscription_is_verified_again(
    moto: boto3.session.Session, project: Path, pool_outputs: dict[str, str]
) -> None:
    # chalice deploy writes config.json's environment, which has no flag: the safe side.
    assert "DECLINES_PARTIAL_BATCH_RESPONSES" not in stage_environment("dev", project_dir=project)
    chalice = FakeChalice(moto, project)
    via_chalice.deploy_via_chalice("dev", session=moto, run=chalice, project_dir=project, wait_delay=0.1, out=_quiet)
    assert "DECLINES_PARTIAL_BATCH_RESPONSES" not in chalice.stage_env


def test_deploy_stops_at_a_failing_chalice_deploy(
    moto: boto3.session.Session, project: Path, pool_outputs: dict[str, str]
) -> None:
    chalice = FakeChalice(moto, project, exit_code=2)

    with pytest.raises(DeployError, match=r"`chalice deploy --stage dev` failed \(exit 2\)"):
        via_chalice.deploy_via_chalice(
            "dev", session=moto, run=chalice, project_dir=project, wait_delay=0.1, out=_quiet
        )

    assert moto.client("lambda").list_event_source_mappings()["EventSourceMappings"] == []


def test_deploy_stops_without_credentials(env: None, monkeypatch: pytest.MonkeyPatch, project: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(project / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(project / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    session = boto3.session.Session(region_name=REGION)
    with pytest.raises(DeployError, match="no AWS credentials"):
        via_chalice.deploy_via_chalice(
            "dev", session=session, run=FakeChalice(session, project), project_dir=project, out=_quiet
        )


def test_destroy_deletes_the_stage_and_keeps_the_table(
    moto: boto3.session.Session, project: Path, pool_outputs: dict[str, str]
) -> None:
    chalice = FakeChalice(moto, project)
    via_chalice.deploy_via_chalice("dev", session=moto, run=chalice, project_dir=project, wait_delay=0.1, out=_quiet)
    lines: list[str] = []

    destroy.destroy("dev", yes=True, session=moto, run=chalice, project_dir=project, wait_delay=0.1, out=lines.append)

    assert chalice.commands[-1] == chalice_cli.chalice_command("delete", "--stage", "dev", project_dir=project)
    cfn = moto.client("cloudformation")
    assert cfn_stack.describe(cfn, "booking-resources-dev") is None
    assert not [u for u in moto.client("sqs").list_queues().get("QueueUrls", []) if "booking-declines" in u]
    assert "booking-dev" in moto.client("dynamodb").list_tables()["TableNames"]  # DeletionPolicy Retain
    assert any("table booking-dev, with its data (DeletionPolicy Retain)" in line for line in lines)
    assert any("aws dynamodb delete-table --table-name booking-dev" in line for line in lines)
    assert any("artifacts bucket booking-artifacts-" in line for line in lines)
    # The page-token key the deploy created goes with the stage.
    with pytest.raises(moto.client("ssm").exceptions.ParameterNotFound):
        moto.client("ssm").get_parameter(Name="/booking/dev/page-token-secret")
    # Deploying again stops at the retained table, with instructions.
    with pytest.raises(DeployError, match="delete-table --table-name booking-dev"):
        via_chalice.deploy_via_chalice(
            "dev", session=moto, run=chalice, project_dir=project, wait_delay=0.1, out=_quiet
        )


@pytest.mark.parametrize("answer", ["prod", "", "yes", EOFError()])
def test_destroy_deletes_nothing_unless_the_stage_name_is_typed(
    moto: boto3.session.Session, project: Path, answer: Any
) -> None:
    via_chalice.ensure_resources_stack(moto.client("cloudformation"), moto.client("dynamodb"), "dev", wait_delay=0.1)
    chalice = FakeChalice(moto, project)

    def ask(_: str) -> str:
        if isinstance(answer, BaseException):
            raise answer
        return answer

    with pytest.raises(DeployError, match=r"not confirmed|no answer on standard input.*--yes"):
        destroy.destroy("dev", session=moto, run=chalice, ask=ask, project_dir=project, out=_quiet)

    assert chalice.commands == []
    assert cfn_stack.describe(moto.client("cloudformation"), "booking-resources-dev") is not None


def test_destroy_goes_on_when_the_stage_name_is_typed(moto: boto3.session.Session, project: Path) -> None:
    via_chalice.ensure_resources_stack(moto.client("cloudformation"), moto.client("dynamodb"), "dev", wait_delay=0.1)
    destroy.destroy("dev", session=moto, ask=lambda _: " dev\n", project_dir=project, wait_delay=0.1, out=_quiet)
    assert cfn_stack.describe(moto.client("cloudformation"), "booking-resources-dev") is None


# ------------------------------------------------ the whole command, moto server

WORKER_ONLY_APP = """
import os

from chalice import Chalice

app = Chalice(app_name="babysitting-booking")


@app.on_sqs_message(
    queue=os.environ.get("DECLINES_QUEUE_NAME", "booking-declines"),
    batch_size=10,
    maximum_concurrency=int(os.environ.get("DECLINES_MAX_CONCURRENCY", "5")),
)
def decline_worker(event):
    return {"batchItemFailures": []}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def moto_server(env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto server in its own process (an in-process one would share state with mock_aws)."""
    port = _free_port()
    proc = subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)  # noqa: S310 - local test server
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_deploy_end_to_end_against_a_moto_server(
    moto_server: str, tmp_path: Path, pool_outputs: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the project's real dev settings and worker policy, with an app that has the worker only
    (tmp_path / ".chalice").mkdir()
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    functions = config["stages"]["dev"]["lambda_functions"]
    config["stages"]["dev"]["lambda_functions"] = {"decline_worker": functions["decline_worker"]}
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config))
    shutil.copy(ROOT / ".chalice" / "policy-dev-worker.json", tmp_path / ".chalice")
    (tmp_path / "app.py").write_text(WORKER_ONLY_APP)
    (tmp_path / "requirements.txt").write_text("")
    session = boto3.session.Session(region_name=REGION)
    assert os.environ["AWS_ENDPOINT_URL"] == moto_server
    # A worker-only app has no API settings for the pre-flight to accept.
    monkeypatch.setattr(preflight, "run", lambda *args, **kwargs: None)

    # When the deploy command runs, the real `chalice deploy` included, twice
    for _ in range(2):
        via_chalice.deploy_via_chalice("dev", session=session, project_dir=tmp_path, wait_delay=0.2, out=_quiet)

    # Then Chalice recorded the subscription as expected, and it reports partial failures
    deployed = json.loads((tmp_path / ".chalice" / "deployed" / "dev.json").read_text())
    uuid = via_chalice.worker_event_source_uuid(deployed, "booking-declines-dev")
    mapping = session.client("lambda").get_event_source_mapping(UUID=uuid)
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["EventSourceArn"].endswith(":booking-declines-dev")
    assert mapping["BatchSize"] == 10
    function = session.client("lambda").get_function(FunctionName="babysitting-booking-dev-decline_worker")
    assert function["Configuration"]["Timeout"] == 30
    assert function["Concurrency"]["ReservedConcurrentExecutions"] == 5
    assert len(session.client("lambda").list_event_source_mappings()["EventSourceMappings"]) == 1
    # And the worker, told so only after that, reports them, with the pool's settings
    env = function["Configuration"]["Environment"]["Variables"]
    assert env["DECLINES_PARTIAL_BATCH_RESPONSES"] == "true"
    assert {k: env[k] for k in pool_outputs} == pool_outputs
