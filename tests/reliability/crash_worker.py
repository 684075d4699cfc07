"""A decline worker in a process of its own, for crash tests.

    python -m tests.reliability.crash_worker QUEUE_URL [--crash received|mid-batch]

Runs the app's SQS handler (``app.decline_worker``) through ``tools.local.worker.QueuePoller``
against QUEUE_URL, with the environment it is given (the stage's variables and the
emulators' endpoints). It prints one JSON line per event on stdout:

* ``{"event": "outcome", "jobId", "applicationId", "outcome"}`` for every decline the store ran;
* with ``--crash``, ``{"event": "crash-point", "received", "handled"}`` once the first batch
  was received (``received``) or half of it handled (``mid-batch``), and then it hangs
  before anything is deleted from the queue, waiting for its SIGKILL.

SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

import boto3


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


class RecordingStore:
    """The real store, reporting every decline's outcome."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def decline_application(self, job_id: str, application_id: str, now: str, reason: Any = None) -> Any:
        outcome = self._store.decline_application(job_id, application_id, now, reason)
        emit(event="outcome", jobId=job_id, applicationId=application_id, outcome=outcome.value)
        return outcome


def crashing(handler: Any, point: str) -> Any:
    def handle(event: dict[str, Any], context: Any) -> Any:
        records = event["Records"]
        handled = 0
        if point == "mid-batch":
            handled = max(1, len(records) // 2)
            handler({**event, "Records": records[:handled]}, context)
        emit(event="crash-point", received=len(records), handled=handled)
        threading.Event().wait()  # hangs here, nothing deleted, until killed

    return handle


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.crash_worker")
    parser.add_argument("queue_url")
    parser.add_argument("--crash", choices=("received", "mid-batch"))
    args = parser.parse_args(argv)

    # Imported here, as Lambda would: the app reads its environment on import.
    import app as app_module
    from chalicelib import bootstrap
    from tools.local.worker import QueuePoller

    bootstrap.override(store=RecordingStore(bootstrap.store()))
    handler = app_module.decline_worker
    if args.crash:
        handler = crashing(handler, args.crash)
    poller = QueuePoller(
        boto3.client("sqs"),
        args.queue_url,
        handler,
        function_name="booking-decline-worker-crash-test",
        retry_delay_seconds=1,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    emit(event="ready")
    poller.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
