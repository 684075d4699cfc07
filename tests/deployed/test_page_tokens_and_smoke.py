"""The deployed stage's page-token key (SSM), and `make smoke` against the stage."""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime, timedelta

from tests.deployed.api_client import call, sign_up
from tests.deployed.stage import FIGURES, Deployment, run_make

PARAMETER = "/booking/dev/page-token-secret"


def test_the_page_token_key_is_a_secure_string_only_the_api_is_told_about(deployment: Deployment) -> None:
    parameter = deployment.client("ssm").get_parameter(Name=PARAMETER, WithDecryption=True)["Parameter"]
    assert parameter["Type"] == "SecureString"
    assert len(parameter["Value"]) == 64  # secrets.token_urlsafe(48)
    lam = deployment.client("lambda")
    api = lam.get_function_configuration(FunctionName="babysitting-booking-dev")["Environment"]["Variables"]
    assert api["PAGE_TOKEN_SECRET_PARAMETER"] == PARAMETER
    assert "PAGE_TOKEN_SECRET" not in api
    authorizer = lam.get_function_configuration(FunctionName="babysitting-booking-dev-token_authorizer")
    assert authorizer["Handler"] == "chalicelib.lambda_authorizer.handler"


def test_open_jobs_page_one_at_a_time_with_a_token_that_verifies(deployment: Deployment) -> None:
    # Given two open jobs
    _, parent = sign_up(deployment, "parents")
    day = datetime.now(UTC).date() + timedelta(days=4)
    for title in ("first", "second"):
        body = {"title": title, "startsAt": f"{day}T18:00:00Z", "endsAt": f"{day}T20:00:00Z"}
        assert call(deployment, "POST", "/jobs", parent, body).status == 201

    # When a client lists them one per page, following nextToken
    first = call(deployment, "GET", "/jobs?limit=1", parent)
    assert first.status == 200, first.body
    token = first.body["nextToken"]
    second = call(deployment, "GET", f"/jobs?limit=1&nextToken={urllib.parse.quote(token)}", parent)

    # Then the deployed function verifies its own signature, and refuses a forged one
    assert second.status == 200, second.body
    assert second.body["items"] and second.body["items"] != first.body["items"]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    refused = call(deployment, "GET", f"/jobs?limit=1&nextToken={urllib.parse.quote(forged)}", parent)
    assert refused.status == 400 and refused.body["code"] == "INVALID_NEXT_TOKEN"


def test_make_smoke_passes_and_leaves_no_user_behind(deployment: Deployment) -> None:
    run = run_make(deployment.endpoint, "smoke")
    FIGURES.append(f"make smoke: {run.seconds:.1f} s")

    assert run.returncode == 0, run.output
    assert "smoke test of stage dev passed" in run.output
    assert "delete 4 users" in run.output
    users = deployment.client("cognito-idp").list_users(UserPoolId=deployment.outputs["UserPoolId"])["Users"]
    assert not [u for u in users if u["Username"].startswith("smoke-")]


def test_make_smoke_names_the_step_that_failed(deployment: Deployment) -> None:
    run = run_make(deployment.endpoint, "smoke", "STAGE=prod")  # a stage never deployed here
    assert run.returncode != 0
    assert "smoke failed at step 'find the stage'" in run.output
