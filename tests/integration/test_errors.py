"""Every refusal the API documents: its status, its stable code, and that nothing changed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import Api, Aws, job_body

BAD_ID = "01HZZZZZZZZZZZZZZZZZZZZZZZ"  # well-formed, never issued


@pytest.fixture
def world(api: Api) -> dict[str, Any]:
    """A job of alice's with two applications, and a job of bob's with one."""
    job = api.create_job("alice")
    other = api.create_job("bob")
    a1 = api.apply("nina", job["jobId"])
    a2 = api.apply("olga", job["jobId"])
    b1 = api.apply("nina", other["jobId"])
    return {"job": job["jobId"], "other": other["jobId"], "a1": a1["applicationId"], "a2": a2["applicationId"],
            "b1": b1["applicationId"]}  # fmt: skip


def _cases(w: dict[str, Any]) -> list[tuple[str, dict[str, Any], int, str]]:
    job, a1, b1 = w["job"], w["a1"], w["b1"]
    nanny = {"user": "nina", "role": "nanny"}
    return [
        # 400: malformed input
        ("POST /jobs", {"user": "alice", "raw": "{not json"}, 400, "INVALID_JSON"),
        ("POST /jobs", {"user": "alice", "raw": "[1, 2]"}, 400, "INVALID_BODY"),
        ("POST /jobs", {"user": "alice", "body": job_body(extra=1)}, 400, "UNKNOWN_FIELD"),
        ("POST /jobs", {"user": "alice", "body": job_body(title="")}, 400, "INVALID_BODY"),
        ("POST /jobs", {"user": "alice", "body": job_body(title=7)}, 400, "INVALID_BODY"),
        ("POST /jobs", {"user": "alice", "body": job_body(title="x" * 201)}, 400, "INVALID_BODY"),
        ("POST /jobs", {"user": "alice", "body": job_body(startsAt="tomorrow")}, 400, "INVALID_BODY"),
        ("POST /jobs", {"user": "alice", "body": job_body(startsAt="2030-01-01T10:00:00")}, 400, "INVALID_BODY"),
        ("POST /jobs", {"user": "alice", "body": job_body(startsAt="2020-01-01T10:00:00Z")}, 400, "INVALID_BODY"),
        ("POST /jobs", {"user": "alice", "body": job_body(endsAt="2020-01-01T10:00:00Z")}, 400, "INVALID_BODY"),
        ("POST /jobs", {"user": "alice", "body": job_body(hourlyRate=-1)}, 400, "INVALID_BODY"),
        ("POST /jobs", {"user": "alice", "body": job_body(hourlyRate="12")}, 400, "INVALID_BODY"),
        ("POST /jobs", {"user": "alice", "body": job_body(hourlyRate=True)}, 400, "INVALID_BODY"),
        ("POST /jobs", {"user": "alice", "body": job_body(description="d" * 20_000)}, 400, "BODY_TOO_LARGE"),
        ("GET /jobs?limit=0", {"user": "alice"}, 400, "INVALID_QUERY"),
        ("GET /jobs?limit=101", {"user": "alice"}, 400, "INVALID_QUERY"),
        ("GET /jobs?limit=abc", {"user": "alice"}, 400, "INVALID_QUERY"),
        ("GET /jobs?color=red", {"user": "alice"}, 400, "INVALID_QUERY"),
        ("GET /jobs?nextToken=forged", {"user": "alice"}, 400, "INVALID_NEXT_TOKEN"),
        ("GET /me/jobs?nextToken=eyJzIjoibWUifQ.AAAA", {"user": "alice"}, 400, "INVALID_NEXT_TOKEN"),
        ("GET /jobs/not-an-id", {"user": "alice"}, 400, "INVALID_ID"),
        (f"GET /jobs/{job}%23x", {"user": "alice"}, 400, "INVALID_ID"),
        (f"POST /jobs/{job}%23APPLICATION/applications", {**nanny, "body": {}}, 400, "INVALID_ID"),
        (f"POST /jobs/{job}/applications", {**nanny, "body": {"message": 5}}, 400, "INVALID_BODY"),
        (f"POST /jobs/{job}/applications", {**nanny, "body": {"msg": "hi"}}, 400, "UNKNOWN_FIELD"),
        (f"POST /jobs/{job}/book", {"user": "alice", "body": {}}, 400, "INVALID_BODY"),
        (f"POST /jobs/{job}/book", {"user": "alice", "body": {"applicationId": "x#y"}}, 400, "INVALID_ID"),
        (f"POST /jobs/{job}/book", {"user": "alice", "body": {"applicationId": a1, "x": 1}}, 400, "UNKNOWN_FIELD"),
        (f"POST /jobs/{job}/cancel", {"user": "alice", "body": {"why": "x"}}, 400, "UNKNOWN_FIELD"),
        (f"POST /jobs/{job}/cancel", {"user": "alice", "body": {"reason": 5}}, 400, "INVALID_BODY"),
        (f"POST /jobs/{job}/cancel", {"user": "alice", "body": {"reason": "r" * 501}}, 400, "INVALID_BODY"),
        (f"POST /jobs/{job}/cancel", {"user": "alice", "raw": "[]"}, 400, "INVALID_BODY"),
        ("POST /jobs/not-an-id/cancel", {"user": "alice", "body": {}}, 400, "INVALID_ID"),
        (f"POST /jobs/{job}/applications/x/withdraw", {**nanny, "body": {}}, 400, "INVALID_ID"),
        (f"POST /jobs/{job}/applications/{a1}/withdraw", {**nanny, "body": {"x": 1}}, 400, "UNKNOWN_FIELD"),
        (f"GET /jobs/{job}/applications/{a1}%23x", {"user": "alice"}, 400, "INVALID_ID"),
        # 403: wrong role or not the owner
        ("POST /jobs", {**nanny, "body": job_body()}, 403, "ROLE_REQUIRED"),
        (f"POST /jobs/{job}/applications", {"user": "bob", "body": {}}, 403, "ROLE_REQUIRED"),
        (f"GET /jobs/{job}/applications", {"user": "bob"}, 403, "NOT_JOB_OWNER"),
        (f"POST /jobs/{job}/book", {"user": "bob", "body": {"applicationId": a1}}, 403, "NOT_JOB_OWNER"),
        (f"POST /jobs/{job}/book", {**nanny, "body": {"applicationId": a1}}, 403, "ROLE_REQUIRED"),
        (f"POST /jobs/{job}/cancel", {"user": "bob", "body": {}}, 403, "NOT_JOB_OWNER"),
        (f"POST /jobs/{job}/cancel", {**nanny, "body": {}}, 403, "ROLE_REQUIRED"),
        (f"POST /jobs/{job}/applications/{a1}/withdraw", {"user": "alice", "body": {}}, 403, "ROLE_REQUIRED"),
        (f"POST /jobs/{job}/applications/{w['a2']}/withdraw", {**nanny, "body": {}}, 403, "NOT_APPLICANT"),
        (f"GET /jobs/{job}/applications/{a1}", {"user": "bob"}, 403, "NOT_APPLICANT"),
        (f"GET /jobs/{job}/applications/{w['a2']}", nanny, 403, "NOT_APPLICANT"),
        # 404: unknown job or application, or an application of another job
        (f"GET /jobs/{BAD_ID}", {"user": "alice"}, 404, "JOB_NOT_FOUND"),
        (f"POST /jobs/{BAD_ID}/applications", {**nanny, "body": {}}, 404, "JOB_NOT_FOUND"),
        (f"GET /jobs/{BAD_ID}/applications", {"user": "alice"}, 404, "JOB_NOT_FOUND"),
        (f"POST /jobs/{BAD_ID}/book", {"user": "alice", "body": {"applicationId": a1}}, 404, "JOB_NOT_FOUND"),
        (f"POST /jobs/{job}/book", {"user": "alice", "body": {"applicationId": BAD_ID}}, 404, "APPLICATION_NOT_FOUND"),
        (f"POST /jobs/{job}/book", {"user": "alice", "body": {"applicationId": b1}}, 404, "APPLICATION_NOT_FOUND"),
        (f"POST /jobs/{BAD_ID}/cancel", {"user": "alice", "body": {}}, 404, "JOB_NOT_FOUND"),
        (f"POST /jobs/{BAD_ID}/applications/{a1}/withdraw", {**nanny, "body": {}}, 404, "JOB_NOT_FOUND"),
        (f"POST /jobs/{job}/applications/{BAD_ID}/withdraw", {**nanny, "body": {}}, 404, "APPLICATION_NOT_FOUND"),
        (f"POST /jobs/{job}/applications/{b1}/withdraw", {**nanny, "body": {}}, 404, "APPLICATION_NOT_FOUND"),
        (f"GET /jobs/{BAD_ID}/applications/{a1}", {"user": "alice"}, 404, "JOB_NOT_FOUND"),
        (f"GET /jobs/{job}/applications/{b1}", {"user": "alice"}, 404, "APPLICATION_NOT_FOUND"),
        # 409: applying twice
        (f"POST /jobs/{job}/applications", {**nanny, "body": {}}, 409, "ALREADY_APPLIED"),
        # 415: not JSON
        (
            "POST /jobs",
            {"user": "alice", "raw": "title=x", "headers": {"Content-Type": "text/plain"}},
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        # 405: a method the route doesn't have
        (f"PUT /jobs/{job}/book", {"user": "alice", "body": {}}, 405, "METHOD_NOT_ALLOWED"),
        (f"GET /jobs/{job}/cancel", {"user": "alice"}, 405, "METHOD_NOT_ALLOWED"),
        (f"DELETE /jobs/{job}/applications/{a1}", {"user": "alice"}, 405, "METHOD_NOT_ALLOWED"),
    ]


def test_every_refusal_has_its_status_and_code_and_changes_nothing(api: Api, aws: Aws, world: dict) -> None:
    failures = []
    for route, kwargs, status, code in _cases(world):
        method, path = route.split(" ", 1)
        before = aws.snapshot()
        reply = api.call(method, path, **kwargs)
        if reply.status != status or not isinstance(reply.body, dict) or reply.body.get("code") != code:
            failures.append(f"{route}: {reply.status} {reply.body} (wanted {status} {code})")
        elif not reply.body.get("message"):
            failures.append(f"{route}: no message")
        if aws.snapshot() != before:
            failures.append(f"{route}: changed the table or the queue")
    assert not failures, "\n".join(failures)


def test_booking_refusals_on_a_closed_job(api: Api, aws: Aws, world: dict) -> None:
    assert api.book("alice", world["job"], world["a1"]).status == 200
    before = aws.snapshot()
    # another application on the closed job
    reply = api.book("alice", world["job"], world["a2"])
    assert (reply.status, reply.body["code"]) == (409, "JOB_NOT_OPEN")
    # applying to the closed job
    reply = api.call("POST", f"/jobs/{world['job']}/applications", user="zoe", role="nanny", body={})
    assert (reply.status, reply.body["code"]) == (409, "JOB_NOT_OPEN")
    assert aws.snapshot() == before


def test_booking_an_application_that_is_not_pending(api: Api, aws: Aws, world: dict) -> None:
    # bob's job: book nina, let the worker run, then try to book on alice's job an application already declined
    job = api.create_job("dora")
    a = api.apply("nina", job["jobId"])
    b = api.apply("olga", job["jobId"])
    aws.dynamodb.update_item(
        TableName=aws.table,
        Key={"PK": {"S": f"JOB#{job['jobId']}"}, "SK": {"S": f"APPLICATION#{b['applicationId']}"}},
        UpdateExpression="SET #s = :d",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":d": {"S": "DECLINED"}},
    )  # fmt: skip
    before = aws.snapshot()
    reply = api.book("dora", job["jobId"], b["applicationId"])
    assert (reply.status, reply.body["code"]) == (409, "APPLICATION_NOT_PENDING")
    assert aws.snapshot() == before
    assert api.book("dora", job["jobId"], a["applicationId"]).status == 200


def test_missing_token_is_401_and_a_bad_one_403(api: Api, aws: Aws) -> None:
    before = aws.snapshot()
    assert api.call("POST", "/jobs", body=job_body()).status == 401
    assert api.call("POST", "/jobs", body=job_body(), token="Bearer garbage").status == 403
    assert api.call("GET", "/jobs", token="Basic dXNlcjpwYXNz").status == 403
    assert aws.snapshot() == before
