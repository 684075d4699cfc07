"""openapi.yaml against what the server really answers and accepts, case by case (no fuzzing needed).

Pins down what fuzzing found: the spec's text fields do not state the app's rules, and its
403 schema (``oneOf`` Error or GatewayError) refuses the service's own 403 bodies.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest

from tests.openapi_schema import validator
from tests.reliability.conftest import FIGURES, SPEC, Stack, nanny_token, parent_token

pytestmark = pytest.mark.e2e


def _validator(name: str, spec: dict[str, Any] = SPEC) -> jsonschema.Validator:
    return _schema_validator({"$ref": f"#/components/schemas/{name}"}, spec)


def _schema_validator(root: dict[str, Any], spec: dict[str, Any] = SPEC) -> jsonschema.Validator:
    return validator(root, spec)


TEXT_SAMPLES = [
    ("createJob", "title", "Bell\u0007"),
    ("createJob", "title", "Tab\tin a title"),
    ("createJob", "title", "Line\nbreak"),
    ("createJob", "title", "   "),
    ("createJob", "title", "\u00a0\u3000"),
    ("createJob", "title", "Next\u0085line"),
    ("createJob", "title", "Trailing tab and NEL\t\u0085"),
    ("createJob", "title", "\u001fUnit separator first"),
    ("createJob", "title", "Plain title"),
    ("createJob", "location", "York\rLeeds"),
    ("createJob", "location", "York, UK"),
    ("createJob", "description", "Two\nlines\tand a tab"),
    ("createJob", "description", "Escape \u001b[0m"),
    ("applyToJob", "message", "Hello\nthere"),
    ("applyToJob", "message", "Hello\u0000"),
    ("applyToJob", "message", "Carriage\rreturn"),
    ("applyToJob", "message", "Windows line end\r\n"),
]


def test_the_spec_states_the_apps_text_rules(stack: Stack) -> None:
    """A text the spec calls valid is accepted, and one the app refuses is invalid in the spec."""
    parent = parent_token()
    job_id = stack.create_job(parent)["jobId"]
    start = (datetime.now(UTC) + timedelta(days=5)).isoformat()
    end = (datetime.now(UTC) + timedelta(days=5, hours=2)).isoformat()
    disagreements = []
    for operation_id, field, value in TEXT_SAMPLES:
        if operation_id == "createJob":
            body = {"title": "Evening", "startsAt": start, "endsAt": end, field: value}
            spec_valid = _validator("NewJob").is_valid(body)
            resp = stack.call("POST", "/jobs", parent, json=body)
        else:
            body = {field: value}
            spec_valid = _validator("NewApplication").is_valid(body)
            resp = stack.call("POST", f"/jobs/{job_id}/applications", nanny_token(), json=body)
        accepted = resp.status_code in (200, 201)
        if accepted != spec_valid:
            disagreements.append(
                f"{operation_id} {field}={json.dumps(value)}: spec says {'valid' if spec_valid else 'invalid'}, "
                f"the API answered {resp.status_code} {resp.text[:120]}"
            )
    FIGURES.add("fuzz", "spec/app disagreements on text fields", len(disagreements))
    assert not disagreements, "openapi.yaml and the app disagree:\n" + "\n".join(disagreements)


def _response_schema(operation_id: str, status: int) -> dict[str, Any]:
    for item in SPEC["paths"].values():
        for method, operation in item.items():
            if method in ("get", "post") and operation["operationId"] == operation_id:
                response = operation["responses"][str(status)]
                if "$ref" in response:
                    response = SPEC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
                return response["content"]["application/json"]["schema"]
    raise KeyError(operation_id)


def test_refusals_match_the_spec_response_schemas(stack: Stack) -> None:
    """Every kind of refusal body, from the gateway and from the service, against the spec's schema for it."""
    owner, nanny = parent_token(), nanny_token()
    job_id = stack.create_job(owner)["jobId"]
    app_id = stack.apply(nanny, job_id)["applicationId"]
    book = f"/jobs/{job_id}/book"
    withdraw = f"/jobs/{job_id}/applications/{app_id}/withdraw"
    answers = [
        ("bookNanny", stack.call("POST", book, None, json={"applicationId": app_id})),  # 401, gateway
        ("bookNanny", stack.call("POST", book, "not-a-token", json={"applicationId": app_id})),  # 403, gateway
        ("bookNanny", stack.call("POST", book, nanny, json={"applicationId": app_id})),  # 403 ROLE_REQUIRED
        ("bookNanny", stack.call("POST", book, parent_token(), json={"applicationId": app_id})),  # 403 NOT_JOB_OWNER
        ("listApplications", stack.call("GET", f"/jobs/{job_id}/applications", parent_token())),  # 403 NOT_JOB_OWNER
        ("applyToJob", stack.call("POST", f"/jobs/{job_id}/applications", owner, json={})),  # 403 ROLE_REQUIRED
        ("createJob", stack.call("POST", "/jobs", owner, data="x", headers={"Content-Type": "text/plain"})),  # 415
        ("cancelJob", stack.call("POST", f"/jobs/{job_id}/cancel", parent_token(), json={})),  # 403 NOT_JOB_OWNER
        ("cancelJob", stack.call("POST", f"/jobs/{job_id}/cancel", owner, json={"reason": 7})),  # 400
        ("getApplication", stack.call("GET", f"/jobs/{job_id}/applications/{app_id}", nanny_token())),  # 403
        ("withdrawApplication", stack.call("POST", withdraw, nanny_token(), json={})),  # 403 NOT_APPLICANT
        ("withdrawApplication", stack.call("POST", withdraw, owner, json={})),  # 403 ROLE_REQUIRED
        ("withdrawApplication", stack.call("POST", withdraw, nanny, json={})),  # 200
        ("bookNanny", stack.call("POST", book, owner, json={"applicationId": app_id})),  # 409, withdrawn
        ("cancelJob", stack.call("POST", f"/jobs/{job_id}/cancel", owner, json={})),  # 200
        ("cancelJob", stack.call("POST", f"/jobs/{job_id}/cancel", owner, json={})),  # 200, a replay
    ]
    wrong = []
    for operation_id, resp in answers:
        validator = _schema_validator(_response_schema(operation_id, resp.status_code))
        errors = [e.message for e in validator.iter_errors(resp.json())]
        if errors:
            wrong.append(f"{operation_id} {resp.status_code} {resp.text}: {errors[0][:200]}")
    FIGURES.add("fuzz", "refusal bodies outside their response schema", len(wrong))
    assert not wrong, "bodies the spec's response schemas refuse:\n" + "\n".join(wrong)
