"""SQS clients for tests: scripted ones that answer from memory, and wrappers of a real one that fail as told."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError

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


class FlakySqs:
    """Wraps a real SQS client; marks entries Failed or raises, as scripted per call."""

    def __init__(self, real: Any, script: list[str]) -> None:
        self._real = real
        self.script = script  # per call: "ok", "fail-30%" or "raise"
        self.calls = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict]) -> dict:
        mode = self.script[self.calls] if self.calls < len(self.script) else "ok"
        self.calls += 1
        if mode == "raise":
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "SendMessageBatch")
        if mode == "fail-30%":
            failing = Entries[: max(1, len(Entries) * 3 // 10)]
            rest = Entries[len(failing) :]
            sent = self._real.send_message_batch(QueueUrl=QueueUrl, Entries=rest) if rest else {}
            failed = [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError"} for e in failing]
            return {"Successful": sent.get("Successful", []), "Failed": failed}
        return self._real.send_message_batch(QueueUrl=QueueUrl, Entries=Entries)


class RandomlyFlakySqs:
    """An SQS client whose SendMessageBatch fails as told: entries reported Failed, or whole calls raising."""

    def __init__(self, real: Any, rng: random.Random, entry_failure: float = 0.0, call_failure: float = 0.0) -> None:
        self._real = real
        self._rng = rng
        self.entry_failure = entry_failure
        self.call_failure = call_failure
        self.injected: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            raise_call = self._rng.random() < self.call_failure
            failing = [e for e in Entries if self._rng.random() < self.entry_failure]
        if raise_call:
            self.injected["SendMessageBatch calls raised"] += 1
            raise EndpointConnectionError(endpoint_url=QueueUrl)
        failed_ids = {e["Id"] for e in failing}
        sent = [e for e in Entries if e["Id"] not in failed_ids]
        resp: dict[str, Any] = {"Successful": [], "Failed": []}
        if sent:
            resp = self._real.send_message_batch(QueueUrl=QueueUrl, Entries=sent)
            resp.setdefault("Failed", [])
        self.injected["SendMessageBatch entries failed"] += len(failing)
        resp["Failed"] = [
            *resp["Failed"],
            *({"Id": i, "SenderFault": False, "Code": "InternalError", "Message": "injected"} for i in failed_ids),
        ]
        return resp
