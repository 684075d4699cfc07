"""Identity is the token's ``sub``: a username given to a new account inherits nothing."""

from __future__ import annotations

from typing import Any

from tests.conftest import TokenFactory, user_id
from tests.integration.conftest import Api, Aws, job_body


def _as(make_token: TokenFactory, user: str, sub: str, group: str = "parents", **claims: Any) -> str:
    return "Bearer " + make_token(user, [group], sub=sub, **claims)


def test_a_new_account_with_a_freed_username_owns_nothing_of_the_old_one(
    api: Api, aws: Aws, make_token: TokenFactory
) -> None:
    # Given a job posted by "alice" and an application to it
    job = api.create_job("alice")
    application = api.apply("nina", job["jobId"])
    before = sorted(str(i) for i in aws.items())
    # When alice deletes her account and a stranger signs up as "alice" (a new sub)
    impostor = _as(make_token, "alice", "a-different-sub")
    job_path = f"/jobs/{job['jobId']}"
    # Then the stranger cannot see the applicants, book, cancel, or find the job as theirs
    assert api.call("GET", f"{job_path}/applications", token=impostor).status == 403
    assert api.call("GET", f"{job_path}/applications/{application['applicationId']}", token=impostor).status == 403
    booked = api.call("POST", f"{job_path}/book", token=impostor, body={"applicationId": application["applicationId"]})
    assert (booked.status, booked.body["code"]) == (403, "NOT_JOB_OWNER")
    assert api.call("POST", f"{job_path}/cancel", token=impostor, body={}).status == 403
    assert api.call("GET", "/me/jobs", token=impostor).body["items"] == []
    assert sorted(str(i) for i in aws.items()) == before
    # while the real alice (her sub) still owns it
    assert api.call("GET", f"{job_path}/applications", user="alice").status == 200


def test_owner_and_applicant_are_user_ids_and_names_are_display_data(api: Api, make_token: TokenFactory) -> None:
    job = api.create_job("alice")
    assert (job["owner"], job["ownerName"]) == (user_id("alice"), "alice")
    application = api.apply("nina", job["jobId"])
    assert (application["applicant"], application["applicantName"]) == (user_id("nina"), "nina")
    # A renamed account (same sub) keeps its job and its application
    renamed = _as(make_token, "alice-smith", user_id("alice"))
    mine = api.call("GET", "/me/jobs", token=renamed).body["items"]
    assert [j["jobId"] for j in mine] == [job["jobId"]]
    nina_renamed = _as(make_token, "nina-b", user_id("nina"), group="nannies")
    path = f"/jobs/{job['jobId']}/applications/{application['applicationId']}/withdraw"
    assert api.call("POST", path, token=nina_renamed, body={}).status == 200


def test_an_email_is_kept_for_notifications_but_never_answered(api: Api, aws: Aws, make_token: TokenFactory) -> None:
    token = _as(make_token, "carol", user_id("carol"), email="carol@example.com")
    created = api.call("POST", "/jobs", token=token, body=job_body())
    assert created.status == 201
    assert "carol@example.com" not in str(created.body)
    stored = [i for i in aws.items() if i.get("jobId", {}).get("S") == created.body["jobId"] and i["SK"]["S"] == "JOB"]
    assert stored[0]["ownerEmail"]["S"] == "carol@example.com"
    nanny = _as(make_token, "nora", user_id("nora"), group="nannies", email="nora@example.com")
    applied = api.call("POST", f"/jobs/{created.body['jobId']}/applications", token=nanny, body={})
    assert applied.status == 201 and "nora@example.com" not in str(applied.body)
    listed = api.call("GET", f"/jobs/{created.body['jobId']}/applications", token=token)
    assert "nora@example.com" not in str(listed.body)
