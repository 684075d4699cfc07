"""The page-token key: SSM on a deployed stage, config locally, and no fallback to a public value."""

from __future__ import annotations

import json
import logging

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib import page_token_keys
from chalicelib.api_errors import status_for
from chalicelib.page_token_keys import PageTokensUnavailable, page_token_secret

NAME = "/booking/dev/page-token-secret"


def _stubbed_ssm(value: str | None = None, error: str | None = None) -> tuple[object, Stubber]:
    ssm = boto3.client("ssm", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(ssm)
    expected = {"Name": NAME, "WithDecryption": True}
    if error:
        stub.add_client_error("get_parameter", service_error_code=error, expected_params=expected)
    else:
        parameter = {"Name": NAME, "Type": "SecureString", "Value": value, "Version": 1}
        stub.add_response("get_parameter", {"Parameter": parameter}, expected)
    stub.activate()
    return ssm, stub


def _powertools_fetch(ssm: object):
    from aws_lambda_powertools.utilities.parameters import SSMProvider

    provider = SSMProvider(boto3_client=ssm)
    return lambda name: provider.get(name, decrypt=True, max_age=page_token_keys.MAX_AGE_SECONDS)


def test_a_deployed_stage_reads_the_secure_string_named_by_its_parameter_variable() -> None:
    # Given SSM holding the stage's key
    ssm, stub = _stubbed_ssm("k" * 64)

    # When the key is needed
    value = page_token_secret({"PAGE_TOKEN_SECRET_PARAMETER": NAME}, fetch=_powertools_fetch(ssm))

    # Then it is the decrypted value of that one parameter
    assert value == "k" * 64
    stub.assert_no_pending_responses()


def test_the_parameter_wins_over_a_value_in_the_environment() -> None:
    ssm, _ = _stubbed_ssm("from-ssm")
    env = {"PAGE_TOKEN_SECRET_PARAMETER": NAME, "PAGE_TOKEN_SECRET": "from-env"}
    assert page_token_secret(env, fetch=_powertools_fetch(ssm)) == "from-ssm"


@pytest.mark.parametrize("error", ["ParameterNotFound", "AccessDeniedException", "ThrottlingException"])
def test_an_unreadable_parameter_refuses_with_503_and_an_error_line_naming_it(
    error: str, caplog: pytest.LogCaptureFixture
) -> None:
    ssm, _ = _stubbed_ssm(error=error)
    with caplog.at_level(logging.ERROR, logger="chalicelib"), pytest.raises(PageTokensUnavailable) as refused:
        page_token_secret({"PAGE_TOKEN_SECRET_PARAMETER": NAME, "TABLE_NAME": "booking-dev"}, _powertools_fetch(ssm))
    assert refused.value.code == "PAGE_TOKENS_UNAVAILABLE"
    assert status_for(refused.value) == 503
    (line,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert NAME in line.getMessage() and error in line.getMessage()


def test_an_empty_parameter_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="chalicelib"), pytest.raises(PageTokensUnavailable):
        page_token_secret({"PAGE_TOKEN_SECRET_PARAMETER": NAME}, fetch=lambda name: "")
    assert NAME in caplog.text


def test_without_either_setting_there_is_no_fallback_to_the_table_name(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="chalicelib"), pytest.raises(PageTokensUnavailable):
        page_token_secret({"TABLE_NAME": "booking-dev"}, fetch=lambda name: pytest.fail("no parameter to read"))
    assert "PAGE_TOKEN_SECRET_PARAMETER" in caplog.text


def test_the_local_stage_keeps_its_development_key() -> None:
    from tools.shared import stage_environment

    local = stage_environment("local")
    assert page_token_secret(local, fetch=lambda name: pytest.fail("local reads no SSM")) == local["PAGE_TOKEN_SECRET"]


def test_deployed_stages_name_their_parameter_for_the_api_only_and_hold_no_key() -> None:
    from tools.shared import load_project_config, stage_environment

    config = load_project_config()
    for stage in ("dev", "prod"):
        assert stage_environment(stage)["PAGE_TOKEN_SECRET_PARAMETER"] == page_token_keys.parameter_name(stage)
        for function in ("token_authorizer", "decline_worker"):
            assert "PAGE_TOKEN_SECRET_PARAMETER" not in stage_environment(stage, function=function)
        assert "PAGE_TOKEN_SECRET" not in json.dumps(config["stages"][stage]).replace("PAGE_TOKEN_SECRET_PARAMETER", "")


def test_the_api_policies_read_that_one_parameter() -> None:
    from tools.shared import ROOT

    for stage in ("dev", "prod"):
        policy = json.loads((ROOT / ".chalice" / f"policy-{stage}-api.json").read_text())
        ssm = [s for s in policy["Statement"] if any(a.startswith("ssm:") for a in s["Action"])]
        assert ssm == [
            {
                "Sid": "ReadPageTokenKey",
                "Effect": "Allow",
                "Action": ["ssm:GetParameter"],
                "Resource": [f"arn:aws:ssm:*:*:parameter/booking/{stage}/page-token-secret"],
            }
        ]


def test_keys_are_re_read_on_their_max_age_and_kept_through_a_failed_re_read() -> None:
    values = ["a" * 20, json.dumps({"current": "a" * 20, "next": "b" * 20})]
    now = [0.0]

    def fetch(name: str) -> str:
        if not values:
            raise RuntimeError("SSM down")
        return values.pop(0)

    source = page_token_keys.PageTokenKeySource({"PAGE_TOKEN_SECRET_PARAMETER": NAME}, fetch, clock=lambda: now[0])
    assert source().accepted == ("a" * 20,)
    now[0] += page_token_keys.MAX_AGE_SECONDS - 1
    assert source().accepted == ("a" * 20,)  # not yet re-read
    now[0] += 1
    assert source() == page_token_keys.PageTokenKeys("a" * 20, ("a" * 20, "b" * 20))
    now[0] += page_token_keys.MAX_AGE_SECONDS
    assert source().accepted == ("a" * 20, "b" * 20)  # the re-read failed: the keys held are kept


@pytest.mark.parametrize(
    "value",
    ['{"next": "bbbbbbbbbbbbbbbbbbbb"}', '{"current": 5}', '{"current": "short"}', "{not json", '{"current": null}'],
)
def test_a_malformed_key_set_is_refused_not_used(value: str) -> None:
    with pytest.raises(PageTokensUnavailable):
        page_token_keys.parse_keys(value)


def test_a_rotated_value_signs_with_current_and_accepts_all_three() -> None:
    keys = page_token_keys.parse_keys(json.dumps({"current": "c" * 20, "previous": "p" * 20, "next": "n" * 20}))
    assert keys.signing == "c" * 20 and set(keys.accepted) == {"c" * 20, "p" * 20, "n" * 20}
