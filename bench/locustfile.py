"""Locust scenario for the HTTP benchmarks: one booking per request at a constant arrival rate.

Run by ``bench.http_load`` as ``locust -f bench/locustfile.py --headless -u 1 ...``
with ``BENCH_LOAD_PLAN`` naming a JSON plan: the rate, the request timeout, where to
write results, and one target per request (path, body, bearer token).

Open loop: one user schedules request ``i`` at ``start + i / rate`` and sends each
in its own greenlet, so a slow answer never delays the next request (Locust's
own users are closed loops: each waits for its answer). Latencies are Locust's own
measurements (its ``request`` event); lateness against the schedule is recorded too.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import gevent
from gevent.pool import Group
from locust import FastHttpUser, events, task
from locust.exception import StopUser

PLAN: dict[str, Any] = json.loads(Path(os.environ["BENCH_LOAD_PLAN"]).read_text())
_measured: dict[int, dict[str, Any]] = {}


@events.request.add_listener
def _record(response_time: float, context: dict[str, Any], exception: Any, response: Any, **_: Any) -> None:
    index = context.get("index")
    if index is not None:
        _measured[index] = {
            "ms": response_time,
            "status": getattr(response, "status_code", 0) or 0,
            "error": None if exception is None else f"{type(exception).__name__}: {exception}"[:200],
        }


class Booker(FastHttpUser):
    # One connection per request in flight, up to this many; requests beyond it queue in the client.
    concurrency = int(PLAN.get("max_in_flight", 1000))
    network_timeout = float(PLAN["timeout_seconds"])
    connection_timeout = float(PLAN["timeout_seconds"])
    max_retries = 0

    @task
    def attack(self) -> None:
        targets = PLAN["targets"]
        interval = 1.0 / float(PLAN["rate"])
        schedule: list[dict[str, Any]] = [{} for _ in targets]
        group = Group()
        start = time.perf_counter()
        epoch_start = time.time()
        for i, target in enumerate(targets):
            due = start + i * interval
            delay = due - time.perf_counter()
            if delay > 0:
                gevent.sleep(delay)
            group.spawn(self._book, i, target, start, due, schedule)
        group.join(timeout=float(PLAN["timeout_seconds"]) + 10)
        results = [
            {**schedule[i], **_measured.get(i, {"ms": None, "status": 0, "error": "no answer recorded"})}
            for i in range(len(targets))
        ]
        out = {"epoch_start": epoch_start, "rate": PLAN["rate"], "results": results}
        tmp = Path(PLAN["out"] + ".tmp")
        tmp.write_text(json.dumps(out))
        tmp.replace(PLAN["out"])
        self.environment.runner.quit()
        raise StopUser()

    def _book(
        self, index: int, target: dict[str, Any], start: float, due: float, schedule: list[dict[str, Any]]
    ) -> None:
        sent = time.perf_counter()
        headers = {"Authorization": f"Bearer {target['token']}", "Content-Type": "application/json"}
        with self.client.post(
            target["path"],
            data=target["body"],
            headers=headers,
            name="POST /jobs/{jobId}/book",
            context={"index": index},
            catch_response=True,
        ) as resp:
            if resp.status_code == 200:
                resp.success()
            elif resp.status_code:
                resp.failure(f"HTTP {resp.status_code}")
            else:
                resp.failure(f"no answer: {getattr(resp, 'error', None)!r}"[:200])
        schedule[index] = {"sent_s": sent - start, "late_ms": (sent - due) * 1000, "ended_epoch": time.time()}
