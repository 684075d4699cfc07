"""The whole story through HTTP: post, list, apply, book, then the worker declines."""

from __future__ import annotations

from tests.integration.conftest import Api, Aws, run_worker


def test_job_lifecycle_books_one_and_declines_the_rest(api: Api, aws: Aws, client) -> None:
    # Given a parent's job with four applicants
    job = api.create_job("alice", hourlyRate=18.5, location="Leeds", description="Two kids")
    assert job["status"] == "OPEN" and job["ownerName"] == "alice" and job["hourlyRate"] == 18.5
    listed = api.call("GET", "/jobs", user="nina", role="nanny")
    assert listed.status == 200 and job["jobId"] in [j["jobId"] for j in listed.body["items"]]
    apps = [api.apply(f"nanny{i}", job["jobId"], message=f"hello {i}") for i in range(4)]
    assert all(a["status"] == "PENDING" for a in apps)

    # When she books the second one
    reply = api.book("alice", job["jobId"], apps[1]["applicationId"])

    # Then the job is closed for that application and three declines are queued
    assert reply.status == 200, reply.body
    assert reply.body["acceptedApplicationId"] == apps[1]["applicationId"]
    assert reply.body["declinesQueued"] == 3
    assert reply.body["job"]["status"] == "CLOSED"
    assert reply.body["job"]["acceptedApplicationId"] == apps[1]["applicationId"]
    assert aws.queue_depth() == 3

    # And once the worker has run, every other application is declined
    assert run_worker(client, aws) == 3
    statuses = {a["applicationId"]: a["status"] for a in api.applications("alice", job["jobId"])}
    assert statuses == {
        apps[0]["applicationId"]: "DECLINED",
        apps[1]["applicationId"]: "ACCEPTED",
        apps[2]["applicationId"]: "DECLINED",
        apps[3]["applicationId"]: "DECLINED",
    }
    fetched = api.call("GET", f"/jobs/{job['jobId']}", user="nanny0", role="nanny").body
    assert fetched["status"] == "CLOSED" and fetched["acceptedApplicationId"] == apps[1]["applicationId"]
    # a closed job leaves the open listing
    listed = api.call("GET", "/jobs", user="nina", role="nanny")
    assert job["jobId"] not in [j["jobId"] for j in listed.body["items"]]


def test_me_routes_list_the_callers_own_things(api: Api) -> None:
    first = api.create_job("alice")
    second = api.create_job("alice")
    api.create_job("bob")
    mine = api.call("GET", "/me/jobs", user="alice").body["items"]
    assert [j["jobId"] for j in mine] == [second["jobId"], first["jobId"]]  # newest first

    a1 = api.apply("nina", first["jobId"])
    a2 = api.apply("nina", second["jobId"])
    api.apply("olga", first["jobId"])
    mine = api.call("GET", "/me/applications", user="nina", role="nanny").body["items"]
    assert [a["applicationId"] for a in mine] == [a2["applicationId"], a1["applicationId"]]


def test_listings_paginate_with_next_tokens(api: Api) -> None:
    created = [api.create_job("carol")["jobId"] for _ in range(5)]
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        path = "/me/jobs?limit=2" + (f"&nextToken={token}" if token else "")
        reply = api.call("GET", path, user="carol")
        assert reply.status == 200
        assert len(reply.body["items"]) <= 2
        seen += [j["jobId"] for j in reply.body["items"]]
        pages += 1
        token = reply.body["nextToken"]
        if not token:
            break
    assert seen == list(reversed(created))
    assert pages >= 3
