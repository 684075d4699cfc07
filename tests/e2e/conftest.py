"""Runs the local stack (``python -m tools.localstack``) once for the session and drives it over HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from tools.token import make_token

PROJECT_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0


@dataclass
class RunningStack:
    process: subprocess.Popen[bytes]
    log_path: Path
    ready: dict[str, Any] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return self.ready["api_url"]

    def log_tail(self, max_chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    def sqs(self) -> Any:
        return boto3.client(
            "sqs",
            endpoint_url=self.ready["sqs_endpoint"],
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signals the stack; kills its whole process group if it does not exit in time."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


def start_stack(workdir: Path) -> RunningStack:
    """Starts a stack with in-memory data on free ports and waits until it says it is ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    ready_file = workdir / "ready.json"
    log_path = workdir / "stack.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the child writes to it for its whole life
    process = subprocess.Popen(  # noqa: S603 - fixed command
        [sys.executable, "-m", "tools.localstack", "--port", "0", "--in-memory", "--ready-file", str(ready_file)],
        cwd=PROJECT_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so a hung stack can be killed whole
    )
    log.close()
    stack = RunningStack(process, log_path)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while not ready_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stack.stop()
            pytest.fail(f"the local stack did not become ready (exit code {process.returncode}):\n{stack.log_tail()}")
        time.sleep(0.1)
    stack.ready = json.loads(ready_file.read_text())
    return stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    # A no-op once installed; makes `pytest tests/e2e` work without `make localdeps` first.
    script = PROJECT_ROOT / "tools" / "install-local-deps.sh"
    install = subprocess.run(["bash", str(script)], capture_output=True, text=True)  # noqa: S603, S607
    if install.returncode != 0:
        pytest.fail(f"tools/install-local-deps.sh failed:\n{install.stderr}")
    running = start_stack(tmp_path_factory.mktemp("localstack"))
    try:
        yield running
    finally:
        running.stop()


# ------------------------------------------------------------------ helpers


def unique(prefix: str) -> str:
    """A username no other test (or earlier run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Api:
    """A caller of the running API: one bearer token, plain requests."""

    def __init__(self, stack: RunningStack, token: str) -> None:
        self.stack = stack
        self.token = token
        self.http = requests.Session()

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return self.http.request(method, self.stack.api_url + path, headers=headers, timeout=15, **kwargs)

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> dict[str, Any]:
        resp = self.request(method, path, **kwargs)
        assert resp.status_code == status, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp.json()

    def create_job(self) -> dict[str, Any]:
        start = datetime.now(UTC) + timedelta(days=2)
        body = {
            "title": "Evening sitter",
            "startsAt": start.isoformat(),
            "endsAt": (start + timedelta(hours=3)).isoformat(),
        }
        return self.ok("POST", "/jobs", 201, json=body)

    def apply(self, job_id: str) -> dict[str, Any]:
        return self.ok("POST", f"/jobs/{job_id}/applications", 201, json={"message": "Happy to help."})

    def applications(self, job_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 5}  # small pages, so paging is exercised too
        while True:
            page = self.ok("GET", f"/jobs/{job_id}/applications", params=params)
            items += page["items"]
            if not page.get("nextToken"):
                return items
            params["nextToken"] = page["nextToken"]


@pytest.fixture
def as_user(stack: RunningStack) -> Callable[..., Api]:
    def make(role: str, user: str | None = None, token: str | None = None) -> Api:
        return Api(stack, token or make_token(user or unique(role), role))

    return make


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, stack: RunningStack, interval: float = 0.1
) -> Any:
    """Polls ``condition`` until it returns something truthy; fails with the stack's log otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; stack log:\n{stack.log_tail()}")
        time.sleep(interval)


def settled(api: Api, job_id: str) -> Callable[[], list[dict[str, Any]] | None]:
    """A condition: the job's applications once none is PENDING any more."""

    def check() -> list[dict[str, Any]] | None:
        apps = api.applications(job_id)
        return None if any(a["status"] == "PENDING" for a in apps) else apps

    return check
