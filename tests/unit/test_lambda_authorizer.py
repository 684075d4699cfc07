"""The packaged authorizer's own handler answers exactly what Chalice's ``app.token_authorizer`` does."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chalicelib import lambda_authorizer
from tests.conftest import user_id

ROOT = Path(__file__).resolve().parents[2]
METHOD_ARN = "arn:aws:execute-api:eu-west-1:111122223333:a1b2c3/api/POST/jobs/01J0000000000000000000000/book"


@pytest.fixture
def both(app_env: None) -> Iterator[tuple[Any, Any]]:
    from app import token_authorizer

    lambda_authorizer.reset()
    yield token_authorizer, lambda_authorizer.handler
    lambda_authorizer.reset()


def _event(authorization: str) -> dict[str, Any]:
    return {"type": "TOKEN", "authorizationToken": authorization, "methodArn": METHOD_ARN}


def _tokens(make_token: Any, other_key: Any) -> dict[str, str]:
    now = int(time.time())
    good = make_token("alice", ["parents"])
    header, payload, signature = good.split(".")
    return {
        "parent": f"Bearer {good}",
        "nanny and parent": f"Bearer {make_token('nina', ['nannies', 'parents'])}",
        "lower-case scheme": f"bearer {make_token('olga', ['nannies'])}",
        "expired": f"Bearer {make_token('alice', ['parents'], iat=now - 7200, exp=now - 60)}",
        "signed by another key": f"Bearer {make_token('alice', ['parents'], key=other_key)}",
        "tampered": f"Bearer {header}.{payload}.{signature[::-1]}",
        "access token": f"Bearer {make_token('alice', ['parents'], token_use='access')}",
        "no group": f"Bearer {make_token('alice', [])}",
        "wrong audience": f"Bearer {make_token('alice', ['parents'], aud='someone-else')}",
        "not a jwt": "Bearer not-a-jwt",
        "no scheme": good,
        "empty": "",
    }


def test_both_handlers_give_the_same_answer_for_every_token(both: tuple[Any, Any], make_token, other_key) -> None:
    chalice_authorizer, lean = both
    for name, authorization in _tokens(make_token, other_key).items():
        assert lean(_event(authorization), None) == chalice_authorizer(_event(authorization), None), name


def test_a_valid_token_is_allowed_everywhere_on_the_stage_and_a_bad_one_nowhere(
    both: tuple[Any, Any], make_token, other_key
) -> None:
    _, lean = both
    tokens = _tokens(make_token, other_key)
    allowed = lean(_event(tokens["parent"]), None)
    assert allowed["principalId"] == user_id("alice")
    assert allowed["context"] == {
        "userId": user_id("alice"),
        "username": "alice",
        "roles": "parents",
        "email": "alice@example.com",
    }
    (statement,) = allowed["policyDocument"]["Statement"]
    assert statement["Resource"] == ["arn:aws:execute-api:eu-west-1:111122223333:a1b2c3/api/*/*"]
    for bad in ("expired", "tampered", "not a jwt"):
        denied = lean(_event(tokens[bad]), None)
        assert denied["principalId"] == "anonymous"
        assert denied["policyDocument"]["Statement"][0]["Resource"] == []


def test_a_rejection_is_logged_as_one_json_line(
    both: tuple[Any, Any], make_token, other_key, capsys: pytest.CaptureFixture[str]
) -> None:
    _, lean = both
    lean(_event("Bearer not-a-jwt"), None)
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"token rejected"' in x]
    assert line["level"] == "INFO" and line["service"] == "booking" and "malformed" in line["reason"]


def test_importing_it_loads_neither_boto3_nor_chalice_nor_powertools() -> None:
    script = (
        "import sys, chalicelib.lambda_authorizer\n"
        "print(sorted(m for m in ('boto3', 'botocore', 'chalice', 'aws_lambda_powertools', 'app') if m in sys.modules))"
    )
    proc = subprocess.run(  # noqa: S603 - our interpreter, fixed script
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stdout.strip() == "[]"
