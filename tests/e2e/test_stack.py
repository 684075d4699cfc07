"""The local stack as a tool: clean shutdown, and the token commands."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import pytest

from tests.e2e.conftest import PROJECT_ROOT, Api, RunningStack, start_stack

pytestmark = pytest.mark.e2e


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (Linux /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _refuses_connections(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")
def test_sigterm_stops_every_part_and_frees_the_ports(stack: RunningStack, tmp_path: Path) -> None:
    second = start_stack(tmp_path / "second")
    names = ("api_url", "dynamodb_endpoint", "sqs_endpoint")
    endpoints = sorted({second.ready[k] for k in names})  # DynamoDB and SQS share MiniStack's port
    first_ports = {urlsplit(stack.ready[k]).port for k in names}
    assert not {urlsplit(u).port for u in endpoints} & first_ports  # nothing shared with the first
    children = _descendants(second.process.pid)
    assert len(children) >= 2  # MiniStack and chalice local at least

    started = time.monotonic()
    rc = second.stop(signal.SIGTERM)

    assert rc == 0, second.log_tail()
    assert time.monotonic() - started < 15
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()], "processes left behind"
    for url in endpoints:
        assert _refuses_connections(url), f"{url} still accepts connections"
    assert not (tmp_path / "second" / "ready.json").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_token_prints_exactly_one_line_the_api_accepts(stack: RunningStack) -> None:
    out = subprocess.run(
        ["make", "--no-print-directory", "token", "USER=e2e-maker", "ROLE=parent"],  # noqa: S607
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )

    lines = out.stdout.splitlines()
    assert len(lines) == 1, out.stdout
    claims = jwt.decode(lines[0], options={"verify_signature": False})
    assert claims["cognito:username"] == "e2e-maker"
    assert claims["cognito:groups"] == ["parents"]
    assert claims["token_use"] == "id"
    assert 12 * 3600 - 5 <= claims["exp"] - claims["iat"] <= 12 * 3600
    assert Api(stack, lines[0]).request("GET", "/me/jobs").status_code == 200


@pytest.mark.parametrize("user", ["has space", "", "x" * 129, "semi;colon"])
def test_token_command_refuses_invalid_usernames(user: str) -> None:
    out = subprocess.run(  # noqa: S603 - fixed command
        [sys.executable, "-m", "tools.local.tokens", f"--user={user}", "--role", "nanny"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert out.stdout == ""
    assert "invalid username" in out.stderr
