"""Who may do what: role, route and ownership, and a denied request writes nothing."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import Api, Aws, job_body

# caller name -> (user, role); None is a request without a token
CALLERS: dict[str, tuple[str, str] | None] = {
    "owner": ("olivia", "parent"),
    "other parent": ("peter", "parent"),
    "nanny": ("nina", "nanny"),
    "nobody": None,
}

# route -> expected status per caller
MATRIX: dict[str, dict[str, int]] = {
    "POST /jobs": {"owner": 201, "other parent": 201, "nanny": 403, "nobody": 401},
    "GET /jobs": {"owner": 200, "other parent": 200, "nanny": 200, "nobody": 401},
    "GET /jobs/{job}": {"owner": 200, "other parent": 200, "nanny": 200, "nobody": 401},
    "POST /jobs/{job}/applications": {"owner": 403, "other parent": 403, "nanny": 201, "nobody": 401},
    "GET /jobs/{job}/applications": {"owner": 200, "other parent": 403, "nanny": 403, "nobody": 401},
    "POST /jobs/{job}/book": {"owner": 200, "other parent": 403, "nanny": 403, "nobody": 401},
    "GET /me/jobs": {"owner": 200, "other parent": 200, "nanny": 200, "nobody": 401},
    "GET /me/applications": {"owner": 200, "other parent": 200, "nanny": 200, "nobody": 401},
}


def _body(route: str, app_id: str) -> Any:
    if route == "POST /jobs":
        return job_body()
    if route.endswith("/book"):
        return {"applicationId": app_id}
    return {} if route.startswith("POST") else None


def test_role_route_ownership_matrix(api: Api, aws: Aws) -> None:
    wrong = []
    for route, expected in MATRIX.items():
        for caller, status in expected.items():
            # a fresh job of the owner's with one application from someone else
            job = api.create_job("olivia")
            app_id = api.apply("zara", job["jobId"])["applicationId"]
            method, path = route.split(" ", 1)
            who = CALLERS[caller]
            kwargs: dict[str, Any] = {"body": _body(route, app_id)}
            if who:
                kwargs.update(user=who[0], role=who[1])
            before = aws.snapshot()
            reply = api.call(method, path.format(job=job["jobId"]), **kwargs)
            if reply.status != status:
                wrong.append(f"{caller} {route}: {reply.status} (wanted {status}) {reply.body}")
            if reply.status >= 400 and aws.snapshot() != before:
                wrong.append(f"{caller} {route}: denied but wrote")
    assert not wrong, "\n".join(wrong)


def test_a_nanny_sees_only_her_own_applications(api: Api) -> None:
    job = api.create_job("olivia")
    api.apply("zara", job["jobId"])
    mine = api.call("GET", "/me/applications", user="nina", role="nanny").body
    assert mine["items"] == []
