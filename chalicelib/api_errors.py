"""The one map from domain errors to HTTP statuses, and the error body every refusal shares."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec

from chalice import Response

from chalicelib.domain import (
    AlreadyApplied,
    ApplicationNotFound,
    Conflict,
    DeclinesNotQueued,
    DomainError,
    Forbidden,
    IdempotencyKeyReused,
    InvalidInput,
    JobNotFound,
    Unavailable,
)
from chalicelib.observability import logger

P = ParamSpec("P")

_STATUS: list[tuple[type[DomainError], int]] = [
    (InvalidInput, 400),
    (Forbidden, 403),
    (JobNotFound, 404),
    (ApplicationNotFound, 404),
    (AlreadyApplied, 409),
    (Conflict, 409),
    (IdempotencyKeyReused, 422),
    (DeclinesNotQueued, 503),
    (Unavailable, 503),
]

# Chalice answers some requests itself (415, 405, ...) in its own error shape.
_CHALICE_CODES = {
    "UnsupportedMediaType": "UNSUPPORTED_MEDIA_TYPE",
    "MethodNotAllowedError": "METHOD_NOT_ALLOWED",
    "BadRequestError": "INVALID_REQUEST",
    "NotFoundError": "NOT_FOUND",
    "InternalServerError": "INTERNAL_ERROR",
}


def status_for(error: DomainError) -> int:
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 400


def error_response(status: int, code: str, message: str, details: Mapping[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = dict(details)
    headers: dict[str, str | list[str]] = {"Content-Type": "application/json"}
    if status == 503:
        headers["Retry-After"] = "1"
    return Response(body=body, status_code=status, headers=headers)


def json_view(fn: Callable[P, Response | dict[str, Any]]) -> Callable[P, Response]:
    """Wraps a view: domain errors become their status, anything else a logged 500."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            result = fn(*args, **kwargs)
        except DomainError as err:
            status = status_for(err)
            log = logger.error if status >= 500 else logger.info
            log("request refused", extra={"code": err.code, "status": status})
            return error_response(status, err.code, err.message, err.details)
        except Exception:
            logger.exception("unhandled error")
            return error_response(500, "INTERNAL_ERROR", "An internal error occurred.")
        if isinstance(result, Response):
            return result
        return Response(body=result, status_code=200, headers={"Content-Type": "application/json"})

    return wrapper


def normalize_framework_errors(response: Response) -> Response:
    """Rewrites Chalice's own ``{"Code", "Message"}`` errors into ours."""
    body = response.body
    if response.status_code >= 400 and isinstance(body, dict) and "Code" in body:
        code = _CHALICE_CODES.get(str(body.get("Code")), "INVALID_REQUEST")
        return error_response(response.status_code, code, str(body.get("Message", "")))
    return response
