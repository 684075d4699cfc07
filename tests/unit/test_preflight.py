"""Pre-flight refusals: each names the setting and says what to do."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.aws_session import FakeLambda, FakeSession
from tools.deploy import preflight
from tools.deploy.settings import DeployError
from tools.deploy.templates import infrastructure_template
from tools.shared import ROOT

DECLARED = infrastructure_template("dev")["Parameters"]
GOOD_JWKS = json.dumps({"keys": [{"kty": "RSA", "kid": "k1", "n": "xyz", "e": "AQAB"}]}).encode()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".chalice").mkdir()
    for path in (ROOT / ".chalice").glob("*.json"):
        shutil.copy(path, tmp_path / ".chalice" / path.name)
    return tmp_path


def _edit(project: Path, edit: Any) -> None:
    path = project / ".chalice" / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def test_the_project_s_deployable_stages_pass() -> None:
    assert preflight.config_problems("dev") == []
    assert preflight.config_problems("prod") == []


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("https://cognito-idp.REGION.amazonaws.com/USER_POOL_ID", "placeholder (REGION)"),
        ("APP_CLIENT_ID", "placeholder (APP_CLIENT_ID)"),
        ("CHANGE_ME", "placeholder (CHANGE_ME)"),
        ("<your table>", "placeholder (<your table>)"),
        ("", "is empty"),
        ("   ", "is empty"),
    ],
)
def test_a_placeholder_in_the_stage_s_environment_is_refused_by_name(project: Path, value: str, why: str) -> None:
    _edit(project, lambda c: c["stages"]["dev"]["environment_variables"].update(AUTH_ISSUER=value))
    problems = preflight.config_problems("dev", project)
    assert problems
    assert all("environment variable AUTH_ISSUER" in p and why in p for p in problems)
    assert "stages.dev" in problems[0]


def test_a_missing_table_name_is_refused(project: Path) -> None:
    _edit(project, lambda c: c["stages"]["dev"]["environment_variables"].pop("TABLE_NAME"))
    assert any("TABLE_NAME is missing" in p for p in preflight.config_problems("dev", project))


def test_a_key_in_config_json_or_the_wrong_parameter_name_is_refused(project: Path) -> None:
    def edit(config: dict) -> None:
        config["stages"]["dev"]["environment_variables"]["PAGE_TOKEN_SECRET"] = "s3cret-in-git"
        config["stages"]["dev"]["lambda_functions"]["api_handler"]["environment_variables"] = {
            "PAGE_TOKEN_SECRET_PARAMETER": "/booking/prod/page-token-secret"
        }

    _edit(project, edit)
    problems = "\n".join(preflight.config_problems("dev", project))
    assert "PAGE_TOKEN_SECRET is set" in problems and "remove it from config.json" in problems
    assert "PAGE_TOKEN_SECRET_PARAMETER is '/booking/prod/page-token-secret'" in problems
    assert "must be '/booking/dev/page-token-secret'" in problems


def test_a_missing_policy_file_is_refused(project: Path) -> None:
    (project / ".chalice" / "policy-dev-worker.json").unlink()
    (problem,) = preflight.config_problems("dev", project)
    assert "decline_worker.iam_policy_file: policy-dev-worker.json does not exist" in problem


def test_the_local_stage_is_refused() -> None:
    assert "make local" in preflight.config_problems("local")[0]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"ExistingUserPoolId": "USER_POOL_ID"}, "parameter ExistingUserPoolId is a placeholder (USER_POOL_ID)"),
        (
            {"ExistingUserPoolId": "eu-west-1_abc", "ExistingAppClientId": "APP_CLIENT_ID"},
            "parameter ExistingAppClientId is a placeholder (APP_CLIENT_ID)",
        ),
        ({"ExistingAppClientId": "abc123"}, "ExistingAppClientId is set without ExistingUserPoolId"),
        ({"DeclinesVisibilityTimeout": "3"}, "parameter DeclinesVisibilityTimeout is not a parameter of the template"),
    ],
)
def test_parameters_are_checked(given: dict[str, str], expected: str) -> None:
    problems = preflight.parameter_problems(given, given, DECLARED)
    assert any(expected in p for p in problems), problems


def test_empty_optional_parameters_mean_their_default() -> None:
    given = {"ExistingUserPoolId": "", "ExistingAppClientId": "", "CognitoJwksBaseUrl": ""}
    assert preflight.parameter_problems(given, given, DECLARED) == []


def test_a_previous_placeholder_still_counts() -> None:
    # A parameter not given keeps the stack's previous value: that one is checked too.
    problems = preflight.parameter_problems({}, {"ExistingUserPoolId": "CHANGE_ME"}, DECLARED)
    assert problems and "ExistingUserPoolId" in problems[0]


def test_an_own_pool_whose_jwks_cannot_be_fetched_is_refused() -> None:
    def unreachable(url: str) -> bytes:
        raise OSError(f"404 for {url}")

    (problem,) = preflight.jwks_problems("eu-west-1_abc", "eu-west-1", None, unreachable)
    assert "ExistingUserPoolId=eu-west-1_abc" in problem
    assert (
        "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc/.well-known/jwks.json cannot be fetched" in problem
    )


@pytest.mark.parametrize("body", [b'{"keys": []}', b'{"keys": [{"kty": "EC", "kid": "e"}]}', b"{}", b"[]"])
def test_an_own_pool_whose_jwks_holds_no_rsa_key_is_refused(body: bytes) -> None:
    problems = preflight.jwks_problems("eu-west-1_abc", "eu-west-1", None, lambda url: body)
    assert len(problems) == 1 and ("holds no RSA key" in problems[0] or "cannot be fetched" in problems[0])


def test_an_own_pool_with_an_rsa_key_passes_and_an_emulator_base_is_used() -> None:
    urls: list[str] = []
    assert (
        preflight.jwks_problems("p_1", "us-east-1", "http://127.0.0.1:4566", lambda u: urls.append(u) or GOOD_JWKS)
        == []
    )
    assert urls == ["http://127.0.0.1:4566/p_1/.well-known/jwks.json"]


def test_reserved_concurrency_the_account_cannot_give_is_refused_with_the_fixes() -> None:
    # Given a new account (quota 10): nothing can be reserved
    (problem,) = preflight.concurrency_problems(FakeLambda(10, total=10), "dev", {"decline_worker": 5}, "app")
    assert "decline_worker reserved_concurrency=5 does not fit" in problem
    assert "AWS keeps 10 unreserved, so at most 0 can be reserved" in problem
    assert "quota" in problem and "lower reserved_concurrency" in problem


def test_reserved_concurrency_that_fits_passes() -> None:
    assert preflight.concurrency_problems(FakeLambda(15), "dev", {"decline_worker": 5}, "app") == []
    assert preflight.concurrency_problems(FakeLambda(14), "dev", {"decline_worker": 5}, "app")


def test_what_the_function_already_reserves_counts_as_available() -> None:
    # An update: the worker holds 5 already, which the account's unreserved figure excludes
    lam = FakeLambda(10, {"app-dev-decline_worker": 5}, total=20)
    assert preflight.concurrency_problems(lam, "dev", {"decline_worker": 5}, "app") == []
    assert preflight.concurrency_problems(lam, "dev", {"decline_worker": 6}, "app")


def test_the_stage_s_reserved_concurrency_comes_from_config_json() -> None:
    assert preflight.reserved_concurrency("dev") == {"decline_worker": 5}
    assert preflight.reserved_concurrency("prod") == {"decline_worker": 10}


def test_run_lists_every_problem_in_one_refusal(project: Path) -> None:
    _edit(project, lambda c: c["stages"]["dev"]["environment_variables"].update(TABLE_NAME="CHANGE_ME"))
    with pytest.raises(DeployError) as refused:
        preflight.run(
            "dev",
            session=FakeSession(FakeLambda(10, total=10)),
            parameters={"ExistingUserPoolId": "eu-west-1_abc"},
            declared=DECLARED,
            fetch=lambda url: b'{"keys": []}',
            project_dir=project,
            out=lambda _: None,
        )
    text = str(refused.value)
    assert text.startswith("pre-flight refused stage dev:")
    for needle in (
        "TABLE_NAME is a placeholder (CHANGE_ME)",
        "holds no RSA key",
        "reserved_concurrency=5 does not fit",
    ):
        assert needle in text


def test_run_passes_a_good_stage() -> None:
    lines: list[str] = []
    preflight.run("dev", session=FakeSession(FakeLambda(990)), parameters={}, declared=DECLARED, out=lines.append)
    assert lines == ["    pre-flight: configuration, parameters, user pool and concurrency OK"]
