"""A DynamoDB client whose global secondary indexes lag, as they do on AWS.

On AWS a GSI is updated asynchronously: for a while after a write, a query of the
index may miss a new item or return its previous attributes. moto and the local
emulators update their indexes at once, which hides every bug that depends on that
lag. ``LaggingIndex`` brings it back with botocore event hooks on one client (or on
a session, so every client created from it):

* before each write (PutItem, UpdateItem, DeleteItem, TransactWriteItems) it reads
  the item as it was, with a separate client, and remembers it with the time;
* after each Query with an ``IndexName``, an item written less than ``lag_seconds``
  ago is replaced by its version from before that write, or dropped if it did not
  exist then (or was then in another partition of the index).

It only changes what index queries return: base-table reads stay strongly
consistent. Limits: an item that left the queried partition within the lag (a job
just closed, in ``openJobs``) is not added back, and a page's ``Count`` is not fixed.

Development only: tests attach it to the app's client; ``tools/local/chalice_local.py``
installs it when ``LOCAL_INDEX_LAG_SECONDS`` is set (``LOCAL_INDEX_LAG_SECONDS=2
make local``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

ENV_VAR = "LOCAL_INDEX_LAG_SECONDS"
_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems")
_FLAG = "lagging_index"


def _key_of(item: dict[str, Any]) -> tuple[str, str]:
    return (item["PK"]["S"], item["SK"]["S"])


class LaggingIndex:
    def __init__(self, lag_seconds: float, reader: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.lag = lag_seconds
        self._reader = reader  # a client without these hooks
        self._clock = clock
        self._lock = threading.Lock()
        # (table, PK, SK) -> [(time of a write, the item before it or None)], oldest first
        self._history: dict[tuple[str, str, str], list[tuple[float, dict[str, Any] | None]]] = {}
        self.hidden = 0  # items dropped from index answers
        self.stale = 0  # items answered with their previous attributes

    def attach(self, events: Any) -> LaggingIndex:
        """Registers the hooks on a client's (``client.meta.events``) or a session's events."""
        for op in _WRITES:
            events.register(f"before-parameter-build.dynamodb.{op}", self._before_write)
        events.register("before-parameter-build.dynamodb.Query", self._before_query)
        events.register("after-call.dynamodb.Query", self._after_query)
        return self

    # ------------------------------------------------------------------ writes

    def _before_write(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        targets: list[tuple[str, dict[str, Any]]] = []
        if model.name == "TransactWriteItems":
            for entry in params.get("TransactItems") or []:
                for kind in ("Put", "Update", "Delete"):
                    if kind in entry:
                        op = entry[kind]
                        targets.append((op["TableName"], op.get("Key") or _only_key(op["Item"])))
        elif model.name == "PutItem":
            targets.append((params["TableName"], _only_key(params["Item"])))
        else:
            targets.append((params["TableName"], params["Key"]))
        now = self._clock()
        for table, key in targets:
            before = self._reader.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
            with self._lock:
                history = self._history.setdefault((table, *_key_of(key)), [])
                history[:] = [h for h in history if h[0] > now - self.lag]
                history.append((now, before))

    # ----------------------------------------------------------------- queries

    def _before_query(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if params.get("IndexName"):
            partition_attribute = str(params.get("KeyConditionExpression", "")).split(" ", 1)[0]
            context[_FLAG] = (params["TableName"], partition_attribute)

    def _after_query(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if _FLAG not in context or "Items" not in parsed:
            return
        table, partition_attribute = context[_FLAG]
        horizon = self._clock() - self.lag
        shown: list[dict[str, Any]] = []
        for item in parsed["Items"]:
            with self._lock:
                recent = [h for h in self._history.get((table, *_key_of(item)), []) if h[0] > horizon]
            if not recent:
                shown.append(item)
                continue
            before = recent[0][1]  # as the index last saw it: before the oldest recent write
            if before is None or before.get(partition_attribute) != item.get(partition_attribute):
                self.hidden += 1
                continue
            self.stale += 1
            shown.append(before)
        parsed["Items"] = shown


def _only_key(item: dict[str, Any]) -> dict[str, Any]:
    return {"PK": item["PK"], "SK": item["SK"]}


def install_from_env(session: Any = None) -> LaggingIndex | None:
    """Makes every DynamoDB client of boto3's default session lag, if ``LOCAL_INDEX_LAG_SECONDS`` is set."""
    raw = os.environ.get(ENV_VAR)
    if not raw or float(raw) <= 0:
        return None
    import boto3

    if session is None:
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        session = boto3.DEFAULT_SESSION
    reader = boto3.session.Session().client("dynamodb")
    lagging = LaggingIndex(float(raw), reader)
    lagging.attach(session.events)
    print(f"index queries lag {float(raw)} s behind writes ({ENV_VAR})", flush=True)
    return lagging
