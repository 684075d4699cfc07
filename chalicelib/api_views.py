"""JSON views: what a job, an application and a page look like on the wire."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from chalice import Response

from chalicelib.domain import (
    Application,
    Job,
    Page,
)

T = TypeVar("T")


def job_json(job: Job) -> dict[str, Any]:
    out: dict[str, Any] = {
        "jobId": job.job_id,
        "owner": job.owner,
        "status": job.status.value,
        "title": job.title,
        "startsAt": job.starts_at,
        "endsAt": job.ends_at,
        "createdAt": job.created_at,
    }
    if job.owner_name is not None:
        out["ownerName"] = job.owner_name
    if job.description is not None:
        out["description"] = job.description
    if job.hourly_rate is not None:
        out["hourlyRate"] = _number(job.hourly_rate)
    if job.location is not None:
        out["location"] = job.location
    if job.accepted_application_id is not None:
        out["acceptedApplicationId"] = job.accepted_application_id
    if job.closed_at is not None:
        out["closedAt"] = job.closed_at
    if job.cancelled_at is not None:
        out["cancelledAt"] = job.cancelled_at
    if job.cancel_reason is not None:
        out["cancelReason"] = job.cancel_reason
    if job.expired_at is not None:
        out["expiredAt"] = job.expired_at
    if job.completed_at is not None:
        out["completedAt"] = job.completed_at
    return out


def application_json(app: Application) -> dict[str, Any]:
    out: dict[str, Any] = {
        "applicationId": app.application_id,
        "jobId": app.job_id,
        "applicant": app.applicant,
        "status": app.status.value,
        "createdAt": app.created_at,
        "updatedAt": app.updated_at,
    }
    if app.applicant_name is not None:
        out["applicantName"] = app.applicant_name
    if app.message is not None:
        out["message"] = app.message
    if app.reason is not None:
        out["reason"] = app.reason.value
    return out


def page_json(page: Page[T], render: Callable[[T], dict[str, Any]], next_token: str | None) -> dict[str, Any]:
    return {"items": [render(i) for i in page.items], "nextToken": next_token}


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def created(body: dict[str, Any], *, new: bool = True) -> Response:
    """201 for what this request created; 200 for a replay of an earlier one."""
    return Response(body=body, status_code=201 if new else 200, headers={"Content-Type": "application/json"})
