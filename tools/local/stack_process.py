"""The local stack (``python -m tools.local``) as a child process: started, waited for, stopped.

For whatever drives a whole stack from outside: the end-to-end and reliability tests
and the benchmarks. The stack writes its endpoints to a ready file once everything
answers; this module waits for that file and hands the endpoints over.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from tools.local.processes import DIE_WITH_PARENT
from tools.shared import ROOT

REGION = "us-east-1"
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 15.0


class StackError(RuntimeError):
    pass


def spawn(cmd: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A child in its own process group (so a hung one can be killed whole), output to ``log_path``."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(  # noqa: S603 - commands of this project
            list(cmd),
            cwd=ROOT,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=DIE_WITH_PARENT,
        )


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Signals ``process``; kills its process group if it has not exited in time."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


@dataclass
class StackProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    ready: dict[str, Any] = field(default_factory=dict)
    # Processes the stack uses but did not start (e.g. an SQS server run apart), stopped with it.
    companions: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return self.ready["api_url"]

    @property
    def table(self) -> str:
        return self.ready["table"]

    @property
    def queue_url(self) -> str:
        return self.ready["queue_url"]

    @property
    def dlq_url(self) -> str:
        return self.ready["dlq_url"]

    def log_tail(self, max_chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    def client(self, service: str, **config: Any) -> Any:
        """A client of the stack's emulator for ``service`` (dynamodb or sqs), for setup and checks."""
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

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stops the stack (it stops its own children), then its companions; the stack's exit code."""
        code = stop_process(self.process, sig)
        for companion in self.companions:
            stop_process(companion)
        return code


def start_stack(
    workdir: Path,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    companions: Sequence[subprocess.Popen[bytes]] = (),
    ready_timeout: float = READY_TIMEOUT_SECONDS,
) -> StackProcess:
    """Starts a stack with in-memory data on free ports; returns once it has written its endpoints."""
    workdir.mkdir(parents=True, exist_ok=True)
    ready_file = workdir / "ready.json"
    ready_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "tools.local", "--port", "0", "--in-memory", "--ready-file", str(ready_file)]
    process = spawn([*cmd, *args], workdir / "stack.log", env)
    stack = StackProcess(process, workdir / "stack.log", companions=list(companions))
    deadline = time.monotonic() + ready_timeout
    while not ready_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stack.stop()
            raise StackError(f"the local stack did not start (exit code {process.returncode}):\n{stack.log_tail()}")
        time.sleep(0.1)
    stack.ready = json.loads(ready_file.read_text())
    return stack
