"""Request input: ids, query parameters, the JSON body and each route's fields, validated before any use case runs."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from chalicelib.domain import (
    Caller,
    Forbidden,
    InvalidInput,
    NewJob,
    format_time,
    is_valid_id,
    utc_now,
)

MAX_BODY_BYTES = 16 * 1024
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_JOB_LENGTH = timedelta(days=31)
MAX_LEAD_TIME = timedelta(days=730)
_PAST_TOLERANCE = timedelta(minutes=1)


def require_caller(context: Mapping[str, Any] | None, parse: Callable[[Any], Caller | None]) -> Caller:
    caller = parse((context or {}).get("authorizer"))
    if caller is None:  # only reachable if a route were left without the authorizer
        raise Forbidden("No verified caller.", code="UNAUTHENTICATED")
    return caller


def path_id(value: str, name: str) -> str:
    if not is_valid_id(value):
        raise InvalidInput(f"{name} is not a valid id.", code="INVALID_ID", field=name)
    return value


def query_params(
    params: Mapping[str, str] | None, allowed: AbstractSet[str] = frozenset({"limit", "nextToken"})
) -> tuple[int, str | None]:
    params = params or {}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidInput(f"Unknown query parameter: {unknown[0]}.", code="INVALID_QUERY", field=unknown[0])
    limit = DEFAULT_LIMIT
    raw = params.get("limit")
    if raw is not None:
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_LIMIT):
            raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIMIT}.", code="INVALID_QUERY", field="limit")
        limit = int(raw)
    return limit, params.get("nextToken")


_IDEMPOTENCY_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")


def idempotency_key(headers: Mapping[str, str] | None) -> str | None:
    """The optional ``Idempotency-Key`` header: 1-255 visible ASCII characters."""
    value = (headers or {}).get("idempotency-key")
    if value is None:
        return None
    if not _IDEMPOTENCY_KEY_RE.match(value):
        raise InvalidInput(
            "Idempotency-Key must be 1 to 255 visible ASCII characters.",
            code="INVALID_IDEMPOTENCY_KEY",
            field="Idempotency-Key",
        )
    return value


def json_body(raw: bytes | str | None) -> dict[str, Any]:
    if isinstance(raw, str):  # Chalice's raw_body is typed so; it is bytes in practice
        raw = raw.encode("utf-8")
    if raw is not None and len(raw) > MAX_BODY_BYTES:
        raise InvalidInput(f"The body exceeds {MAX_BODY_BYTES} bytes.", code="BODY_TOO_LARGE")
    if not raw:
        return {}
    try:
        data = json.loads(
            raw.decode("utf-8"),
            parse_float=Decimal,
            parse_constant=_reject_constant,
            object_pairs_hook=_object_without_duplicates,
        )
    except (UnicodeDecodeError, ValueError, RecursionError, ArithmeticError):
        # RecursionError: nesting deeper than the interpreter's stack; ArithmeticError: a
        # number `decimal` cannot hold (1e-9999999999999999999). Still just bad JSON.
        raise InvalidInput("The body is not valid JSON.", code="INVALID_JSON") from None
    except _DuplicateKey as dup:
        raise InvalidInput(f"The body repeats the key {dup.key!r}.", code="INVALID_JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("The body must be a JSON object.", code="INVALID_BODY")
    return data


def _reject_constant(name: str) -> None:
    raise ValueError(name)


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key[:100]


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Refuses a repeated key: parsers differ on which one wins, so nobody may rely on it."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _DuplicateKey(key)
        data[key] = value
    return data


def only_fields(body: Mapping[str, Any], allowed: AbstractSet[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(f"Unknown field: {unknown[0]}.", code="UNKNOWN_FIELD", field=unknown[0])


def text(
    body: Mapping[str, Any], name: str, *, max_len: int, required: bool = False, multiline: bool = False
) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidInput(f"{name} is required.", code="INVALID_BODY", field=name)
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string.", code="INVALID_BODY", field=name)
    value = value.strip()
    allowed_controls = {"\n", "\t"} if multiline else set()
    if any(unicodedata.category(c) in {"Cc", "Cs"} and c not in allowed_controls for c in value):
        raise InvalidInput(f"{name} contains control characters.", code="INVALID_BODY", field=name)
    if required and not value:
        raise InvalidInput(f"{name} must not be empty.", code="INVALID_BODY", field=name)
    if len(value) > max_len:
        raise InvalidInput(f"{name} is longer than {max_len} characters.", code="INVALID_BODY", field=name)
    return value or None


def instant(body: Mapping[str, Any], name: str) -> datetime:
    value = body.get(name)
    if not isinstance(value, str) or len(value) > 40:
        raise InvalidInput(f"{name} must be an ISO 8601 date-time.", code="INVALID_BODY", field=name)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name} must be an ISO 8601 date-time.", code="INVALID_BODY", field=name) from None
    if parsed.tzinfo is None:
        raise InvalidInput(f"{name} must include a time zone (e.g. Z).", code="INVALID_BODY", field=name)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 has no UTC equivalent
        raise InvalidInput(f"{name} is out of range.", code="INVALID_BODY", field=name) from None


def new_job(body: Mapping[str, Any]) -> NewJob:
    only_fields(body, {"title", "startsAt", "endsAt", "description", "hourlyRate", "location"})
    title = text(body, "title", max_len=200, required=True)
    starts, ends = instant(body, "startsAt"), instant(body, "endsAt")
    now = utc_now()
    if starts < now - _PAST_TOLERANCE:
        raise InvalidInput("startsAt must not be in the past.", code="INVALID_BODY", field="startsAt")
    if starts > now + MAX_LEAD_TIME:
        raise InvalidInput("startsAt is too far in the future.", code="INVALID_BODY", field="startsAt")
    if ends <= starts:
        raise InvalidInput("endsAt must be after startsAt.", code="INVALID_BODY", field="endsAt")
    if ends - starts > MAX_JOB_LENGTH:
        raise InvalidInput("A job lasts at most 31 days.", code="INVALID_BODY", field="endsAt")
    return NewJob(
        title=title or "",
        starts_at=format_time(starts),
        ends_at=format_time(ends),
        description=text(body, "description", max_len=4000, multiline=True),
        hourly_rate=_rate(body.get("hourlyRate")),
        location=text(body, "location", max_len=200),
    )


def _rate(value: object) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise InvalidInput("hourlyRate must be a number.", code="INVALID_BODY", field="hourlyRate")
    try:
        rate = Decimal(str(value))
        valid = rate.is_finite() and 0 < rate <= 10_000 and rate == rate.quantize(Decimal("0.01"))
    except ArithmeticError:  # an exponent past what `decimal` can compute with
        valid = False
    if not valid:
        raise InvalidInput(
            "hourlyRate must be positive, at most 10000, with at most 2 decimals.",
            code="INVALID_BODY",
            field="hourlyRate",
        )
    return rate.quantize(Decimal("0.01"))


def application_message(body: Mapping[str, Any]) -> str | None:
    only_fields(body, {"message"})
    return text(body, "message", max_len=1000, multiline=True)


def cancel_request(body: Mapping[str, Any]) -> str | None:
    """``{reason?}``: free text for the applicants, at most 500 characters."""
    only_fields(body, {"reason"})
    return text(body, "reason", max_len=500, multiline=True)


def empty_request(body: Mapping[str, Any]) -> None:
    """A route that takes no fields (an empty body or ``{}``)."""
    only_fields(body, set())


def booking_request(body: Mapping[str, Any]) -> str:
    only_fields(body, {"applicationId"})
    app_id = body.get("applicationId")
    if app_id is None:
        raise InvalidInput("applicationId is required.", code="INVALID_BODY", field="applicationId")
    if not isinstance(app_id, str) or not is_valid_id(app_id):
        raise InvalidInput("applicationId is not a valid id.", code="INVALID_ID", field="applicationId")
    return app_id
