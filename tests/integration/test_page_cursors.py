"""A signed page token still only resumes the listing it came from: the store checks the cursor's partition."""

from __future__ import annotations

from chalicelib import bootstrap
from tests.integration.conftest import Api, Aws


def test_a_cursor_into_another_owner_s_jobs_is_refused(api: Api, aws: Aws) -> None:
    # Given two parents with jobs, and a token validly signed for alice's listing
    # but carrying a position in bob's partition (a leaked secret, a bug in signing)
    for owner in ("alice", "bob", "bob"):
        api.create_job(owner)
    bob_jobs = api.call("GET", "/me/jobs?limit=1", user="bob").body
    bob_last = bob_jobs["items"][0]["jobId"]
    forged = {"PK": f"JOB#{bob_last}", "SK": "JOB", "GSI2PK": "USER#bob", "GSI2SK": f"JOB#{bob_last}"}
    token = bootstrap.page_tokens().encode("me:alice:jobs", forged)

    reply = api.call("GET", f"/me/jobs?nextToken={token}", user="alice")

    assert (reply.status, reply.body["code"]) == (400, "INVALID_NEXT_TOKEN")


def test_a_cursor_into_another_job_s_applications_is_refused(api: Api, aws: Aws) -> None:
    mine, theirs = api.create_job("alice")["jobId"], api.create_job("bob")["jobId"]
    api.apply("nina", mine)
    other_app = api.apply("nina", theirs)["applicationId"]
    token = bootstrap.page_tokens().encode(
        f"jobs:{mine}:applications", {"PK": f"JOB#{theirs}", "SK": f"APPLICATION#{other_app}"}
    )

    reply = api.call("GET", f"/jobs/{mine}/applications?nextToken={token}", user="alice")

    assert (reply.status, reply.body["code"]) == (400, "INVALID_NEXT_TOKEN")


def test_a_cursor_of_the_same_listing_resumes_it(api: Api, aws: Aws) -> None:
    job_id = api.create_job("alice")["jobId"]
    apps = [api.apply(f"n{i}", job_id)["applicationId"] for i in range(3)]
    first = api.call("GET", f"/jobs/{job_id}/applications?limit=2", user="alice").body
    rest = api.call("GET", f"/jobs/{job_id}/applications?nextToken={first['nextToken']}", user="alice").body
    assert [a["applicationId"] for a in first["items"] + rest["items"]] == apps
