"""openapi.yaml is the published contract: the routes, codes and bodies must match it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate

from app import app
from chalicelib import bootstrap
from tests.integration.conftest import Api, Aws, run_worker
from tests.openapi_schema import validator

ROOT = Path(__file__).resolve().parents[2]
SPEC = yaml.safe_load((ROOT / "openapi.yaml").read_text())
METHODS = {"get", "post", "put", "patch", "delete"}


def _spec_routes() -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, item in SPEC["paths"].items() for m in item if m in METHODS}


def _app_routes() -> set[tuple[str, str]]:
    to_camel = {"job_id": "jobId", "application_id": "applicationId"}
    found = set()
    for path, methods in app.routes.items():
        spec_path = re.sub(r"\{(\w+)\}", lambda m: "{" + to_camel.get(m.group(1), m.group(1)) + "}", path)
        found |= {(method, spec_path) for method in methods}
    return found


def test_the_spec_is_valid_openapi() -> None:
    validate(SPEC)


def test_routes_and_spec_agree() -> None:
    assert _app_routes() == _spec_routes()


def test_every_error_code_the_code_can_produce_is_in_the_spec() -> None:
    sources = [*(ROOT / "chalicelib").glob("*.py"), ROOT / "app.py"]
    produced = set()
    for source in sources:
        text = source.read_text()
        produced |= set(re.findall(r'code\s*=\s*"([A-Z_]+)"', text))
        produced |= set(re.findall(r'"\w+": "([A-Z][A-Z_]+)"', text)) if source.name == "api_errors.py" else set()
    enum = set(SPEC["components"]["schemas"]["Error"]["properties"]["code"]["enum"])
    assert produced - enum == set()
    assert len(produced) > 15


def _check(body: Any, name: str) -> None:
    validator({"$ref": f"#/components/schemas/{name}"}, SPEC).validate(body)


def test_real_responses_match_their_schemas(api: Api, aws: Aws) -> None:
    job = api.create_job("alice", hourlyRate=20, location="York", description="d")
    _check(job, "Job")
    app_ = api.apply("nina", job["jobId"], message="hi")
    _check(app_, "Application")
    _check(api.call("GET", "/jobs?limit=1", user="alice").body, "JobPage")
    _check(api.call("GET", f"/jobs/{job['jobId']}/applications", user="alice").body, "ApplicationPage")
    _check(api.call("GET", "/me/applications", user="nina", role="nanny").body, "ApplicationPage")
    booking = api.book("alice", job["jobId"], app_["applicationId"])
    _check(booking.body, "Booking")
    _check(api.call("GET", f"/jobs/{job['jobId']}", user="alice").body, "Job")
    _check(api.book("alice", job["jobId"], "01HZZZZZZZZZZZZZZZZZZZZZZZ").body, "Error")
    # the rest of a job's life
    other = api.create_job("alice")
    kept, leaving = api.apply("nina", other["jobId"]), api.apply("olga", other["jobId"])
    _check(
        api.call("GET", f"/jobs/{other['jobId']}/applications/{kept['applicationId']}", user="alice").body,
        "Application",
    )
    withdrawn = api.call(
        "POST", f"/jobs/{other['jobId']}/applications/{leaving['applicationId']}/withdraw", user="olga", role="nanny"
    )
    _check(withdrawn.body, "Application")
    assert withdrawn.body["status"] == "WITHDRAWN"
    cancelled = api.call("POST", f"/jobs/{other['jobId']}/cancel", user="alice", body={"reason": "Sorry"})
    _check(cancelled.body, "Job")
    assert (cancelled.body["status"], cancelled.body["cancelReason"]) == ("CANCELLED", "Sorry")


def test_a_whole_life_s_answers_match_their_schemas(api: Api, aws: Aws, client) -> None:
    # a booking cancelled: the job, the CANCELLED application and a DECLINED one, with reasons
    job = api.create_job("alice")["jobId"]
    nina, olga = api.apply("nina", job)["applicationId"], api.apply("olga", job)["applicationId"]
    assert api.book("alice", job, nina).status == 200
    run_worker(client, aws)
    cancelled = api.call("POST", f"/jobs/{job}/cancel", user="alice", body={})
    _check(cancelled.body, "Job")
    page = api.call("GET", f"/jobs/{job}/applications", user="alice").body
    _check(page, "ApplicationPage")
    assert {(a["status"], a["reason"]) for a in page["items"]} == {
        ("CANCELLED", "BOOKING_CANCELLED"),
        ("DECLINED", "JOB_BOOKED"),
    }
    assert olga in {a["applicationId"] for a in page["items"]}
    # a nanny backing out, then unavailable elsewhere at the same time
    other, third = api.create_job("bob")["jobId"], api.create_job("carol")["jobId"]
    booked = api.apply("nina", other)["applicationId"]
    elsewhere = api.apply("nina", third)["applicationId"]
    assert api.book("bob", other, booked).status == 200
    refused = api.book("carol", third, elsewhere)
    _check(refused.body, "Error")
    assert (refused.status, refused.body["code"]) == (409, "NANNY_UNAVAILABLE")
    withdrawn = api.call("POST", f"/jobs/{other}/applications/{booked}/withdraw", user="nina", role="nanny")
    _check(withdrawn.body, "Application")
    _check(api.call("GET", f"/jobs/{other}", user="bob").body, "Job")
    # expired and completed
    assert api.book("carol", third, elsewhere).status == 200
    service, far = bootstrap.service(), "2100-01-01T00:00:00.000Z"
    assert service.settle_due_jobs(now=far).expired >= 1
    for job_id, owner, status in ((other, "bob", "EXPIRED"), (third, "carol", "COMPLETED")):
        body = api.call("GET", f"/jobs/{job_id}", user=owner).body
        _check(body, "Job")
        assert body["status"] == status


NEW_OPERATIONS = {"cancelJob", "withdrawApplication", "getApplication"}


def _operations() -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for item in SPEC["paths"].values() for m, op in item.items() if m in METHODS}


def test_every_operation_has_an_operation_id_and_json_schemas() -> None:
    # What a generated client needs: a name per call, a schema per body.
    count = sum(1 for item in SPEC["paths"].values() for m in item if m in METHODS)
    operations = _operations()
    assert len(operations) == count and set(operations) >= NEW_OPERATIONS
    for op_id, op in operations.items():
        body = op.get("requestBody", {}).get("content", {})
        assert set(body) <= {"application/json"} and all("schema" in c for c in body.values()), op_id
        for status, response in op["responses"].items():
            if "$ref" not in response:
                assert "schema" in response["content"]["application/json"], (op_id, status)


def _examples() -> list[tuple[str, str, Any, Any]]:
    found = []
    for op_id, op in _operations().items():
        for content in op.get("requestBody", {}).get("content", {}).values():
            if "example" in content:
                found.append((op_id, "request", content["schema"], content["example"]))
        for status, response in op["responses"].items():
            for content in response.get("content", {}).values():
                if "example" in content:
                    found.append((op_id, status, content["schema"], content["example"]))
    return found


def test_every_example_validates_against_its_schema() -> None:
    examples = _examples()
    for op_id in NEW_OPERATIONS:
        assert {where for o, where, _, _ in examples if o == op_id} >= {"200"}, op_id
    assert {o for o, where, _, _ in examples if where == "request"} >= {"cancelJob", "withdrawApplication"}
    for op_id, where, schema, example in examples:
        errors = [e.message for e in validator(schema, SPEC).iter_errors(example)]
        assert not errors, (op_id, where, errors)


@pytest.mark.parametrize("name", ["Job", "Application", "Booking", "Error"])
def test_schemas_reject_what_they_should(name: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        _check({"unexpected": True}, name)
