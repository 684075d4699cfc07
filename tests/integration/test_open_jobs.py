"""GET /jobs over the sharded openJobs index: every open job once, newest first, and cursors that cannot be bent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from chalicelib import bootstrap
from chalicelib import items as it
from chalicelib.domain import Job, JobStatus, format_time, new_id, utc_now
from chalicelib.shards import max_reads
from tests.integration.conftest import Api, Aws


def _all_pages(api: Api, limit: int) -> tuple[list[str], int]:
    seen: list[str] = []
    token, pages = None, 0
    while True:
        path = f"/jobs?limit={limit}" + (f"&nextToken={token}" if token else "")
        reply = api.call("GET", path, user="nina", role="nanny")
        assert reply.status == 200, reply.body
        assert len(reply.body["items"]) <= limit
        assert all(j["status"] == "OPEN" for j in reply.body["items"])
        seen += [j["jobId"] for j in reply.body["items"]]
        pages += 1
        token = reply.body["nextToken"]
        if not token:
            return seen, pages


def test_paging_over_many_jobs_across_shards_returns_each_open_job_once_newest_first(api: Api, aws: Aws) -> None:
    # Given 40 jobs spread over the shards, two of them booked (so no longer open)
    jobs = [api.create_job(f"parent{i % 3}")["jobId"] for i in range(40)]
    for job_id in (jobs[5], jobs[33]):
        # a nanny of its own for each: both jobs are at the same time, and a nanny is booked once at a time
        app_id = api.apply(f"nina-{job_id}", job_id)["applicationId"]
        assert api.book(f"parent{jobs.index(job_id) % 3}", job_id, app_id).status == 200
    # each listing sits in its own job's shard (how evenly ids spread is tests/unit/test_shards.py's)
    open_jobs = [j for j in jobs if j not in (jobs[5], jobs[33])]
    stored = {i["GSI3PK"]["S"] for i in aws.items() if "GSI3PK" in i}
    assert stored == {it.open_partition(it.open_shard(j)) for j in open_jobs}

    # When a nanny pages through GET /jobs, 7 at a time
    seen, pages = _all_pages(api, 7)

    # Then every open job comes exactly once, newest first
    expected = [j for j in reversed(jobs) if j not in (jobs[5], jobs[33])]
    assert seen == expected
    assert pages == 6  # 38 jobs: five full pages and one of three
    # and one page of everything agrees
    assert _all_pages(api, 100) == (expected, 1)


def _signed(cursor: Any, scope: str = "jobs:open") -> str:
    return bootstrap.page_tokens().encode(scope, cursor)


@pytest.mark.parametrize(
    "bend",
    [
        "signature",
        "another listing",
        "a shard out of range",
        "a job of another shard",
        "not an id",
        "the old single-partition key",
        "no shards",
    ],
)
def test_a_tampered_or_bent_cursor_is_refused(api: Api, aws: Aws, bend: str) -> None:
    jobs = [api.create_job("alice")["jobId"] for _ in range(4)]
    first = api.call("GET", "/jobs?limit=2", user="alice").body
    token = first["nextToken"]
    assert token
    # An id of another shard by construction (four random jobs can share one shard).
    other_shard = next(i for i in iter(new_id, None) if it.open_shard(i) != it.open_shard(jobs[0]))
    tokens = {
        "signature": token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB"),
        "another listing": _signed({"shards": {str(it.open_shard(jobs[0])): jobs[0]}}, scope="me:alice:jobs"),
        "a shard out of range": _signed({"shards": {str(it.OPEN_JOB_SHARDS): jobs[0]}}),
        "a job of another shard": _signed({"shards": {str(it.open_shard(jobs[0])): other_shard}}),
        "not an id": _signed({"shards": {str(it.open_shard(jobs[0])): "JOB#x"}}),
        "the old single-partition key": _signed(
            {"PK": f"JOB#{jobs[0]}", "SK": "JOB", "GSI3PK": "JOBS#OPEN", "GSI3SK": f"JOB#{jobs[0]}"}
        ),
        "no shards": _signed({"shards": {}}),
    }
    before = aws.snapshot()

    reply = api.call("GET", f"/jobs?nextToken={tokens[bend]}", user="alice")

    assert (reply.status, reply.body["code"]) == (400, "INVALID_NEXT_TOKEN")
    assert aws.snapshot() == before
    # while the token as issued resumes the listing
    rest = api.call("GET", f"/jobs?nextToken={token}", user="alice").body["items"]
    assert [j["jobId"] for j in first["items"] + rest] == list(reversed(jobs))


def _stale_listings(aws: Aws, count: int) -> None:
    """Listings of jobs that started an hour ago, which TTL has not deleted yet."""
    started = utc_now() - timedelta(hours=1)
    requests = []
    for _ in range(count):
        job = Job(
            job_id=new_id(),
            owner="someone",
            status=JobStatus.OPEN,
            title="Past",
            starts_at=format_time(started),
            ends_at=format_time(started + timedelta(hours=2)),
            created_at=format_time(started - timedelta(days=1)),
        )
        requests.append({"PutRequest": {"Item": it.serialize(it.listing_item(job))}})
    for i in range(0, len(requests), 25):
        assert not aws.dynamodb.batch_write_item(RequestItems={aws.table: requests[i : i + 25]}).get("UnprocessedItems")


@pytest.mark.parametrize("limit", [6, 20])
def test_one_page_s_work_is_bounded_among_thousands_of_started_jobs(api: Api, aws: Aws, limit: int) -> None:
    # Given 5 open jobs among 2,000 listings of jobs that have started
    _stale_listings(aws, 2000)
    live = [api.create_job("alice")["jobId"] for _ in range(5)]
    queries: list[int] = []
    bootstrap.dynamodb_client().meta.events.register("before-call.dynamodb.Query", lambda **_: queries.append(1))

    # When a nanny pages through GET /jobs
    seen: list[str] = []
    token, per_page = None, []
    while True:
        before = len(queries)
        reply = api.call("GET", f"/jobs?limit={limit}" + (f"&nextToken={token}" if token else ""), user="nina")
        assert reply.status == 200, reply.body
        per_page.append(len(queries) - before)
        seen += [j["jobId"] for j in reply.body["items"]]
        token = reply.body["nextToken"]
        if not token:
            break

    # Then no page took more than its bound of queries, and every open job came once, newest first
    assert max(per_page) <= max_reads(it.OPEN_JOB_SHARDS), per_page
    assert seen == list(reversed(live))
