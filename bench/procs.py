"""Where the CPU goes during a load: CPU time per process, and optional py-spy profiles.

The local stack is one process tree: ``tools.local.stack`` (the queue pollers) and its
children, MiniStack (DynamoDB and SQS, run from its own virtualenv) and ``chalice local``.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PLUMBING = ("(threading.py)", "(socketserver.py)", "(<frozen runpy>)", "(http/server.py)")
# Leaves where a thread waits (for a lock, a timer, a peer's answer): left out of the busy samples.
_IDLE_LEAVES = (
    "select (selectors",
    "wait (threading",
    "_wait_for_tstate_lock",
    "sleep (",
    "accept (socket",
    "readinto (socket",
    "do_poll (urllib3",
)


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after it.
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    times = cpu_times(pid)
    return None if times is None else sum(times)


def cpu_times(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds of a process so far."""
    fields = _stat(pid)
    if fields is None:
        return None
    return int(fields[11]) / _CLOCK_TICKS, int(fields[12]) / _CLOCK_TICKS


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def stack_processes(stack_pid: int) -> dict[str, int]:
    """The stack's processes by role."""
    found = {"queue pollers (tools.localstack)": stack_pid}
    for child in children(stack_pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "ministack" in cmdline:  # its interpreter is .local/ministack-venv's
            found["MiniStack (DynamoDB + SQS)"] = child
        elif "chalice" in cmdline:
            found["chalice local (API)"] = child
    return found


class CpuMeter:
    """CPU seconds each process used between ``start`` and ``stop``, and as a share of one core."""

    def __init__(self, processes: dict[str, int]) -> None:
        self._processes = processes
        self._start: dict[str, tuple[float, float] | None] = {}
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._start = {name: cpu_times(pid) for name, pid in self._processes.items()}

    def stop(self) -> dict[str, Any]:
        """What each process used since ``start`` (may be called more than once)."""
        elapsed = time.monotonic() - self._t0
        out: dict[str, Any] = {"seconds": elapsed, "processes": {}}
        for name, pid in self._processes.items():
            before, after = self._start.get(name), cpu_times(pid)
            if before is None or after is None:
                continue
            user, system = after[0] - before[0], after[1] - before[1]
            out["processes"][name] = {
                "cpu_seconds": user + system,
                "user_seconds": user,
                "system_seconds": system,
                "cores": (user + system) / elapsed if elapsed else 0.0,
            }
        return out


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Profiler:
    """``py-spy record`` of some Python processes for a while (sampling from outside: no changes to them)."""

    def __init__(self, processes: dict[str, int], out_dir: Path, seconds: float, rate: int = 100) -> None:
        self._processes = processes
        self._out_dir = out_dir
        self._seconds = max(1, round(seconds))
        self._rate = rate
        self._running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(self) -> None:
        tool = py_spy()
        if tool is None:
            return
        self._out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self._processes.items():
            path = self._out_dir / f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}.txt"
            cmd = [tool, "record", "-p", str(pid), "-d", str(self._seconds), "-r", str(self._rate)]
            # --gil: only the thread holding the interpreter lock is sampled, so a profile shows
            # where the CPU goes rather than where threads wait for the emulator or a socket.
            cmd += ["--nonblocking", "--gil", "-f", "raw", "-o", str(path)]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
            self._running[name] = (proc, path)

    def finish(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, (proc, path) in self._running.items():
            try:
                proc.wait(self._seconds + 60)
            except subprocess.TimeoutExpired:
                # Sampling many threads can run late; an interrupt makes py-spy write what it has.
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            out[name] = summarize_profile(path) if path.exists() else {"error": f"py-spy exited {proc.returncode}"}
        return out


def summarize_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """Busy samples (idle waits left out) by function, inclusive and self, from py-spy's raw output."""
    inclusive: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        if any(w in frames[-1] for w in _IDLE_LEAVES):
            continue
        n = int(count)
        busy += n
        for frame in set(frames):
            if not frame.endswith(_PLUMBING):
                inclusive[frame] += n
        self_time[frames[-1]] += n

    def rows(counter: collections.Counter[str]) -> list[list[Any]]:
        return [[round(100 * v / busy, 1), k] for k, v in counter.most_common(top)] if busy else []

    return {"file": str(path), "busy_samples": busy, "inclusive_pct": rows(inclusive), "self_pct": rows(self_time)}
