"""Books a nanny out of 20 applicants against a running local stack: ``python -m tools.local.demo``.

A parent posts a job, 20 nannies apply, the parent books one; the demo then waits
until the decline worker has declined every other application and prints each
application's final status with the timings. Exits 1 if the outcome is wrong or
any request fails. ``API_URL`` overrides the default http://127.0.0.1:8000.
"""

from __future__ import annotations

import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from tools.local.tokens import make_token

NANNIES = 20
DECLINE_TIMEOUT_SECONDS = 30.0


class DemoFailed(Exception):
    pass


class Api:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()

    def call(self, method: str, path: str, token: str, **kwargs: Any) -> dict[str, Any]:
        try:
            resp = self.http.request(
                method, self.base_url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10, **kwargs
            )
        except requests.ConnectionError:
            raise DemoFailed(f"no API at {self.base_url}: start it with `make local`") from None
        if not 200 <= resp.status_code < 300:
            raise DemoFailed(f"{method} {path} answered {resp.status_code}: {resp.text[:300]}")
        return resp.json()

    def applications(self, job_id: str, token: str) -> list[dict[str, Any]]:
        """Every application of the job, following nextToken."""
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 10}
        while True:
            page = self.call("GET", f"/jobs/{job_id}/applications", token, params=params)
            items += page["items"]
            if not page.get("nextToken"):
                return items
            params["nextToken"] = page["nextToken"]


def run(api: Api) -> None:
    run_id = datetime.now(UTC).strftime("%H%M%S")
    parent = make_token(f"demo-parent-{run_id}", "parent")
    nannies = {f"demo-nanny-{i:02d}": make_token(f"demo-nanny-{i:02d}", "nanny") for i in range(1, NANNIES + 1)}

    start = datetime.now(UTC) + timedelta(days=1)
    job = api.call(
        "POST",
        "/jobs",
        parent,
        json={
            "title": "Saturday evening babysitting",
            "startsAt": start.isoformat(),
            "endsAt": (start + timedelta(hours=4)).isoformat(),
        },
    )
    job_id = job["jobId"]
    print(f"job {job_id} posted by {job['owner']}")
    applied = {
        name: api.call("POST", f"/jobs/{job_id}/applications", token, json={"message": f"Hi, I am {name}."})
        for name, token in nannies.items()
    }
    print(f"{len(applied)} nannies applied")

    chosen = random.choice(list(applied.values()))
    started = time.monotonic()
    booking = api.call("POST", f"/jobs/{job_id}/book", parent, json={"applicationId": chosen["applicationId"]})
    booked = time.monotonic()
    queued = booking["declinesQueued"]
    print(f"booked {chosen['applicantName']} in {(booked - started) * 1000:.0f} ms; {queued} declines queued")

    deadline = booked + DECLINE_TIMEOUT_SECONDS
    while True:
        final = api.applications(job_id, parent)
        if not any(a["status"] == "PENDING" for a in final) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    declined_after = time.monotonic() - booked

    print()
    print(f"{'applicant':<16} {'applicationId':<28} status")
    for a in sorted(final, key=lambda a: a["applicantName"]):
        print(f"{a['applicantName']:<16} {a['applicationId']:<28} {a['status']}")
    print()

    statuses = [a["status"] for a in final]
    accepted = [a for a in final if a["status"] == "ACCEPTED"]
    problems = []
    if len(final) != NANNIES:
        problems.append(f"{len(final)} applications listed, expected {NANNIES}")
    if [a["applicationId"] for a in accepted] != [chosen["applicationId"]]:
        problems.append(f"{len(accepted)} ACCEPTED, expected exactly the booked one")
    if statuses.count("PENDING"):
        problems.append(f"{statuses.count('PENDING')} still PENDING after {DECLINE_TIMEOUT_SECONDS:.0f} s")
    closed = api.call("GET", f"/jobs/{job_id}", parent)
    if closed["status"] != "CLOSED" or closed.get("acceptedApplicationId") != chosen["applicationId"]:
        problems.append(f"job is {closed['status']} with acceptedApplicationId={closed.get('acceptedApplicationId')}")
    if problems:
        raise DemoFailed("; ".join(problems))
    print(
        f"booking latency {(booked - started) * 1000:.0f} ms; "
        f"{statuses.count('DECLINED')} declines done {declined_after:.2f} s after the booking"
    )


def main() -> int:
    api = Api(os.environ.get("API_URL") or "http://127.0.0.1:8000")
    try:
        run(api)
    except DemoFailed as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
