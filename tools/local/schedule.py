"""Runs the app's scheduled handlers the way EventBridge does, on a short interval.

``chalice local`` runs no ``@app.schedule`` function, and a rate of one minute is too
slow to watch locally: each handler is called here every ``every`` seconds with a
scheduled event and a Lambda-shaped context. A failing run is logged; the next one retries.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tools.local.worker import LambdaContext

log = logging.getLogger("tools.local.schedule")


def scheduled_event(region: str, account: str, rule_arn: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class Schedule:
    """One scheduled handler, run at once and then every ``every`` seconds until stopped."""

    def __init__(
        self,
        handler: Callable[[dict[str, Any], Any], Any],
        *,
        function_name: str,
        every: float,
        region: str = "us-east-1",
        account: str = "000000000000",
    ) -> None:
        self._handler = handler
        self._name = function_name
        self._every = every
        self._region = region
        self._account = account
        self.runs = 0
        self.failures = 0

    def run_once(self) -> Any:
        arn = f"arn:aws:lambda:{self._region}:{self._account}:function:{self._name}"
        event = scheduled_event(self._region, self._account, f"arn:aws:events:{self._region}:{self._account}:rule/x")
        context = LambdaContext(function_name=self._name, invoked_function_arn=arn, timeout_seconds=60)
        self.runs += 1
        return self._handler(event, context)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                result = self.run_once()
                log.debug("%s: %s", self._name, result)
            except Exception:
                self.failures += 1
                log.exception("%s failed; the next run retries", self._name)
            stop.wait(self._every)


def start_in_thread(schedule: Schedule, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=schedule.run, args=(stop,), name="schedule", daemon=True)
    thread.start()
    return thread
