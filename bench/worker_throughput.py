"""Part 3: how fast the decline worker drains a backlog, next to raw UpdateItem on the same database.

The backlog is put in place first (PENDING applications in the table, one decline
message each in a queue nothing polls yet, sent by the service's own publisher),
then the app's SQS handler (``app.decline_worker``, as Lambda would call it) is fed
by ``tools.local.worker.QueuePoller``, one poller thread per unit of concurrency,
until every message is deleted. The same number of threads then runs the raw
conditional ``UpdateItem`` (the request ``DynamoStore.decline_application`` sends) on
other PENDING applications of the same table: half before the worker, half after.

Two queues carry the backlog:

* ``memory``: a queue kept in this process (``MemoryQueue``), so the measure is the
  worker's own cost (poller, handler, Powertools' batch processor, the service, one
  UpdateItem per message) and not the queue emulator's;
* ``sqs``: a queue on the local stack's SQS (MiniStack), a smaller backlog: the same
  worker with a real queue's receive, visibility and delete calls in the loop.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.checks import BATCH_GET_LIMIT
from bench.dataset import PreparedJob, application_key, chunked, prepare_jobs
from bench.stack import Stack
from chalicelib import bootstrap
from chalicelib.declines import SqsDeclinePublisher
from chalicelib.domain import format_time, utc_now
from tools.local.worker import QueuePoller

APPS_PER_JOB = 50
SETTLE_JOBS = 20  # 1000 updates before the timed ones
MEMORY_QUEUE_URL = "memory://bench/declines-backlog"
MEMORY_QUEUE_ARN = "arn:aws:sqs:us-east-1:000000000000:bench-declines-backlog"


@dataclass(frozen=True)
class Plan:
    backlog: int = 5000
    concurrency: tuple[int, ...] = (1, 4)
    sqs_backlog: int = 500
    sqs_concurrency: tuple[int, ...] = (1,)
    timeout_seconds: float = 600.0


class MemoryQueue:
    """The SQS calls the publisher and ``QueuePoller`` make, served from memory in FIFO order.

    No visibility timeout: a message is in flight from its receive until deleted or
    handed back (``ChangeMessageVisibilityBatch`` makes it visible at once).
    """

    def __init__(self, arn: str = MEMORY_QUEUE_ARN) -> None:
        self._arn = arn
        self._lock = threading.Lock()
        self._visible: deque[dict[str, Any]] = deque()
        self._in_flight: dict[str, dict[str, Any]] = {}
        self.deleted = 0
        self.receives = 0
        self.last_delete_at = 0.0

    def __len__(self) -> int:
        with self._lock:
            return len(self._visible) + len(self._in_flight)

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: Sequence[str]) -> dict[str, Any]:
        return {"Attributes": {"QueueArn": self._arn}}

    def send_message_batch(self, QueueUrl: str, Entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
        now_ms = str(int(time.time() * 1000))
        with self._lock:
            for entry in Entries:
                body = entry["MessageBody"]
                self._visible.append(
                    {
                        "MessageId": str(uuid.uuid4()),
                        "Body": body,
                        "MD5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
                        "Attributes": {"ApproximateReceiveCount": "0", "SentTimestamp": now_ms, "SenderId": "bench"},
                    }
                )
        return {"Successful": [{"Id": e["Id"], "MessageId": "-"} for e in Entries], "Failed": []}

    def receive_message(
        self, QueueUrl: str, MaxNumberOfMessages: int = 1, WaitTimeSeconds: int = 0, **_: Any
    ) -> dict[str, Any]:
        with self._lock:
            self.receives += 1
            out = []
            while self._visible and len(out) < MaxNumberOfMessages:
                message = self._visible.popleft()
                count = int(message["Attributes"]["ApproximateReceiveCount"]) + 1
                message["Attributes"]["ApproximateReceiveCount"] = str(count)
                receipt = str(uuid.uuid4())
                self._in_flight[receipt] = message
                out.append({**message, "ReceiptHandle": receipt, "Attributes": dict(message["Attributes"])})
        if not out:
            time.sleep(min(WaitTimeSeconds, 0.01))
            return {}
        return {"Messages": out}

    def delete_message_batch(self, QueueUrl: str, Entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
        ok = []
        with self._lock:
            for entry in Entries:
                if self._in_flight.pop(entry["ReceiptHandle"], None) is not None:
                    ok.append({"Id": entry["Id"]})
                    self.deleted += 1
            self.last_delete_at = time.perf_counter()
        return {"Successful": ok, "Failed": []}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: Sequence[dict[str, Any]]) -> dict:
        with self._lock:
            for entry in Entries:
                message = self._in_flight.pop(entry["ReceiptHandle"], None)
                if message is not None:
                    self._visible.append(message)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def run(stack: Stack, plan: Plan, say: Callable[[str], None]) -> dict[str, Any]:
    import app as app_module  # after the environment is wired: the app reads it at import

    handler = app_module.decline_worker
    setup_db = stack.client("dynamodb")
    owners = [f"bench-p3-parent-{i}" for i in range(10)]
    jobs_per_set = max(1, -(-plan.backlog // APPS_PER_JOB))

    # Warm-up (not timed): the same paths once, so that neither side pays for first calls or a cold JIT.
    warm = prepare_jobs(setup_db, stack.table, 4, APPS_PER_JOB, owners, "p3-warm")
    warm_keys = _keys(warm)
    _raw_updates(warm_keys[: len(warm_keys) // 2], max(plan.concurrency), stack.table)
    warm_queue = MemoryQueue()
    _fill(warm_queue, MEMORY_QUEUE_URL, warm[len(warm) // 2 :])
    _drain(warm_queue, MEMORY_QUEUE_URL, handler, max(plan.concurrency), len(warm_queue), plan.timeout_seconds)

    levels = []
    for concurrency in plan.concurrency:
        raw_jobs = prepare_jobs(setup_db, stack.table, jobs_per_set, APPS_PER_JOB, owners, f"p3-raw-c{concurrency}")
        worker_jobs = prepare_jobs(setup_db, stack.table, jobs_per_set, APPS_PER_JOB, owners, f"p3-wrk-c{concurrency}")
        raw_keys = _keys(raw_jobs)
        # Just written in bulk, the table answers slower for a while: settle it first (not timed).
        settle_jobs = min(SETTLE_JOBS, jobs_per_set)
        settle = prepare_jobs(setup_db, stack.table, settle_jobs, APPS_PER_JOB, owners, f"p3-settle-c{concurrency}")
        queue = MemoryQueue()
        _fill(queue, MEMORY_QUEUE_URL, worker_jobs)
        say(f"  concurrency {concurrency}: {len(queue)} messages queued (in memory), {len(raw_keys)} for raw updates")
        half = len(raw_keys) // 2
        _raw_updates(_keys(settle), concurrency, stack.table)
        raw_a = _raw_updates(raw_keys[:half], concurrency, stack.table)
        worker = _drain(queue, MEMORY_QUEUE_URL, handler, concurrency, len(_keys(worker_jobs)), plan.timeout_seconds)
        raw_b = _raw_updates(raw_keys[half:], concurrency, stack.table)
        raw = {
            "updates": raw_a["updates"] + raw_b["updates"],
            "seconds": raw_a["seconds"] + raw_b["seconds"],
            "failed": raw_a["failed"] + raw_b["failed"],
            "before_per_second": raw_a["per_second"],
            "after_per_second": raw_b["per_second"],
        }
        raw["per_second"] = raw["updates"] / raw["seconds"] if raw["seconds"] else 0.0
        worker["still_pending"] = _count_pending(setup_db, stack.table, _keys(worker_jobs))
        level = {
            "concurrency": concurrency,
            "queue": "memory",
            "raw_update_item": raw,
            "worker": worker,
            "ratio_worker_to_raw": worker["per_second"] / raw["per_second"] if raw["per_second"] else None,
        }
        levels.append(level)
        say(
            f"  concurrency {concurrency}: worker {worker['per_second']:.0f} declines/s, raw UpdateItem "
            f"{raw['per_second']:.0f}/s (ratio {level['ratio_worker_to_raw']:.2f}); "
            f"{worker['still_pending']} left PENDING"
        )

    through_sqs = []
    sqs = stack.client("sqs")
    for concurrency in plan.sqs_concurrency if plan.sqs_backlog else ():
        jobs = prepare_jobs(
            setup_db, stack.table, max(1, -(-plan.sqs_backlog // APPS_PER_JOB)), APPS_PER_JOB, owners, "p3-sqs"
        )
        url = sqs.create_queue(QueueName=f"bench-declines-backlog-c{concurrency}")["QueueUrl"]
        _fill(sqs, url, jobs)
        worker = _drain(sqs, url, handler, concurrency, len(_keys(jobs)), plan.timeout_seconds)
        worker["still_pending"] = _count_pending(setup_db, stack.table, _keys(jobs))
        through_sqs.append({"concurrency": concurrency, "queue": "sqs", "worker": worker})
        say(
            f"  MiniStack SQS, backlog {worker['messages']}, concurrency {concurrency}: "
            f"{worker['per_second']:.0f} declines/s"
        )
    return {"plan": plan.__dict__, "levels": levels, "sqs": through_sqs}


def _keys(jobs: Sequence[PreparedJob]) -> list[tuple[str, str]]:
    return [(j.job_id, a) for j in jobs for a in j.application_ids]


def _fill(sqs: Any, queue_url: str, jobs: Sequence[PreparedJob]) -> None:
    """Queues one decline per application with the service's own publisher."""
    publisher = SqsDeclinePublisher(sqs, lambda: queue_url, concurrency=4)
    for job in jobs:
        report = publisher.publish(job.job_id, job.application_ids)
        if report.failed_ids:
            raise RuntimeError(f"could not queue {len(report.failed_ids)} declines")


def _drain(sqs: Any, queue_url: str, handler: Any, concurrency: int, total: int, timeout: float) -> dict[str, Any]:
    """Polls with ``concurrency`` threads until ``total`` messages are deleted; timed from the first poll."""
    lock = threading.Lock()
    counts = {"deleted": 0, "failed": 0, "batches": 0}
    finished_at: list[float] = []
    stop = threading.Event()
    pollers = [
        QueuePoller(sqs, queue_url, handler, function_name="babysitting-booking-bench-decline_worker", batch_size=10)
        for _ in range(concurrency)
    ]

    def loop(poller: QueuePoller) -> None:
        while not stop.is_set():
            outcome = poller.poll_once()
            if outcome is None:
                continue
            with lock:
                counts["deleted"] += outcome.deleted
                counts["failed"] += outcome.failed
                counts["batches"] += 1
                if counts["deleted"] >= total and not finished_at:
                    finished_at.append(time.perf_counter())
                    stop.set()

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(p,), daemon=True) for p in pollers]
    for t in threads:
        t.start()
    stop.wait(timeout)
    stop.set()
    for t in threads:
        t.join(30)
    seconds = (finished_at[0] if finished_at else time.perf_counter()) - started
    return {
        "messages": total,
        "deleted": counts["deleted"],
        "failed_records": counts["failed"],
        "batches": counts["batches"],
        "seconds": seconds,
        "per_second": counts["deleted"] / seconds if seconds else 0.0,
        "completed": bool(finished_at),
    }


def _raw_updates(keys: Sequence[tuple[str, str]], concurrency: int, table: str) -> dict[str, Any]:
    """The decline's conditional UpdateItem, straight through the service's DynamoDB client.

    Shaped like the pollers: ``concurrency`` threads, each looping until no key is left
    (no hand-off to another thread per update, which would cost the raw side time).
    """
    dynamodb = bootstrap.dynamodb_client()
    failed = 0
    lock = threading.Lock()
    todo = iter(keys)

    def next_key() -> tuple[str, str] | None:
        with lock:
            return next(todo, None)

    def loop() -> None:
        while (key := next_key()) is not None:
            update(key)

    def update(key: tuple[str, str]) -> None:
        nonlocal failed
        try:
            dynamodb.update_item(
                TableName=table,
                Key=application_key(*key),
                ConditionExpression="#status = :pending",
                UpdateExpression="SET #status = :declined, updatedAt = :now",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":pending": {"S": "PENDING"},
                    ":declined": {"S": "DECLINED"},
                    ":now": {"S": format_time(utc_now())},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except Exception:
            with lock:
                failed += 1

    threads = [threading.Thread(target=loop, name=f"raw-{i}", daemon=True) for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return {"updates": len(keys), "seconds": seconds, "per_second": len(keys) / seconds, "failed": failed}


def _count_pending(dynamodb: Any, table: str, keys: Sequence[tuple[str, str]]) -> int:
    pending = 0
    for chunk in chunked(keys, BATCH_GET_LIMIT):
        request: dict[str, Any] = {
            table: {
                "Keys": [application_key(j, a) for j, a in chunk],
                "ProjectionExpression": "#s",
                "ExpressionAttributeNames": {"#s": "status"},
            }
        }
        while request:
            resp = dynamodb.batch_get_item(RequestItems=request)
            pending += sum(1 for i in resp["Responses"].get(table, []) if i["status"]["S"] == "PENDING")
            request = resp.get("UnprocessedKeys") or {}
    return pending
