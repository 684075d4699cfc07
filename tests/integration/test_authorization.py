"""Who may do what: role, route and ownership, and a denied request writes nothing."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import Api, Aws, job_body

# caller name -> (user, role); None is a request without a token
CALLERS: dict[str, tuple[str, str] | None] = {
    "owner": ("olivia", "parent"),
    "other parent": ("peter", "parent"),
    "nanny": ("nina", "nanny"),
    "applicant": ("zara", "nanny"),  # the nanny whose application is {app}
    "nobody": None,
}


def _row(owner: int, other_parent: int, nanny: int, applicant: int, nobody: int) -> dict[str, int]:
    return {"owner": owner, "other parent": other_parent, "nanny": nanny, "applicant": applicant, "nobody": nobody}


# route -> expected status per caller: owner, other parent, nanny, applicant, nobody
MATRIX: dict[str, dict[str, int]] = {
    "POST /jobs": _row(201, 201, 403, 403, 401),
    "GET /jobs": _row(200, 200, 200, 200, 401),
    "GET /jobs/{job}": _row(200, 200, 200, 200, 401),
    "POST /jobs/{job}/applications": _row(403, 403, 201, 409, 401),
    "GET /jobs/{job}/applications": _row(200, 403, 403, 403, 401),
    "GET /jobs/{job}/applications/{app}": _row(200, 403, 403, 200, 401),
    "POST /jobs/{job}/applications/{app}/withdraw": _row(403, 403, 403, 200, 401),
    "POST /jobs/{job}/book": _row(200, 403, 403, 403, 401),
    "POST /jobs/{job}/cancel": _row(200, 403, 403, 403, 401),
    "GET /me/jobs": _row(200, 200, 200, 200, 401),
    "GET /me/applications": _row(200, 200, 200, 200, 401),
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
            reply = api.call(method, path.format(job=job["jobId"], app=app_id), **kwargs)
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
