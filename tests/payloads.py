"""Request bodies the tests send."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def job_body(**fields: Any) -> dict[str, Any]:
    start = datetime.now(UTC) + timedelta(days=2)
    body = {
        "title": "Saturday evening",
        "startsAt": start.isoformat().replace("+00:00", "Z"),
        "endsAt": (start + timedelta(hours=4)).isoformat().replace("+00:00", "Z"),
    }
    body.update(fields)
    return body
