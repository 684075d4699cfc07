from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from chalicelib import api_input
from chalicelib.domain import InvalidInput, is_valid_id, is_valid_username, new_id

NEXT_YEAR = datetime.now(UTC).year + 1


def test_ids_are_ulids_that_sort_by_creation() -> None:
    earlier, later = new_id(1_700_000_000_000), new_id(1_700_000_000_001)
    assert is_valid_id(earlier) and is_valid_id(later) and len(earlier) == 26
    assert earlier < later
    assert len({new_id() for _ in range(1000)}) == 1000


@pytest.mark.parametrize(
    "value", ["", "abc", "01HZZZZZZZZZZZZZZZZZZZZZZ#", "01hzzzzzzzzzzzzzzzzzzzzzzz", "8" + "0" * 25, None, 5, "0" * 27]
)
def test_bad_ids_are_refused(value) -> None:
    assert not is_valid_id(value)


@pytest.mark.parametrize("value", ["alice", "a.b-c_d@example.com", "X1+tag"])
def test_usernames_that_fit_in_keys(value) -> None:
    assert is_valid_username(value)


@pytest.mark.parametrize("value", ["", "a#b", "a/b", "ünïcode", " alice", "a" * 129, None, "-alice"])
def test_usernames_that_could_bend_a_key_are_refused(value) -> None:
    assert not is_valid_username(value)


def _job(**overrides):
    start = datetime.now(UTC) + timedelta(days=1)
    body = {"title": " Evening ", "startsAt": start.isoformat(), "endsAt": (start + timedelta(hours=3)).isoformat()}
    body.update(overrides)
    return body


def test_a_job_body_is_normalized() -> None:
    job = api_input.new_job(
        _job(startsAt=f"{NEXT_YEAR}-05-01T18:00:00+02:00", endsAt=f"{NEXT_YEAR}-05-01T22:30:00+02:00", hourlyRate=12.5)
    )
    assert job.title == "Evening"
    assert job.starts_at == f"{NEXT_YEAR}-05-01T16:00:00.000Z" and job.ends_at == f"{NEXT_YEAR}-05-01T20:30:00.000Z"
    assert job.hourly_rate == Decimal("12.50")


def test_body_parsing_refuses_what_it_cannot_read() -> None:
    for raw, code in [(b"{", "INVALID_JSON"), (b"\xff", "INVALID_JSON"), (b"[]", "INVALID_BODY"),
                      (b"NaN", "INVALID_JSON"), (b"x" * (api_input.MAX_BODY_BYTES + 1), "BODY_TOO_LARGE"),
                      (b"[" * 5_000 + b"]" * 5_000, "INVALID_JSON")]:  # fmt: skip
        with pytest.raises(InvalidInput) as err:
            api_input.json_body(raw)
        assert err.value.code == code
    assert api_input.json_body(b"") == {}


@pytest.mark.parametrize(
    "field,value",
    [
        ("hourlyRate", 1.234),
        ("hourlyRate", 10_001),
        ("hourlyRate", 0),
        ("title", "tab\x00null"),
        ("endsAt", f"{NEXT_YEAR}-05-01T18:00:00Z"),
        ("location", ["Leeds"]),
        ("startsAt", "0001-01-01T00:00:00+01:00"),
        ("endsAt", "9999-12-31T23:59:59-01:00"),
    ],
)
def test_job_rules(field, value) -> None:
    body = _job(startsAt=f"{NEXT_YEAR}-05-01T18:00:00Z", endsAt=f"{NEXT_YEAR}-05-01T20:00:00Z")
    body[field] = value
    with pytest.raises(InvalidInput) as err:
        api_input.new_job(body)
    assert err.value.code == "INVALID_BODY"


def test_a_job_lasts_at_most_a_month() -> None:
    with pytest.raises(InvalidInput):
        api_input.new_job(_job(startsAt=f"{NEXT_YEAR}-05-01T18:00:00Z", endsAt=f"{NEXT_YEAR}-06-05T18:00:00Z"))


def test_query_params() -> None:
    assert api_input.query_params(None) == (api_input.DEFAULT_LIMIT, None)
    assert api_input.query_params({"limit": "100", "nextToken": "t"}) == (100, "t")
    for bad in [{"limit": "-1"}, {"limit": "1e2"}, {"limit": "٣"}, {"page": "2"}]:
        with pytest.raises(InvalidInput):
            api_input.query_params(bad)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"hourlyRate": 1e-9999999999999999999}',
        b'{"hourlyRate": -1E+99999999999999999999}',
        b'{"a": {"b": 1e9999999999999999999}}',
        b'{"n": ' + b"9" * 5000 + b"}",
        b'{"n": NaN}',
        b'{"n": -Infinity}',
    ],
)
def test_a_number_no_parser_can_hold_is_invalid_json(raw: bytes) -> None:
    with pytest.raises(InvalidInput) as refused:
        api_input.json_body(raw)
    assert refused.value.code == "INVALID_JSON"


@pytest.mark.parametrize("raw", [b'{"title":"a","title":"b"}', b'{"a":{"x":1,"x":1}}', b'{"a":[{"k":1,"k":2}]}'])
def test_a_repeated_key_anywhere_is_invalid_json(raw: bytes) -> None:
    with pytest.raises(InvalidInput) as refused:
        api_input.json_body(raw)
    assert refused.value.code == "INVALID_JSON" and "repeats the key" in refused.value.message


@pytest.mark.parametrize("rate", ["1e999999", "1e-999999", "-0", "-0.0", "1e999999999999999999"])
def test_a_readable_but_absurd_rate_is_invalid_body(rate: str) -> None:
    body = api_input.json_body(b'{"hourlyRate": ' + rate.encode() + b"}")
    with pytest.raises(InvalidInput) as refused:
        api_input._rate(body["hourlyRate"])
    assert refused.value.code == "INVALID_BODY"
