"""The whole service on this machine, as one process tree: ``python -m tools.local``.

Starts, in order: MiniStack (``tools.local.ministack``) for DynamoDB and its streams, SQS,
EventBridge and SES, the resources of ``infra/resources.yaml`` on it, the dev signing
key, ``chalice local`` for the HTTP API, the SQS handlers' pollers (threads, see
``tools.local.worker``), the stream's poller (a thread, see ``tools.local.stream``) and the scheduled
handlers, every few seconds (``tools.local.schedule``). Ctrl-C or SIGTERM stops everything,
MiniStack last (it saves its state then), and exits 0. ``make mail`` reads the emails its
SES sent (``tools.local.mail``).

``AWS_ENDPOINT_URL_DYNAMODB`` / ``AWS_ENDPOINT_URL_SQS``, when already set, are used
as they are (the table's stream is read where the table is); MiniStack still serves
EventBridge and SES.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import boto3
from botocore.config import Config

from tools import resources
from tools.local import ministack
from tools.local.devkeys import ensure_keys
from tools.local.processes import HOST, STOP_TIMEOUT_SECONDS, Child, free_port, port_in_use, spawn
from tools.shared import ROOT, stage_environment

log = logging.getLogger("tools.local")

STAGE = "local"
REGION = "us-east-1"
LOCAL_DIR = ROOT / ".local"
# MiniStack's state (tables, queues and their messages), saved on a clean stop. `make clean-local` forgets it.
DATA_DIR = LOCAL_DIR / "data" / "ministack"
EMULATED = ("dynamodb", "sqs")
ALWAYS_EMULATED = ("events", "ses")  # the bus and the emails: MiniStack's alone
# Where the stream's poller keeps its place across restarts (with the saved state).
STREAM_CHECKPOINTS = LOCAL_DIR / "data" / "stream-checkpoints.json"
# The running stack's MiniStack endpoint, for `make mail`.
ENDPOINT_FILE = LOCAL_DIR / "endpoint"
STARTUP_TIMEOUT_SECONDS = 60.0
# Concurrent batches per SQS handler. Lambda starts an SQS source at five and scales up while
# messages wait. Here each poller mostly waits for the emulator's answers: two left MiniStack
# half idle, so the declines fell behind a 50 req/s load, and a deeper queue costs MiniStack
# more per message (it scans the whole queue on every receive and delete), so they fell further.
# Four drained the same load's backlog three times faster, at two thirds of the CPU per booking.
DEFAULT_POLLERS = 4
# After a batch of fewer than ten, a poller waits this long before receiving again (Lambda's
# MaximumBatchingWindowInSeconds): declines arriving one by one at a few hundred a second
# then come ten to a call instead of one or two, and the poll costs the emulator a tenth.
DEFAULT_BATCHING_WINDOW_SECONDS = 0.1
# The scheduled handlers (expiry, completion) run every minute on AWS; here often enough
# that a job starting in 20 s is EXPIRED well within a minute of its start.
DEFAULT_SCHEDULE_SECONDS = 10.0

# Credentials nobody could mistake for real ones; the emulator accepts anything.
DUMMY_AWS = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
}
# Credentials of the developer's own that must not reach the emulator or the app.
DROPPED_AWS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


class StartupError(RuntimeError):
    pass


class Stopped(Exception):
    """Shutdown was requested while starting."""


@dataclass
class Options:
    port: int = 8000
    in_memory: bool = False
    ready_file: Path | None = None
    retry_delay: int = 1
    pollers: int = DEFAULT_POLLERS
    batching_window: float = DEFAULT_BATCHING_WINDOW_SECONDS
    schedule_every: float = DEFAULT_SCHEDULE_SECONDS
    # Off: nothing reads the table's stream, so a commit is healed only by its request's own
    # fast path, a repeat or `make reconcile` (what the reliability tests exercise).
    stream: bool = True


@dataclass
class Endpoints:
    api_url: str = ""
    dynamodb: str = ""
    sqs: str = ""
    emulator: str | None = None  # MiniStack's endpoint, when this stack started one
    outputs: dict[str, Any] = field(default_factory=dict)

    def ready_json(self) -> dict[str, Any]:
        return {
            "api_url": self.api_url,
            "dynamodb_endpoint": self.dynamodb,
            "sqs_endpoint": self.sqs,
            "emulator_endpoint": self.emulator,
            "queue_url": self.outputs["DeclinesQueueUrl"],
            "dlq_url": self.outputs["DeclinesDeadLetterQueueUrl"],
            "notifications_queue_url": self.outputs.get("NotificationsQueueUrl"),
            "stream_failures_queue_url": self.outputs.get("StreamFailuresQueueUrl"),
            "mail_sender": self.outputs.get("MailSender"),
            "table": self.outputs["TableName"],
            "pid": os.getpid(),
        }


class LocalStack:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.endpoints = Endpoints()
        self._stop = threading.Event()
        self._emulator: ministack.MiniStack | None = None
        self._scratch_state: Path | None = None  # --in-memory: MiniStack's state dir, removed at close
        self._api: Child | None = None
        self._worker_stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._pollers: list[Any] = []
        self._data_lock: IO[str] | None = None

    # ------------------------------------------------------------ lifecycle

    def request_stop(self) -> None:
        self._stop.set()

    def start(self) -> None:
        if self.options.port and port_in_use(self.options.port):  # say so before starting anything
            raise StartupError(f"port {self.options.port} is in use (another local stack?); choose one with PORT=...")
        base_env = {k: v for k, v in os.environ.items() if k not in DROPPED_AWS}
        base_env.update(DUMMY_AWS)
        given = {
            "dynamodb": os.environ.get("AWS_ENDPOINT_URL_DYNAMODB", ""),
            "sqs": os.environ.get("AWS_ENDPOINT_URL_SQS", ""),
        }
        missing = [service for service in EMULATED if not given[service]]
        missing += ["dynamodbstreams"] if "dynamodb" in missing else []
        emulator = self.endpoints.emulator = self._start_emulator(missing + list(ALWAYS_EMULATED))
        self.endpoints.dynamodb = given["dynamodb"] or emulator
        self.endpoints.sqs = given["sqs"] or emulator
        base_env["AWS_ENDPOINT_URL_DYNAMODB"] = self.endpoints.dynamodb
        base_env["AWS_ENDPOINT_URL_DYNAMODB_STREAMS"] = self.endpoints.dynamodb
        base_env["AWS_ENDPOINT_URL_SQS"] = self.endpoints.sqs
        base_env["AWS_ENDPOINT_URL_EVENTBRIDGE"] = emulator
        base_env["AWS_ENDPOINT_URL_SESV2"] = emulator
        if not self.options.in_memory:  # the developer's stack; a test's own stacks say theirs in the ready file
            ENDPOINT_FILE.parent.mkdir(parents=True, exist_ok=True)
            ENDPOINT_FILE.write_text(f"{emulator}\n")
        self._check_stop()
        self.endpoints.outputs = self._apply_resources()
        ensure_keys()
        self._check_stop()
        self.endpoints.api_url = self._start_api(base_env)
        # The worker runs the app in this process, with the environment chalice
        # local gives it: the stage's variables plus the emulator endpoints.
        os.environ.update(base_env)
        for name in DROPPED_AWS:
            os.environ.pop(name, None)
        os.environ.update(stage_environment(STAGE))
        self._start_workers()

    def wait(self) -> int:
        """Until a stop is requested (0) or a child dies on its own (1)."""
        while not self._stop.wait(0.5):
            if self._emulator is not None and not self._emulator.alive():
                log.error(
                    "MiniStack exited unexpectedly (code %s); its log:\n%s",
                    self._emulator.process.returncode,
                    self._emulator.log_tail(),
                )
                return 1
            if self._api is not None and self._api.process.poll() is not None:
                log.error("%s exited unexpectedly (code %s)", self._api.name, self._api.process.returncode)
                return 1
        return 0

    def close(self) -> None:
        """Stops whatever was started, API first (no new bookings), MiniStack last (it saves its state)."""
        if self._api is not None:
            self._api.stop()
        self._worker_stop.set()
        for thread in self._workers:
            thread.join(STOP_TIMEOUT_SECONDS * 2)
        for poller in self._pollers:
            if poller.batches:
                log.info(
                    "pollers handed over %d messages in %d batches (%.1f a batch)",
                    poller.messages,
                    poller.batches,
                    poller.messages / poller.batches,
                )
        if self._emulator is not None:
            with contextlib.suppress(OSError):
                if ENDPOINT_FILE.read_text().strip() == self._emulator.endpoint:
                    ENDPOINT_FILE.unlink()
        if self._emulator is not None and self._emulator.stop() not in (0, -signal.SIGTERM):
            log.warning("MiniStack did not stop cleanly; its log:\n%s", self._emulator.log_tail())
        if self._scratch_state is not None:
            shutil.rmtree(self._scratch_state, ignore_errors=True)
        if self._data_lock is not None:
            self._data_lock.close()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise Stopped

    def _wait_until(self, ready: Callable[[], bool], what: str, child: Child | None = None) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not ready():
            self._check_stop()
            if child is not None and child.process.poll() is not None:
                raise StartupError(f"{what} exited with code {child.process.returncode}{_tail(child)}")
            if time.monotonic() > deadline:
                raise StartupError(f"{what} did not answer within {STARTUP_TIMEOUT_SECONDS:.0f} s{_tail(child)}")
            time.sleep(0.1)

    # ----------------------------------------------------------- components

    def _start_emulator(self, services: Sequence[str]) -> str:
        """One MiniStack for ``services``: persisted in DATA_DIR, or in a scratch dir with --in-memory."""
        if self.options.in_memory:
            state_dir = self._scratch_state = Path(tempfile.mkdtemp(prefix="localstack-ministack-"))
            log_path = state_dir / "ministack.log"
        else:
            DATA_DIR.mkdir(parents=True, exist_ok=True)
            self._lock_data_dir()
            state_dir = DATA_DIR
            log_path = LOCAL_DIR / "ministack.log"  # beside the state, not in it: one run's log only
            log_path.unlink(missing_ok=True)
        try:
            self._emulator = ministack.start(
                port=0 if self.options.in_memory else _saved_emulator_port(),
                state_dir=state_dir,
                persist=not self.options.in_memory,
                services=services,
                log_path=log_path,
                ready_timeout=STARTUP_TIMEOUT_SECONDS,
            )
        except ministack.EmulatorError as exc:
            raise StartupError(str(exc)) from None
        log.info(
            "MiniStack (%s) on %s, %s",
            ", ".join(services),
            self._emulator.endpoint,
            "in memory" if self.options.in_memory else f"state saved in {state_dir} on a clean stop",
        )
        return self._emulator.endpoint

    def _lock_data_dir(self) -> None:
        """Two stacks on one state dir would overwrite each other's saved state."""
        self._data_lock = open(DATA_DIR / ".lock", "w")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(self._data_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StartupError(
                f"another local stack is using {DATA_DIR}; stop it, or run this one with --in-memory"
            ) from None

    def _apply_resources(self) -> dict[str, Any]:
        emulator = self.endpoints.emulator or ""
        outputs = resources.apply(
            _client("dynamodb", self.endpoints.dynamodb),
            _client("sqs", self.endpoints.sqs),
            stage=STAGE,
            events=_client("events", emulator),
            sesv2=_client("sesv2", emulator),
        )
        log.info(
            "applied %s: table %s, queue %s",
            resources.TEMPLATE.name,
            outputs["TableName"],
            outputs["DeclinesQueueName"],
        )
        return outputs

    def _start_api(self, env: dict[str, str]) -> str:
        port = self.options.port or free_port()
        # No autoreload: it would fork a second server process, and the in-process
        # worker would keep running the old code anyway. Restart the stack instead.
        cmd = [
            sys.executable,
            "-m",
            "tools.local.chalice_local",
            "local",
            "--stage",
            STAGE,
            "--host",
            HOST,
            "--port",
            str(port),
            "--no-autoreload",
        ]
        # The API's own output (request lines, app logs) goes to the console, unbuffered.
        child = self._api = spawn("chalice local", cmd, {**env, "PYTHONUNBUFFERED": "1"}, capture=False)
        url = f"http://{HOST}:{port}"
        self._wait_until(lambda: _http_answers(url), "chalice local", child)
        return url

    def _start_stream(self, app_module: Any, source: Any) -> None:
        from tools.local.stream import StreamPoller

        sqs = _client("sqs", self.endpoints.sqs)
        failures_url = self.endpoints.outputs["StreamFailuresQueueUrl"]
        poller = StreamPoller(
            _client("dynamodbstreams", self.endpoints.dynamodb),
            self.endpoints.outputs["TableStreamArn"],
            getattr(app_module, source.name),
            function_name=f"{app_module.app.app_name}-{STAGE}-{source.name}",
            batch_size=source.batch_size,
            # As the packaged subscription (tools/deploy/templates.py), with retries seconds apart.
            max_retries=3,
            retry_delay_seconds=self.options.retry_delay,
            on_failure=lambda note: sqs.send_message(QueueUrl=failures_url, MessageBody=json.dumps(note)),
            checkpoint_path=None if self.options.in_memory else STREAM_CHECKPOINTS,
        )
        thread = threading.Thread(target=poller.run, args=(self._worker_stop,), name="table-stream", daemon=True)
        thread.start()
        self._workers.append(thread)
        log.info("%s polls the table's stream (checkpoints %s)", source.name, poller_checkpoints(self.options))

    def _start_workers(self) -> None:
        from chalice.app import DynamoDBEventConfig, ScheduledEventConfig, SQSEventConfig

        from tools.local import schedule as local_schedule
        from tools.local.worker import QueuePoller, start_in_thread

        sys.path.insert(0, str(ROOT))
        import app as app_module  # after the environment is set: the app reads it at import

        chalice_app = app_module.app
        sqs = _client("sqs", self.endpoints.sqs, long_poll=True)
        for source in chalice_app.event_sources:
            if isinstance(source, ScheduledEventConfig) and self.options.schedule_every > 0:
                schedule = local_schedule.Schedule(
                    getattr(app_module, source.name),
                    function_name=f"{chalice_app.app_name}-{STAGE}-{source.name}",
                    every=self.options.schedule_every,
                    region=REGION,
                )
                self._workers.append(local_schedule.start_in_thread(schedule, self._worker_stop))
                log.info("%s runs every %g s", source.name, self.options.schedule_every)
                continue
            if isinstance(source, DynamoDBEventConfig):
                if self.options.stream:
                    self._start_stream(app_module, source)
                else:
                    log.info("%s: the table's stream is not polled (--no-stream)", source.name)
                continue
            if not isinstance(source, SQSEventConfig):
                continue
            queue = source.queue or (source.queue_arn or "").rpartition(":")[2]
            poller = QueuePoller(
                sqs,
                sqs.get_queue_url(QueueName=queue)["QueueUrl"],
                getattr(app_module, source.name),
                function_name=f"{chalice_app.app_name}-{STAGE}-{source.name}",
                batch_size=source.batch_size,
                batching_window_seconds=self.options.batching_window,
                retry_delay_seconds=self.options.retry_delay,
                # As the deployed stages configure the function (.chalice/config.json).
                timeout_seconds=30,
                memory_limit_in_mb=256,
            )
            self._pollers.append(poller)
            for _ in range(self.options.pollers):
                self._workers.append(start_in_thread(poller, self._worker_stop))
            log.info(
                "%s polls %s with %d pollers (batching window %g s, retries after %d s)",
                source.name,
                queue,
                self.options.pollers,
                self.options.batching_window,
                self.options.retry_delay,
            )


def poller_checkpoints(options: Options) -> str:
    return "in memory" if options.in_memory else str(STREAM_CHECKPOINTS.relative_to(ROOT))


def _saved_emulator_port() -> int:
    """The port the saved state was served on, if still free: MiniStack's queue URLs carry it."""
    saved = DATA_DIR / "port"
    try:
        port = int(saved.read_text())
    except (OSError, ValueError):
        port = 0
    if not port or port_in_use(port):
        port = free_port()
    saved.write_text(f"{port}\n")
    return port


def _client(service: str, endpoint: str, *, long_poll: bool = False) -> Any:
    config = Config(connect_timeout=2, read_timeout=30 if long_poll else 10, retries={"mode": "standard"})
    return boto3.session.Session().client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=DUMMY_AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_AWS["AWS_SECRET_ACCESS_KEY"],
        config=config,
    )


def _http_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/", timeout=2):  # noqa: S310 - our own local URL
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means it is serving
    except (urllib.error.URLError, OSError):
        return False


def _tail(child: Child | None) -> str:
    text = child.tail() if child is not None else ""
    return f"; its output:\n{text}" if text else ""


def _write_ready_file(path: Path, content: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # readers see nothing or all of it


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m tools.local", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT") or 8000),
        help="API port (default $PORT or 8000; 0: any free port)",
    )
    parser.add_argument("--in-memory", action="store_true", help="keep nothing (MiniStack in a scratch state dir)")
    parser.add_argument("--ready-file", type=Path, help="write the endpoints here as JSON once everything answers")
    parser.add_argument(
        "--retry-delay", type=int, default=1, help="seconds before a failed SQS message is retried (default 1)"
    )
    parser.add_argument(
        "--pollers",
        type=int,
        default=DEFAULT_POLLERS,
        help=f"concurrent pollers per SQS handler, like Lambda's concurrent batches (default {DEFAULT_POLLERS})",
    )
    parser.add_argument(
        "--batching-window",
        type=float,
        default=DEFAULT_BATCHING_WINDOW_SECONDS,
        help="seconds a poller waits after a batch of fewer than ten, like Lambda's "
        f"MaximumBatchingWindowInSeconds (default {DEFAULT_BATCHING_WINDOW_SECONDS:g}; 0: receive again at once)",
    )
    parser.add_argument(
        "--schedule-every",
        type=float,
        default=float(os.environ.get("SCHEDULE_EVERY") or DEFAULT_SCHEDULE_SECONDS),
        help="seconds between runs of each scheduled handler "
        f"(default $SCHEDULE_EVERY or {DEFAULT_SCHEDULE_SECONDS:g}; 0: never)",
    )
    parser.add_argument(
        "--no-stream",
        action="store_true",
        help="do not poll the table's stream: no healing by the stream, no events, no emails",
    )
    args = parser.parse_args(argv)
    if args.pollers < 1:
        parser.error("--pollers must be at least 1")
    if args.batching_window < 0:
        parser.error("--batching-window must not be negative")
    return Options(
        args.port,
        args.in_memory,
        args.ready_file,
        args.retry_delay,
        args.pollers,
        args.batching_window,
        args.schedule_every,
        stream=not args.no_stream,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.chdir(ROOT)  # chalice local reads .chalice/ and the JWKS path relative to it

    stack = LocalStack(options)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stack.request_stop())
    started = time.monotonic()
    rc = 0
    try:
        stack.start()
        ep = stack.endpoints
        if options.ready_file is not None:
            _write_ready_file(options.ready_file, ep.ready_json())
        print(
            f"Booking API ready at {ep.api_url} (DynamoDB {ep.dynamodb}, SQS {ep.sqs}; "
            f"started in {time.monotonic() - started:.1f} s). Ctrl-C stops it.",
            flush=True,
        )
        rc = stack.wait()
    except Stopped:
        pass
    except StartupError as exc:
        log.error("%s", exc)
        rc = 1
    finally:
        log.info("stopping")
        stack.close()
        if options.ready_file is not None:
            options.ready_file.unlink(missing_ok=True)
        log.info("stopped")
    return rc


if __name__ == "__main__":
    sys.exit(main())
