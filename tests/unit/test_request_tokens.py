"""A transaction's ClientRequestToken names exactly its items."""

from __future__ import annotations

from chalicelib.dynamo import request_token
from chalicelib.store import DynamoStore
from tests.fakes.dynamodb import RecordingDynamoDb


def _cancel(owner: str, reason: str | None, now: str = "2030-01-01T00:00:00.000Z") -> str:
    client = RecordingDynamoDb()
    DynamoStore(client, "t").cancel_job(owner, "01HZZZZZZZZZZZZZZZZZZZZZZZ", reason, now)
    return client.tokens[0]


def test_the_same_request_has_the_same_token_and_any_difference_another() -> None:
    assert _cancel("owner-a", "ill") == _cancel("owner-a", "ill")
    # the owner and the reason are part of the request: two cancels that differ there
    # must not be taken by DynamoDB for re-sends of one another
    assert (
        len(
            {
                _cancel("owner-a", "ill"),
                _cancel("owner-b", "ill"),
                _cancel("owner-a", "moved"),
                _cancel("owner-a", None),
            }
        )
        == 4
    )
    assert _cancel("owner-a", "ill") != _cancel("owner-a", "ill", now="2030-01-01T00:00:00.001Z")


def test_a_token_fits_dynamodb_s_limit() -> None:
    token = request_token([{"Put": {"Item": {"PK": {"S": "x" * 1000}}}}])
    assert 1 <= len(token) <= 36
