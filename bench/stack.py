"""The local stack (``python -m tools.localstack``) as a subprocess, and this process wired to it.

The stack runs DynamoDB Local, moto's SQS server, ``chalice local`` and the queue
poller; the benchmarks call the service in this process too, against the same
emulators, so this module also gives the process the environment the app sees there.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

PROJECT_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 15.0
REGION = "us-east-1"
DUMMY_AWS = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
}
_DROPPED_AWS = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
# The environment as it was before this process wired itself to a stack: what subprocesses get.
_STARTING_ENV = dict(os.environ)


def clean_env(**extra: str) -> dict[str, str]:
    """An environment for subprocesses: this process's as it started, without emulator endpoints."""
    env = {k: v for k, v in _STARTING_ENV.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env.update(extra)
    return env


# Resolved here, not in the forked child (where loading could deadlock).
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _stop_with_parent() -> None:
    """In the child before exec: the kernel sends it SIGTERM when the benchmark dies, even by SIGKILL."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


class StackError(RuntimeError):
    pass


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    log_path: Path
    ready: dict[str, Any] = field(default_factory=dict)
    sqs_process: subprocess.Popen[bytes] | None = None  # moto's SQS server, when run apart from the stack

    @property
    def api_url(self) -> str:
        return self.ready["api_url"]

    @property
    def table(self) -> str:
        return self.ready["table"]

    def log_tail(self, max_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    def client(self, service: str, **config: Any) -> Any:
        """A client of the stack's emulator for ``service``, for setup and checks."""
        endpoint = self.ready["dynamodb_endpoint" if service == "dynamodb" else "sqs_endpoint"]
        return boto3.session.Session().client(
            service,
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106 - the emulators accept anything
            config=Config(**{"retries": {"mode": "standard"}, "max_pool_connections": 32, **config}),
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        """SIGTERM to the stack (it stops its children); SIGKILL to its process group if it lingers."""
        for process in (self.process, self.sqs_process):
            if process is not None:
                _stop(process)
        return self.process.returncode


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def start_stack(workdir: Path, sqs_own_process: bool = False, pollers: int | None = None) -> Stack:
    """Starts a stack on free ports with in-memory data; returns once it has written its endpoints.

    With ``sqs_own_process``, moto's SQS server (sped up as in the stack, see
    ``tools.moto_sqs``) runs as a process of its own instead of a thread of the stack's
    process, which then only runs the queue pollers: the stack uses the SQS endpoint it
    is given as it is. ``pollers`` overrides the stack's number of queue pollers.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    ready_file = workdir / "ready.json"
    ready_file.unlink(missing_ok=True)
    log_path = workdir / "stack.log"
    env = clean_env()
    sqs_process = None
    if sqs_own_process:
        sqs_process, env["AWS_ENDPOINT_URL_SQS"] = _start_moto_server(workdir)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed command
            [
                sys.executable,
                *("-m", "tools.localstack", "--port", "0", "--in-memory", "--ready-file", str(ready_file)),
                *(("--pollers", str(pollers)) if pollers else ()),
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a hung stack can be killed whole
            preexec_fn=_stop_with_parent if _PRCTL is not None else None,
        )
    stack = Stack(process, log_path, sqs_process=sqs_process)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not ready_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stack.stop()
            raise StackError(f"the local stack did not start (exit code {process.returncode}):\n{stack.log_tail()}")
        time.sleep(0.1)
    stack.ready = json.loads(ready_file.read_text())
    return stack


def _start_moto_server(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(workdir / "moto-sqs.log", "wb") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed command
            [sys.executable, "-m", "tools.moto_sqs", "-H", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT_ROOT,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_stop_with_parent if _PRCTL is not None else None,
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        try:
            with urllib.request.urlopen(endpoint + "/moto-api/data.json", timeout=2):  # noqa: S310 - loopback
                return process, endpoint
        except (urllib.error.URLError, OSError):
            if process.poll() is not None or time.monotonic() > deadline:
                _stop(process)
                raise StackError(f"moto's SQS server did not start (exit code {process.returncode})") from None
            time.sleep(0.1)


def prepare_environment() -> None:
    """Gives this process the environment ``chalice local --stage local`` gives the app.

    The stage's variables from ``.chalice/config.json`` and dummy credentials. Call it
    before anything imports ``chalicelib``: its logger and metrics read it at import.
    """
    from tools.devkeys import stage_environment

    for name in _DROPPED_AWS:
        os.environ.pop(name, None)
    os.environ.update(DUMMY_AWS)
    os.environ.update(stage_environment("local"))


def point_at(stack: Stack, **overrides: str) -> None:
    """Points this process's AWS clients at the stack's emulators (``overrides`` set last)."""
    os.environ.pop("DECLINES_QUEUE_URL", None)
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = stack.ready["dynamodb_endpoint"]
    os.environ["AWS_ENDPOINT_URL_SQS"] = stack.ready["sqs_endpoint"]
    os.environ.update(overrides)
    from chalicelib import bootstrap

    bootstrap.reset()
