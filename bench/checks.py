"""After a load: how long the declines took to land, and whether every job ended as it should.

Both read DynamoDB directly, never through the service.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.dataset import PreparedJob, application_key, chunked, job_key, statuses_of

BATCH_GET_LIMIT = 100
CHECK_THREADS = 8


class DrainWatcher:
    """Tracks the applications a load should decline until none of them is PENDING.

    While the load runs it checks, at most ``background_calls_per_second`` times a
    second, the oldest applications still to decline (the worker takes them roughly
    in order), so that little is left to read once the load ends. Statuses only go
    from PENDING to DECLINED, so an application seen DECLINED is never read again.
    """

    def __init__(self, dynamodb: Any, table: str, jobs: Sequence[PreparedJob], background_calls_per_second: float = 4):
        self._db = dynamodb
        self._table = table
        self._remaining: list[tuple[str, str]] = [(j.job_id, a) for j in jobs for a in j.declined]
        self.total = len(self._remaining)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._interval = 1.0 / background_calls_per_second if background_calls_per_second > 0 else 0
        self._thread: threading.Thread | None = None
        self.reads = 0

    def keep_only(self, job_ids: set[str]) -> None:
        """Forgets the applications of jobs whose booking did not succeed: nothing will decline them."""
        with self._lock:
            self._remaining = [k for k in self._remaining if k[0] in job_ids]

    def start_background(self) -> None:
        if self._interval:
            self._thread = threading.Thread(target=self._background, name="drain-watcher", daemon=True)
            self._thread.start()

    def _background(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                head = self._remaining[:BATCH_GET_LIMIT]
            if not head:
                return
            still = set(self._pending(head))
            with self._lock:
                self._remaining = [k for k in head if k in still] + self._remaining[len(head) :]

    def _pending(self, keys: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """Those of ``keys`` (at most 100) still PENDING."""
        request: dict[str, Any] = {
            self._table: {
                "Keys": [application_key(j, a) for j, a in keys],
                "ProjectionExpression": "jobId, applicationId, #s",
                "ExpressionAttributeNames": {"#s": "status"},
                "ConsistentRead": True,
            }
        }
        pending: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        for _ in range(50):
            resp = self._db.batch_get_item(RequestItems=request)
            with self._lock:
                self.reads += 1
            for item in (resp.get("Responses") or {}).get(self._table, []):
                key = (item["jobId"]["S"], item["applicationId"]["S"])
                seen.add(key)
                if item["status"]["S"] == "PENDING":
                    pending.append(key)
            request = resp.get("UnprocessedKeys") or {}
            if not request:
                break
        # A key that was not returned at all is missing: keep it, the invariant check reports it.
        pending += [k for k in keys if k not in seen]
        return pending

    def wait(self, since: float, timeout: float, poll_seconds: float = 0.05) -> dict[str, Any]:
        """Reads until nothing is PENDING; ``since`` is the epoch time the drain is measured from.

        One full round of reads first counts what was still PENDING when the load ended;
        after that each round reads from the oldest applications on and stops at the first
        block of 100 that still holds a PENDING one, so that waiting costs the emulator
        about one ``BatchGetItem`` a round rather than a read of everything left (the
        reads compete with the worker for the emulator). Returns the drain time, the
        duration of the last round (the measure's resolution) and the first round's count.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        deadline = time.time() + timeout
        round_started = time.time()
        with ThreadPoolExecutor(CHECK_THREADS) as pool:
            results = pool.map(self._pending, list(chunked(self._remaining, BATCH_GET_LIMIT)))
            self._remaining = [k for chunk in results for k in chunk]
        first_round = len(self._remaining)
        now = time.time()
        while self._remaining:
            if now > deadline:
                return {
                    "drained": False,
                    "drain_seconds": None,
                    "still_pending": len(self._remaining),
                    "pending_when_load_ended": first_round,
                    "declines": self.total,
                    "batch_get_calls": self.reads,
                }
            time.sleep(poll_seconds)
            round_started = time.time()
            while self._remaining:
                head = self._remaining[:BATCH_GET_LIMIT]
                still = self._pending(head)
                self._remaining[: len(head)] = still
                if still:
                    break
            now = time.time()
        return {
            "drained": True,
            "drain_seconds": max(0.0, now - since),
            "resolution_seconds": now - round_started,
            "pending_when_load_ended": first_round,
            "declines": self.total,
            "batch_get_calls": self.reads,
        }


def job_states(dynamodb: Any, table: str, jobs: Sequence[PreparedJob]) -> dict[str, str]:
    """``{jobId: status}`` read from the base table (strongly consistent)."""
    states: dict[str, str] = {}
    for chunk in chunked(jobs, BATCH_GET_LIMIT):
        request: dict[str, Any] = {
            table: {
                "Keys": [job_key(j) for j in chunk],
                "ProjectionExpression": "jobId, #s",
                "ExpressionAttributeNames": {"#s": "status"},
                "ConsistentRead": True,
            }
        }
        while request:
            resp = dynamodb.batch_get_item(RequestItems=request)
            for item in (resp.get("Responses") or {}).get(table, []):
                states[item["jobId"]["S"]] = item["status"]["S"]
            request = resp.get("UnprocessedKeys") or {}
    return states


def check_invariants(
    dynamodb: Any, table: str, jobs: Sequence[PreparedJob], committed: set[str], allow_pending: bool = False
) -> dict[str, Any]:
    """Every job either booked as asked or untouched, and no application lost.

    A job in ``committed`` must be CLOSED with its booked application accepted: that
    one ACCEPTED, every other DECLINED (or still PENDING, counted apart, with
    ``allow_pending``: the declines did not all land in time). Any other job (its
    request failed before the booking committed) must still be OPEN with every
    application PENDING. Each job must still have exactly the applications it was
    prepared with.
    """
    still_pending = 0
    lock = threading.Lock()

    def check(job: PreparedJob) -> list[str]:
        nonlocal still_pending
        item, apps = statuses_of(dynamodb, table, job.job_id)
        if item is None:
            return [f"job {job.job_id}: missing"]
        problems = []
        status = item.get("status", {}).get("S")
        accepted_id = item.get("acceptedApplicationId", {}).get("S")
        if set(apps) != set(job.application_ids):
            problems.append(f"job {job.job_id}: applications lost or added ({len(apps)} of {len(job.application_ids)})")
        if job.job_id in committed:
            if status != "CLOSED" or accepted_id != job.accepted:
                problems.append(f"job {job.job_id}: {status}, acceptedApplicationId {accepted_id}")
            accepted = [a for a, s in apps.items() if s == "ACCEPTED"]
            if accepted != [job.accepted]:
                problems.append(f"job {job.job_id}: ACCEPTED {accepted}")
            others = {s for a, s in apps.items() if a != job.accepted}
            if allow_pending and "PENDING" in others:
                with lock:
                    still_pending += sum(1 for a, s in apps.items() if a != job.accepted and s == "PENDING")
                others.discard("PENDING")
            if others - {"DECLINED"}:
                problems.append(f"job {job.job_id}: other applications {sorted(others)}")
        elif status != "OPEN" or accepted_id is not None or set(apps.values()) - {"PENDING"}:
            problems.append(f"job {job.job_id}: not booked but {status}, applications {sorted(set(apps.values()))}")
        return problems

    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        found = [p for problems in pool.map(check, jobs) for p in problems]
    return {
        "jobs_checked": len(jobs),
        "jobs_booked": sum(1 for j in jobs if j.job_id in committed),
        "violations": len(found),
        "examples": found[:10],
        "declines_still_pending": still_pending,
        "ok": not found,
    }


def wait_queues_empty(sqs: Any, queue_urls: Sequence[str], timeout: float, poll_seconds: float = 0.25) -> dict:
    """Until every queue holds no message, delayed ones included (a booking's sweep waits
    ``SWEEP_DELAY_SECONDS`` in its queue before it is visible), or ``timeout`` passes.

    Returns the seconds waited and the depths last read (``queue_depths``).
    """
    started = time.monotonic()
    while True:
        depths = queue_depths(sqs, *queue_urls)
        empty = all(v == 0 for v in depths.values())
        if empty or time.monotonic() - started > timeout:
            return {"empty": empty, "seconds": time.monotonic() - started, "depths": depths}
        time.sleep(poll_seconds)


def queue_depths(sqs: Any, *queue_urls: str) -> dict[str, int | str]:
    """Visible + in flight + delayed messages per queue (by the queue's last path segment).

    An emulator too busy to answer in time gets its error recorded instead.
    """
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    out: dict[str, int | str] = {}
    for url in queue_urls:
        try:
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        except Exception as exc:
            out[url.rsplit("/", 1)[-1]] = f"no answer: {type(exc).__name__}"
            continue
        out[url.rsplit("/", 1)[-1]] = sum(int(attrs.get(n, 0)) for n in names)
    return out
