from __future__ import annotations

import pytest

from chalicelib.domain import InvalidInput
from chalicelib.pagination import PageTokens

CURSOR = {"PK": "USER#alice", "SK": "JOB#01J0000000000000000000000A"}


def test_a_token_round_trips_within_its_scope() -> None:
    tokens = PageTokens("s3cret")
    token = tokens.encode("me:alice:jobs", CURSOR)
    assert token and "USER#alice" not in token  # opaque enough not to invite editing
    assert tokens.decode("me:alice:jobs", token) == CURSOR
    assert tokens.encode("me:alice:jobs", None) is None
    assert tokens.decode("me:alice:jobs", None) is None


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: "x" + t,  # payload changed
        lambda t: t.replace(".", ""),
        lambda t: t + ".extra",
        lambda t: "",
        lambda t: "%%%.%%%",
        lambda t: "a" * 5000,
    ],
)
def test_a_tampered_token_is_refused(mangle) -> None:
    tokens = PageTokens("s3cret")
    with pytest.raises(InvalidInput) as err:
        tokens.decode("me:alice:jobs", mangle(tokens.encode("me:alice:jobs", CURSOR)))
    assert err.value.code == "INVALID_NEXT_TOKEN"


def test_a_token_is_refused_by_another_listing_or_another_secret() -> None:
    token = PageTokens("s3cret").encode("me:alice:jobs", CURSOR)
    with pytest.raises(InvalidInput):
        PageTokens("s3cret").decode("me:mallory:jobs", token)
    with pytest.raises(InvalidInput):
        PageTokens("other").decode("me:alice:jobs", token)
