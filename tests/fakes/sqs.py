"""SQS clients that answer from memory: what a test scripts, nothing sent anywhere."""

from __future__ import annotations

import json
import threading
from typing import Any

from botocore.exceptions import EndpointConnectionError

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:q"


class ScriptedSqs:
    def __init__(self, fail_first: int = 0, raise_first: int = 0) -> None:
        self.fail_first = fail_first  # entries to fail on each of the first calls of a batch
        self.raise_first = raise_first
        self.sent: list[str] = []
        self.calls = 0
        self.lock = threading.Lock()
        self.seen_ids: dict[str, int] = {}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict:
        with self.lock:
            self.calls += 1
            assert len(Entries) <= 10 and len({e["Id"] for e in Entries}) == len(Entries)
            first_try = all(self.seen_ids.get(e["Id"], 0) == 0 for e in Entries)
            for e in Entries:
                self.seen_ids[e["Id"]] = self.seen_ids.get(e["Id"], 0) + 1
            if self.raise_first and first_try:
                self.raise_first -= 1
                raise EndpointConnectionError(endpoint_url=QueueUrl)
            failing = Entries[: self.fail_first] if first_try else []
            ok = Entries[len(failing) :]
            self.sent.extend(json.loads(e["MessageBody"])["applicationId"] for e in ok)
            return {
                "Successful": [{"Id": e["Id"]} for e in ok],
                "Failed": [{"Id": e["Id"], "Code": "InternalError", "SenderFault": False} for e in failing],
            }


class FakeSqs:
    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.retried: list[tuple[str, int]] = []

    def get_queue_attributes(self, **_: Any) -> dict[str, Any]:
        return {"Attributes": {"QueueArn": QUEUE_ARN}}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.deleted += [e["ReceiptHandle"] for e in Entries]
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.retried += [(e["ReceiptHandle"], e["VisibilityTimeout"]) for e in Entries]
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}
