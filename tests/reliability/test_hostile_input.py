"""Hostile input on every route, over the real HTTP server path (``chalice local``), table-driven.

Each request must be refused with a 4xx and a stable ``code`` (or, where the gateway
answers, its own ``message`` body), with a status the spec documents for that operation,
and must leave the table and both queues exactly as they were.
"""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

from chalicelib.pagination import PageTokens
from tests.reliability.conftest import FIGURES, SPEC, Stack, nanny_token, parent_token, unique
from tools.shared import stage_environment

pytestmark = pytest.mark.e2e

ERROR_CODES = set(SPEC["components"]["schemas"]["Error"]["properties"]["code"]["enum"])
NEVER_ISSUED = "01HZZZZZZZZZZZZZZZZZZZZZZZ"
JSON = {"Content-Type": "application/json"}


@dataclass
class Case:
    name: str
    method: str
    path: str  # {job}, {app}, {other_job}, {other_app} are filled in; sent as is (no re-encoding)
    status: int
    code: str | None  # None: a gateway answer, {"message"} or {"Message"}, no code
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    who: str = "owner"  # owner | nanny | nobody
    also: tuple[tuple[int, str], ...] = ()  # other acceptable (status, code) answers


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


_START = (datetime.now(UTC) + timedelta(days=10)).replace(hour=18, minute=0, second=0, microsecond=0)


def _at(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


START, END = _at(_START), _at(_START + timedelta(hours=4))


def _job(**fields: Any) -> bytes:
    """A valid job body (the world fixture checks it is accepted), changed as told; ``...`` drops a field."""
    body: dict[str, Any] = {"title": "Evening", "startsAt": START, "endsAt": END}
    body.update(fields)
    return _json({k: v for k, v in body.items() if v is not ...})


def _cases(w: dict[str, str]) -> list[Case]:
    job, app = w["job"], w["app"]
    cases = [
        # ---------------------------------------------------------- POST /jobs: bodies
        Case("deeply nested array", "POST", "/jobs", 400, "INVALID_JSON", b"[" * 5000 + b"]" * 5000),
        Case("deeply nested object", "POST", "/jobs", 400, "INVALID_JSON", b'{"a":' * 2000 + b"1" + b"}" * 2000),
        Case("nested title", "POST", "/jobs", 400, "INVALID_BODY", _job(title={"a": {"b": ["c"]}})),
        Case("1 MB body", "POST", "/jobs", 400, "BODY_TOO_LARGE", b'{"title":"' + b"x" * (1 << 20) + b'"}'),
        Case("16 KiB + 1 body", "POST", "/jobs", 400, "BODY_TOO_LARGE", b" " * (16 * 1024 - 1) + b"{}"),
        Case("UTF-8 BOM", "POST", "/jobs", 400, "INVALID_JSON", b"\xef\xbb\xbf" + _job()),
        Case("invalid UTF-8", "POST", "/jobs", 400, "INVALID_JSON", b'{"title":"\xff\xfe"}'),
        Case("UTF-16 JSON", "POST", "/jobs", 400, "INVALID_JSON", _job().decode().encode("utf-16")),
        Case("NaN", "POST", "/jobs", 400, "INVALID_JSON", b'{"title":"a","hourlyRate":NaN}'),
        Case("Infinity", "POST", "/jobs", 400, "INVALID_JSON", b'{"title":"a","hourlyRate":-Infinity}'),
        Case("trailing garbage", "POST", "/jobs", 400, "INVALID_JSON", _job() + b" {}"),
        Case("whitespace only", "POST", "/jobs", 400, "INVALID_JSON", b"  \n\t "),
        Case("JSON null", "POST", "/jobs", 400, "INVALID_BODY", b"null"),
        Case("JSON string", "POST", "/jobs", 400, "INVALID_BODY", b'"title"'),
        Case("JSON number", "POST", "/jobs", 400, "INVALID_BODY", b"42"),
        Case("empty body", "POST", "/jobs", 400, "INVALID_BODY", b""),
        # two parsers on the path could read a duplicated key differently: refused outright
        Case("duplicate key, last one bad", "POST", "/jobs", 400, "INVALID_JSON", b'{"title":"ok","title":5}'),
        Case("duplicate key, both good", "POST", "/jobs", 400, "INVALID_JSON", _job()[:-1] + b',"title":"b"}'),
        Case(
            "integer of 5000 digits",
            "POST",
            "/jobs",
            400,
            "INVALID_JSON",
            _job()[:-1] + b',"hourlyRate":' + b"9" * 5000 + b"}",
        ),
        Case("rate 1e999999", "POST", "/jobs", 400, "INVALID_BODY", _job()[:-1] + b',"hourlyRate":1e999999}'),
        Case("rate 1e-999999", "POST", "/jobs", 400, "INVALID_BODY", _job()[:-1] + b',"hourlyRate":1e-999999}'),
        Case("rate 0.001", "POST", "/jobs", 400, "INVALID_BODY", _job(hourlyRate=0.001)),
        Case("rate 10000.01", "POST", "/jobs", 400, "INVALID_BODY", _job(hourlyRate=10000.01)),
        Case("rate -0.0", "POST", "/jobs", 400, "INVALID_BODY", _job(hourlyRate=-0.0)),
        Case("rate as a list", "POST", "/jobs", 400, "INVALID_BODY", _job(hourlyRate=[12])),
        Case("rate as an object", "POST", "/jobs", 400, "INVALID_BODY", _job(hourlyRate={"$gt": 0})),
        Case("title NUL", "POST", "/jobs", 400, "INVALID_BODY", _job(title="a\u0000b")),
        Case(
            "title lone surrogate",
            "POST",
            "/jobs",
            400,
            "INVALID_BODY",
            _job(title="@").replace(b'"@"', b'"\\ud800"'),
        ),
        Case("title escape sequence", "POST", "/jobs", 400, "INVALID_BODY", _job(title="\u001b[31mred")),
        Case("title only spaces", "POST", "/jobs", 400, "INVALID_BODY", _job(title="   \t ")),
        Case("title 201 emoji", "POST", "/jobs", 400, "INVALID_BODY", _job(title="\U0001f476" * 201)),
        Case("title missing", "POST", "/jobs", 400, "INVALID_BODY", _job(title=...)),
        Case("title as bool", "POST", "/jobs", 400, "INVALID_BODY", _job(title=True)),
        Case("description 4001", "POST", "/jobs", 400, "INVALID_BODY", _job(description="d" * 4001)),
        Case("location newline", "POST", "/jobs", 400, "INVALID_BODY", _job(location="York\nLeeds")),
        Case("mass assignment: owner", "POST", "/jobs", 400, "UNKNOWN_FIELD", _job(owner="someone-else")),
        Case("mass assignment: status", "POST", "/jobs", 400, "UNKNOWN_FIELD", _job(status="CLOSED")),
        Case("mass assignment: jobId", "POST", "/jobs", 400, "UNKNOWN_FIELD", _job(jobId=NEVER_ISSUED)),
        Case("mass assignment: PK", "POST", "/jobs", 400, "UNKNOWN_FIELD", _job(PK="USER#x")),
        Case("__proto__", "POST", "/jobs", 400, "UNKNOWN_FIELD", _job(__proto__={"admin": True})),
        Case(
            "startsAt 30 Feb", "POST", "/jobs", 400, "INVALID_BODY", _job(startsAt=f"{_START.year + 1}-02-30T10:00:00Z")
        ),
        Case(
            "startsAt offset +99:00", "POST", "/jobs", 400, "INVALID_BODY", _job(startsAt=START.replace("Z", "+99:00"))
        ),
        Case("startsAt date only", "POST", "/jobs", 400, "INVALID_BODY", _job(startsAt=START[:10])),
        Case(
            "startsAt 10k chars",
            "POST",
            "/jobs",
            400,
            "INVALID_BODY",
            _job(startsAt=START + "0" * 10_000),
        ),
        Case("startsAt as epoch", "POST", "/jobs", 400, "INVALID_BODY", _job(startsAt=1924970400)),
        Case(
            "startsAt year 9999",
            "POST",
            "/jobs",
            400,
            "INVALID_BODY",
            _job(startsAt="9999-12-31T23:00:00Z", endsAt="9999-12-31T23:30:00Z"),
        ),
        Case(
            "startsAt before year 1 in UTC",
            "POST",
            "/jobs",
            400,
            "INVALID_BODY",
            _job(startsAt="0001-01-01T00:00:00+01:00"),
        ),
        Case(
            "endsAt after year 9999 in UTC",
            "POST",
            "/jobs",
            400,
            "INVALID_BODY",
            _job(endsAt="9999-12-31T23:30:00-01:00"),
        ),
        Case("endsAt == startsAt", "POST", "/jobs", 400, "INVALID_BODY", _job(endsAt=START)),
        Case(
            "32-day job", "POST", "/jobs", 400, "INVALID_BODY", _job(endsAt=_at(_START + timedelta(days=31, seconds=1)))
        ),
        # ------------------------------------------------------ content types
        Case("text/plain", "POST", "/jobs", 415, "UNSUPPORTED_MEDIA_TYPE", _job(), {"Content-Type": "text/plain"}),
        Case(
            "form",
            "POST",
            "/jobs",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            b"title=x",
            {"Content-Type": "application/x-www-form-urlencoded"},
        ),
        Case(
            "multipart",
            "POST",
            "/jobs",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            b"--x--",
            {"Content-Type": "multipart/form-data; boundary=x"},
        ),
        Case(
            "xml",
            "POST",
            f"/jobs/{job}/book",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            b"<a/>",
            {"Content-Type": "application/xml"},
        ),
        Case(
            "json lookalike",
            "POST",
            f"/jobs/{job}/applications",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            b"{}",
            {"Content-Type": "application/jsonx"},
            who="nanny",
        ),
        Case("empty content type", "POST", "/jobs", 415, "UNSUPPORTED_MEDIA_TYPE", _job(), {"Content-Type": ""}),
        Case("no content type: read as JSON", "POST", "/jobs", 400, "INVALID_BODY", _job(title=5), {}),
        Case(
            "GET with text/plain", "GET", "/jobs", 415, "UNSUPPORTED_MEDIA_TYPE", None, {"Content-Type": "text/plain"}
        ),
        # ----------------------------------------------------------- path ids
        Case("id with #", "GET", f"/jobs/{job}%23", 400, "INVALID_ID"),
        Case("id forging a key", "GET", f"/jobs/{job}%23APPLICATION%23{app}", 400, "INVALID_ID"),
        Case("id with /", "GET", f"/jobs/{job}%2F..%2F..%2Fme%2Fjobs", 400, "INVALID_ID"),
        Case("id double-encoded #", "GET", f"/jobs/{job}%2523", 400, "INVALID_ID"),
        Case("id with NUL", "GET", f"/jobs/{job[:-1]}%00", 400, "INVALID_ID"),
        Case("id with CRLF", "GET", f"/jobs/{job}%0D%0AX-Injected:%201", 400, "INVALID_ID"),
        Case("id lower case", "GET", f"/jobs/{job.lower()}", 400, "INVALID_ID"),
        Case("id with I L O U", "GET", "/jobs/01HILOUZZZZZZZZZZZZZZZZZZZ", 400, "INVALID_ID"),
        Case("id overflowing 48 bits", "GET", "/jobs/81HZZZZZZZZZZZZZZZZZZZZZZZ", 400, "INVALID_ID"),
        Case("id 25 chars", "GET", f"/jobs/{job[:-1]}", 400, "INVALID_ID"),
        Case("id 27 chars", "GET", f"/jobs/{job}0", 400, "INVALID_ID"),
        Case("id of 8000 chars", "GET", "/jobs/" + "0" * 8000, 400, "INVALID_ID"),
        Case("id unicode", "GET", "/jobs/%C3%84%C3%96%C3%9C", 400, "INVALID_ID"),
        Case("id fullwidth digits", "GET", "/jobs/" + "%EF%BC%90" * 26, 400, "INVALID_ID"),
        Case(
            "id percent-encoded",
            "GET",
            "/jobs/%30%31HZZZZZZZZZZZZZZZZZZZZZZZ",
            404,
            "JOB_NOT_FOUND",
            also=((400, "INVALID_ID"),),  # decoded (an unknown id) or not (not an id): both refuse
        ),
        Case(
            "apply to a forged id",
            "POST",
            f"/jobs/{job}%23APPLICANT%23x/applications",
            400,
            "INVALID_ID",
            b"{}",
            who="nanny",
        ),
        Case("list a forged id", "GET", "/jobs/USER%23alice/applications", 400, "INVALID_ID"),
        Case("book a forged id", "POST", f"/jobs/{job}%2F/book", 400, "INVALID_ID", _json({"applicationId": app})),
        # ------------------------------------------------------------ queries
        Case("limit 0", "GET", "/jobs?limit=0", 400, "INVALID_QUERY"),
        Case("limit -1", "GET", "/me/jobs?limit=-1", 400, "INVALID_QUERY"),
        Case("limit 101", "GET", "/me/applications?limit=101", 400, "INVALID_QUERY"),
        Case("limit 10**30", "GET", "/jobs?limit=" + "9" * 30, 400, "INVALID_QUERY"),
        Case("limit 1.5", "GET", f"/jobs/{job}/applications?limit=1.5", 400, "INVALID_QUERY"),
        Case("limit 1e1", "GET", "/jobs?limit=1e1", 400, "INVALID_QUERY"),
        Case("limit +5", "GET", "/jobs?limit=%2B5", 400, "INVALID_QUERY"),
        Case("limit fullwidth", "GET", "/jobs?limit=%EF%BC%91", 400, "INVALID_QUERY"),
        Case("limit arabic-indic", "GET", "/jobs?limit=%D9%A3", 400, "INVALID_QUERY"),
        Case("limit empty", "GET", "/jobs?limit=", 400, "INVALID_QUERY"),
        Case("unknown parameter", "GET", "/jobs?Limit=5", 400, "INVALID_QUERY"),
        Case("array parameter", "GET", "/me/jobs?limit[]=5", 400, "INVALID_QUERY"),
        Case("query on GET job", "GET", f"/jobs/{job}?limit=1", 400, "INVALID_QUERY"),
        Case("nextToken empty", "GET", "/jobs?nextToken=", 400, "INVALID_NEXT_TOKEN"),
        Case("nextToken dots", "GET", "/jobs?nextToken=a.b.c", 400, "INVALID_NEXT_TOKEN"),
        Case("nextToken 3000 chars", "GET", "/me/jobs?nextToken=" + "A" * 2990 + ".AAAA", 400, "INVALID_NEXT_TOKEN"),
        Case("nextToken not base64", "GET", "/me/jobs?nextToken=%21%21%21.%24%24", 400, "INVALID_NEXT_TOKEN"),
        Case("nextToken unsigned", "GET", "/jobs?nextToken=" + w["unsigned"], 400, "INVALID_NEXT_TOKEN"),
        Case(
            "nextToken of another listing",
            "GET",
            "/me/jobs?nextToken=" + w["open_jobs_token"],
            400,
            "INVALID_NEXT_TOKEN",
        ),
        Case(
            "nextToken of another job",
            "GET",
            f"/jobs/{job}/applications?nextToken=" + w["other_job_token"],
            400,
            "INVALID_NEXT_TOKEN",
        ),
        Case(
            "nextToken of another user",
            "GET",
            "/me/applications?nextToken=" + w["nanny_page_token"],
            400,
            "INVALID_NEXT_TOKEN",
        ),
        Case(
            "nextToken signed, other partition",
            "GET",
            "/me/jobs?nextToken=" + w["signed_other_partition"],
            400,
            "INVALID_NEXT_TOKEN",
        ),
        Case(
            "nextToken signed, extra key",
            "GET",
            "/me/jobs?nextToken=" + w["signed_extra_key"],
            400,
            "INVALID_NEXT_TOKEN",
        ),
        Case(
            "nextToken signed, outside prefix",
            "GET",
            f"/jobs/{job}/applications?nextToken=" + w["signed_bad_prefix"],
            400,
            "INVALID_NEXT_TOKEN",
        ),
        Case(
            "nextToken signed, huge key", "GET", "/me/jobs?nextToken=" + w["signed_huge_key"], 400, "INVALID_NEXT_TOKEN"
        ),
        # ---------------------------------------------------- applying, booking
        Case(
            "apply: 1001 chars",
            "POST",
            f"/jobs/{job}/applications",
            400,
            "INVALID_BODY",
            _json({"message": "m" * 1001}),
            who="nanny",
        ),
        Case(
            "apply: NUL",
            "POST",
            f"/jobs/{job}/applications",
            400,
            "INVALID_BODY",
            _json({"message": "hi\u0000"}),
            who="nanny",
        ),
        Case(
            "apply: as someone else",
            "POST",
            f"/jobs/{job}/applications",
            400,
            "UNKNOWN_FIELD",
            _json({"applicant": "olga"}),
            who="nanny",
        ),
        Case(
            "apply: pre-accepted",
            "POST",
            f"/jobs/{job}/applications",
            400,
            "UNKNOWN_FIELD",
            _json({"status": "ACCEPTED"}),
            who="nanny",
        ),
        Case("apply: JSON array", "POST", f"/jobs/{job}/applications", 400, "INVALID_BODY", b"[]", who="nanny"),
        Case("apply: 1 MB", "POST", f"/jobs/{job}/applications", 400, "BODY_TOO_LARGE", b" " * (1 << 20), who="nanny"),
        Case("book: null id", "POST", f"/jobs/{job}/book", 400, "INVALID_BODY", _json({"applicationId": None})),
        Case("book: id list", "POST", f"/jobs/{job}/book", 400, "INVALID_ID", _json({"applicationId": [app]})),
        Case("book: id object", "POST", f"/jobs/{job}/book", 400, "INVALID_ID", _json({"applicationId": {"S": app}})),
        Case("book: id number", "POST", f"/jobs/{job}/book", 400, "INVALID_ID", _json({"applicationId": 1})),
        Case("book: id with #", "POST", f"/jobs/{job}/book", 400, "INVALID_ID", _json({"applicationId": app + "#"})),
        Case(
            "book: the job's id",
            "POST",
            f"/jobs/{job}/book",
            404,
            "APPLICATION_NOT_FOUND",
            _json({"applicationId": job}),
        ),
        Case(
            "book: forced status",
            "POST",
            f"/jobs/{job}/book",
            400,
            "UNKNOWN_FIELD",
            _json({"applicationId": app, "status": "ACCEPTED"}),
        ),
        Case("book: invalid JSON", "POST", f"/jobs/{job}/book", 400, "INVALID_JSON", b'{"applicationId":'),
        Case(
            "book: 1 MB",
            "POST",
            f"/jobs/{job}/book",
            400,
            "BODY_TOO_LARGE",
            b'{"applicationId":"' + b"0" * (1 << 20) + b'"}',
        ),
        Case(
            "book another's job",
            "POST",
            f"/jobs/{w['other_job']}/book",
            403,
            "NOT_JOB_OWNER",
            _json({"applicationId": w["other_app"]}),
        ),
        # ------------------------------------- cancel, withdraw, read one application
        Case("cancel: forced status", "POST", f"/jobs/{job}/cancel", 400, "UNKNOWN_FIELD", _json({"status": "OPEN"})),
        Case("cancel: reason object", "POST", f"/jobs/{job}/cancel", 400, "INVALID_BODY", _json({"reason": {}})),
        Case("cancel: long reason", "POST", f"/jobs/{job}/cancel", 400, "INVALID_BODY", _json({"reason": "r" * 501})),
        Case("cancel: invalid JSON", "POST", f"/jobs/{job}/cancel", 400, "INVALID_JSON", b'{"reason":'),
        Case("cancel: 1 MB", "POST", f"/jobs/{job}/cancel", 400, "BODY_TOO_LARGE", b" " * (1 << 20)),
        Case("cancel another's job", "POST", f"/jobs/{w['other_job']}/cancel", 403, "NOT_JOB_OWNER", b"{}"),
        Case("cancel as a nanny", "POST", f"/jobs/{job}/cancel", 403, "ROLE_REQUIRED", b"{}", who="nanny"),
        Case(
            "withdraw another's application",
            "POST",
            f"/jobs/{job}/applications/{app}/withdraw",
            403,
            "NOT_APPLICANT",
            b"{}",
            who="nanny",
        ),
        Case(
            "withdraw: forced status",
            "POST",
            f"/jobs/{job}/applications/{app}/withdraw",
            400,
            "UNKNOWN_FIELD",
            _json({"status": "PENDING"}),
            who="nanny",
        ),
        Case(
            "withdraw: id with #",
            "POST",
            f"/jobs/{job}/applications/{app}%23/withdraw",
            400,
            "INVALID_ID",
            b"{}",
            who="nanny",
        ),
        Case(
            "withdraw an application of another job",
            "POST",
            f"/jobs/{job}/applications/{w['other_app']}/withdraw",
            404,
            "APPLICATION_NOT_FOUND",
            b"{}",
            who="nanny",
        ),
        Case("read another's application", "GET", f"/jobs/{job}/applications/{app}", 403, "NOT_APPLICANT", who="nanny"),
        Case(
            "read an application through another job",
            "GET",
            f"/jobs/{job}/applications/{w['other_app']}",
            404,
            "APPLICATION_NOT_FOUND",
        ),
        Case("read an application by a forged id", "GET", f"/jobs/{job}/applications/{app}%2F", 400, "INVALID_ID"),
        # ------------------------------------------------- methods and routes
        Case("DELETE a job", "DELETE", f"/jobs/{job}", 405, "METHOD_NOT_ALLOWED"),
        Case("PUT a booking", "PUT", f"/jobs/{job}/book", 405, "METHOD_NOT_ALLOWED", _json({"applicationId": app})),
        Case("PATCH the listing", "PATCH", "/jobs", 405, "METHOD_NOT_ALLOWED", b"{}"),
        Case("DELETE my jobs", "DELETE", "/me/jobs", 405, "METHOD_NOT_ALLOWED"),
        Case("no such route", "GET", "/admin", 403, None),
        Case("route too deep", "POST", f"/jobs/{job}/book/force", 403, None, _json({"applicationId": app})),
        Case("unencoded slash in id", "GET", f"/jobs/{job}/../me", 403, None),
        Case("no token, bad body", "POST", "/jobs", 401, None, b"[" * 5000, who="nobody"),
    ]
    return cases + _hostile_numbers(job, app)


# Numbers no parser may disagree on, on every route that reads a body: exponents past what
# `decimal` holds (at both ends), NaN and infinities, integers too long to read, and
# numbers that read fine but stand where a string, an id or nothing belongs.
UNREADABLE_NUMBERS = {
    "exponent -9999999999999999999": b"1e-9999999999999999999",
    "exponent +9999999999999999999": b"1e9999999999999999999",
    "exponent +99999999999999999999": b"-1E+99999999999999999999",
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "-Infinity": b"-Infinity",
    "5000 digits": b"9" * 5000,
    "-5000 digits": b"-" + b"9" * 5000,
}
MISPLACED_NUMBERS = {
    "-0": b"-0",
    "-0.0": b"-0.0",
    "exponent +999999": b"1e999999",
    "exponent -999999": b"1e-999999",
    "30 digits": b"123456789012345678901234567890",
}


def _hostile_numbers(job: str, app: str) -> list[Case]:
    # route: (path, the field the number stands in, the code when it reads fine, who)
    routes = {
        "post a job": ("/jobs", "hourlyRate", "INVALID_BODY", "owner"),
        "apply": (f"/jobs/{job}/applications", "message", "INVALID_BODY", "nanny"),
        "book": (f"/jobs/{job}/book", "applicationId", "INVALID_ID", "owner"),
        "cancel": (f"/jobs/{job}/cancel", "reason", "INVALID_BODY", "owner"),
        "withdraw": (f"/jobs/{job}/applications/{app}/withdraw", "n", "UNKNOWN_FIELD", "nanny"),
    }
    cases = []
    for route, (path, name, misplaced_code, who) in routes.items():
        base = _job() if route == "post a job" else b"{}"
        for numbers, code in ((UNREADABLE_NUMBERS, "INVALID_JSON"), (MISPLACED_NUMBERS, misplaced_code)):
            for label, number in numbers.items():
                body = base[:-1] + (b"," if base != b"{}" else b"") + f'"{name}":'.encode() + number + b"}"
                cases.append(Case(f"{route}: number {label}", "POST", path, 400, code, body, who=who))
        cases.append(
            Case(
                f"{route}: duplicate key",
                "POST",
                path,
                400,
                "INVALID_JSON",
                b'{"%s":"a","%s":"b"}' % (name.encode(), name.encode()),
                who=who,
            )
        )
    return cases


@pytest.fixture(scope="module")
def world(stack: Stack) -> dict[str, str]:
    """A job with two applications, another parent's job, and page tokens of every kind."""
    owner = unique("owner")
    owner_token = parent_token(owner)
    nanny = nanny_token()
    job = stack.create_job(owner_token)["jobId"]
    app = stack.apply(nanny, job)["applicationId"]
    stack.apply(nanny_token(), job)
    other_owner = parent_token()
    other_job = stack.create_job(other_owner)["jobId"]
    other_app = stack.apply(nanny_token(), other_job)["applicationId"]
    stack.apply(nanny_token(), other_job)
    # The base body the cases change one thing of is itself accepted.
    assert stack.call("POST", "/jobs", owner_token, data=_job(), headers=JSON).status_code == 201
    open_jobs_token = stack.ok("GET", "/jobs?limit=1", owner_token)["nextToken"]
    other_job_token = stack.ok("GET", f"/jobs/{other_job}/applications?limit=1", other_owner)["nextToken"]
    stack.apply(nanny, other_job)
    nanny_page = stack.ok("GET", "/me/applications?limit=1", nanny)["nextToken"]
    assert open_jobs_token and other_job_token and nanny_page
    # Tokens signed with the stage's own secret: even a leaked secret must not open another partition.
    tokens = PageTokens(stage_environment("local")["PAGE_TOKEN_SECRET"])
    scope = f"me:{owner}:jobs"
    return {
        "owner": owner,
        "owner_token": owner_token,
        "nanny": nanny_token(),
        "job": job,
        "app": app,
        "other_job": other_job,
        "other_app": other_app,
        "open_jobs_token": open_jobs_token,
        "other_job_token": other_job_token,
        "nanny_page_token": nanny_page,
        "unsigned": open_jobs_token.split(".")[0] + ".AAAAAAAAAAAAAAAAAAAAAAAA",
        "signed_other_partition": tokens.encode(scope, {"PK": "USER#someone-else", "SK": f"JOB#{other_job}"}),
        "signed_extra_key": tokens.encode(scope, {"PK": f"USER#{owner}", "SK": f"JOB#{job}", "GSI1PK": "x"}),
        "signed_bad_prefix": tokens.encode(
            f"jobs:{job}:applications",
            {"PK": "x", "SK": "x", "GSI1PK": f"JOB#{job}", "GSI1SK": "JOB"},
        ),
        "signed_huge_key": tokens.encode(scope, {"PK": f"USER#{owner}", "SK": "JOB#" + "Z" * 700}),
    }


def _send(stack: Stack, case: Case, tokens: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    url = urlsplit(stack.api_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.putrequest(case.method, case.path, skip_accept_encoding=True)
        headers = dict(case.headers)
        if case.who != "nobody":
            headers["Authorization"] = f"Bearer {tokens[case.who]}"
        if case.body is not None:
            headers["Content-Length"] = str(len(case.body))
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders(case.body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _spec_template(path: str) -> str | None:
    """The spec's path the server routes this request to, if any."""
    route = urlsplit(path).path
    for template in SPEC["paths"]:
        if re.match("^" + re.sub(r"\{\w+\}", "[^/]+", template) + "/?$", route):
            return template
    return None


def _spec_operation(method: str, path: str) -> dict[str, Any] | None:
    template = _spec_template(path)
    return SPEC["paths"][template].get(method.lower()) if template else None


def _problems(case: Case, status: int, headers: dict[str, str], raw: bytes) -> list[str]:
    try:
        code = json.loads(raw).get("code")
    except (ValueError, AttributeError):
        code = None
    for alt_status, alt_code in case.also:
        if (status, code) == (alt_status, alt_code):
            case = Case(case.name, case.method, case.path, alt_status, alt_code, case.body, case.headers, case.who)
    out = []
    if status != case.status:
        out.append(f"status {status}, wanted {case.status}")
    try:
        body = json.loads(raw)
    except ValueError:
        return [*out, f"body is not JSON: {raw[:200]!r}"]
    if not headers.get("content-type", "").startswith("application/json"):
        out.append(f"content type {headers.get('content-type')!r}")
    if case.code is None:
        if not isinstance(body, dict) or "code" in body or not (body.get("message") or body.get("Message")):
            out.append(f"wanted a gateway answer, got {body}")
    else:
        if not isinstance(body, dict) or body.get("code") != case.code or not body.get("message"):
            out.append(f"code {body.get('code') if isinstance(body, dict) else body!r}, wanted {case.code}")
        if isinstance(body, dict) and body.get("code") not in ERROR_CODES:
            out.append(f"code {body.get('code')!r} is not in the spec's Error enum")
        operation = _spec_operation(case.method, case.path)
        if operation is not None and str(status) not in operation["responses"]:
            out.append(f"the spec does not document {status} for {case.method} {urlsplit(case.path).path}")
    return out


_STUB_WORLD = dict.fromkeys(
    [
        "job",
        "app",
        "other_job",
        "other_app",
        "open_jobs_token",
        "other_job_token",
        "nanny_page_token",
        "unsigned",
        "signed_other_partition",
        "signed_extra_key",
        "signed_bad_prefix",
        "signed_huge_key",
    ],
    NEVER_ISSUED,
)
CASE_NAMES = [c.name for c in _cases(_STUB_WORLD)]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_hostile_request_is_refused_with_a_stable_code_and_changes_nothing(
    stack: Stack, world: dict[str, str], name: str
) -> None:
    (case,) = [c for c in _cases(world) if c.name == name]
    watched = [world["job"], world["other_job"]]
    before = stack.snapshot(watched)

    status, headers, raw = _send(stack, case, {"owner": world["owner_token"], "nanny": world["nanny"]})

    problems = _problems(case, status, headers, raw)
    FIGURES.add("hostile input", "requests")
    for kind in ("5xx", "wrong answers", "requests that wrote"):
        FIGURES.add("hostile input", kind, 0)
    if stack.snapshot(watched) != before:
        problems.append("it changed the table or a queue")
        FIGURES.add("hostile input", "requests that wrote")
    if status >= 500:
        FIGURES.add("hostile input", "5xx")
    if problems:
        FIGURES.add("hostile input", "wrong answers")
    assert not problems, f"{case.method} {case.path[:100]}: {'; '.join(problems)}; body {raw[:200]!r}"


def test_the_hostile_table_covers_every_route_and_names_are_unique() -> None:
    cases = _cases(_STUB_WORLD)
    assert len(CASE_NAMES) == len(set(CASE_NAMES))
    hit = {(c.method.lower(), _spec_template(c.path)) for c in cases}
    every = {(m, t) for t, item in SPEC["paths"].items() for m in item if m in {"get", "post"}}
    assert every <= hit, f"routes without hostile cases: {sorted(every - hit)}"
