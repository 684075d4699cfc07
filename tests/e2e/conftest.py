"""Runs the local stack (``python -m tools.local``) once for the session and drives it over HTTP."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tools.local import ministack
from tools.local.stack_process import StackError, StackProcess
from tools.local.stack_process import start_stack as start_stack_process
from tools.local.tokens import make_token

PROJECT_ROOT = Path(__file__).resolve().parents[2]

RunningStack = StackProcess


def start_stack(workdir: Path, env: Mapping[str, str] | None = None, args: Sequence[str] = ()) -> RunningStack:
    """Starts a stack with in-memory data on free ports and waits until it says it is ready.

    ``env``: the stack's whole environment (default: this process's).
    """
    try:
        return start_stack_process(workdir, env=env, args=args)
    except StackError as err:
        pytest.fail(str(err))


@contextlib.contextmanager
def local_stack(
    workdir: Path, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
) -> Iterator[RunningStack]:
    """A stack for a test session, stopped afterwards.

    Installs MiniStack first (a no-op once installed), so that pytest works on its
    own, without `make emulator`.
    """
    try:
        ministack.install()
    except ministack.EmulatorError as err:
        pytest.fail(str(err))
    running = start_stack(workdir, env, args)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with local_stack(tmp_path_factory.mktemp("localstack")) as running:
        yield running


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
