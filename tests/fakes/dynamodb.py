"""DynamoDB clients that record what they are asked and answer from memory."""

from __future__ import annotations

from typing import Any


class RecordingDynamoDb:
    """Records each transaction's ClientRequestToken; every transaction succeeds."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def transact_write_items(self, **params: Any) -> dict[str, Any]:
        self.tokens.append(params["ClientRequestToken"])
        return {}
