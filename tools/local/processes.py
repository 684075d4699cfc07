"""Child processes of the local stack's tools: ports on loopback, and children that die with their parent."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

from tools.shared import ROOT

log = logging.getLogger("tools.local")

HOST = "127.0.0.1"
STOP_TIMEOUT_SECONDS = 5.0
# For MiniStack and ``chalice local``. Python's cyclic garbage collector, with its default
# thresholds (700, 10, 10), makes a full pass over every object of the process every ~70,000
# allocations: in a loaded MiniStack (each item, queued message and stream record it holds) every
# 5-6 s, for 70-300 ms during which no request is answered. With these a young pass sees at most
# ~50,000 objects (~15 ms) and a full one comes over 700 times more rarely (about hourly under
# load); cyclic garbage is still collected.
GC_THRESHOLDS = (5_000, 10, 1000)

# Looked up here, not in the forked child, where taking the loader's lock could deadlock.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends it SIGTERM if this process dies, even by SIGKILL."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


# A ``preexec_fn`` for Popen, or None where prctl does not exist (not Linux).
DIE_WITH_PARENT: Callable[[], None] | None = _die_with_parent if _PRCTL is not None else None


def rare_full_collections() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the HTTP server binds: connections of a previous run in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
        return False


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    output: IO[bytes] | None = None  # where its output went, when not to the console

    def tail(self, max_bytes: int = 4000) -> str:
        if self.output is None:
            return ""
        self.output.seek(0)
        return self.output.read()[-max_bytes:].decode("utf-8", "replace")

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """SIGTERM to its whole process group, SIGKILL if it lingers; reaps it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", self.name, timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.output is not None:
            self.output.close()


def spawn(name: str, cmd: Sequence[str], env: dict[str, str], capture: bool) -> Child:
    output = tempfile.TemporaryFile() if capture else None  # noqa: SIM115 - closed by Child.stop
    process = subprocess.Popen(  # noqa: S603 - fixed commands
        list(cmd),
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if capture else None,
        # Its own process group: the terminal's Ctrl-C reaches only us, and we stop
        # the children in order, each with everything it started.
        start_new_session=True,
        preexec_fn=DIE_WITH_PARENT,
    )
    return Child(name, process, output)
