"""MiniStack, the open-source AWS emulator (DynamoDB, SQS, Lambda, API Gateway, Cognito,
CloudFormation...) that the local stack, the tests and the emulated account run on.

    python -m tools.local.ministack            # install if needed, start on 127.0.0.1:4566, wait for Ctrl-C
    python -m tools.local.ministack --install  # only install

It lives in a virtualenv of its own, ``.local/ministack-venv``, installed on first use
from ``requirements-emulator.txt`` (MiniStack pins its own botocore, which would clash
with ours). Each instance gets its own state directory: MiniStack keeps its Cognito
signing keys there, and with ``persist`` its tables and queues across a clean stop.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.local.processes import DIE_WITH_PARENT, GC_THRESHOLDS, HOST, free_port
from tools.shared import ROOT

REQUIREMENTS = ROOT / "requirements-emulator.txt"
VENV = ROOT / ".local" / "ministack-venv"
DEFAULT_PORT = 4566
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
REGION = "us-east-1"
# What MiniStack's own processes (and the Lambda functions it runs) see as credentials.
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
# A developer's own settings that must not reach the emulator or the functions it runs.
DROPPED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
# MiniStack's own entry point (``python -m ministack``), its full garbage collections made rare first.
_ENTRY = f"import gc; gc.set_threshold{GC_THRESHOLDS}; from ministack.app import main; main()"


class EmulatorError(RuntimeError):
    pass


def python() -> Path:
    return VENV / "bin" / "python"


def _stamp() -> Path:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]
    return VENV / f".installed-{digest}"


def install(quiet: bool = True) -> Path:
    """Creates or updates the emulator's virtualenv (a no-op when current); returns its python."""
    if _stamp().exists():
        return python()
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / ".ministack-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test sessions starting at once install it once
        if _stamp().exists():
            return python()
        print(f"ministack: installing {REQUIREMENTS.name} into {VENV.relative_to(ROOT)}", file=sys.stderr)
        if not python().exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)  # noqa: S603
        pip = [str(python()), "-m", "pip", "install", "--disable-pip-version-check", "-r", str(REQUIREMENTS)]
        result = subprocess.run(pip + (["-q"] if quiet else []), capture_output=quiet, text=True)  # noqa: S603
        if result.returncode != 0:
            raise EmulatorError(f"installing MiniStack failed:\n{result.stdout}\n{result.stderr}")
        for old in VENV.glob(".installed-*"):
            old.unlink()
        _stamp().touch()
    return python()


def healthy(endpoint: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/_ministack/health", timeout=timeout) as resp:  # noqa: S310 - loopback
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class MiniStack:
    process: subprocess.Popen[bytes]
    endpoint: str
    port: int
    state_dir: Path
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, max_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
        """SIGTERM (MiniStack saves persisted state on it), then the whole group: the functions it ran too."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # Lambda workers it started live in its process group; none may outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode


def emulator_environment(
    port: int, state_dir: Path, *, persist: bool, services: Sequence[str] = (), base: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = {k: v for k, v in (base if base is not None else os.environ).items() if k not in DROPPED}
    env = {k: v for k, v in env.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env.update(DUMMY_CREDENTIALS)
    env.update(
        {
            "AWS_DEFAULT_REGION": REGION,
            "GATEWAY_PORT": str(port),
            "BIND_HOST": HOST,  # its default is every interface
            "STATE_DIR": str(state_dir),
            "PERSIST_STATE": "1" if persist else "0",
            "LOG_LEVEL": env.get("MINISTACK_LOG_LEVEL", "WARNING"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if services:
        env["SERVICES"] = ",".join(services)
    return env


def start(
    *,
    port: int = 0,
    state_dir: Path | None = None,
    persist: bool = False,
    services: Sequence[str] = (),
    log_path: Path | None = None,
    ready_timeout: float = READY_TIMEOUT_SECONDS,
) -> MiniStack:
    """Installs if needed, starts MiniStack on loopback and returns once it answers."""
    interpreter = install()
    port = port or free_port()
    state_dir = state_dir or Path(tempfile.mkdtemp(prefix="ministack-state-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_path or state_dir / "ministack.log"
    env = emulator_environment(port, state_dir, persist=persist, services=services)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(  # noqa: S603 - our own venv's interpreter
            [str(interpreter), "-c", _ENTRY],
            cwd=state_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=DIE_WITH_PARENT,
        )
    emulator = MiniStack(process, f"http://{HOST}:{port}", port, state_dir, log_path)
    deadline = time.monotonic() + ready_timeout
    while not healthy(emulator.endpoint, timeout=1.0):
        if process.poll() is not None or time.monotonic() > deadline:
            emulator.stop()
            raise EmulatorError(
                f"MiniStack did not start on port {port} (exit code {process.returncode}):\n{emulator.log_tail()}"
            )
        time.sleep(0.1)
    return emulator


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.local.ministack", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("EMULATOR_PORT") or DEFAULT_PORT))
    parser.add_argument("--state-dir", type=Path, help="where it keeps its state (default: a fresh temporary one)")
    parser.add_argument("--persist", action="store_true", help="save state on a clean stop and reload it at start")
    parser.add_argument("--install", action="store_true", help="install (or update) the virtualenv and exit")
    args = parser.parse_args(argv)
    if args.install:
        install(quiet=False)
        return 0
    stopping = {"now": False}

    def request_stop(*_: object) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        emulator = start(port=args.port, state_dir=args.state_dir, persist=args.persist)
    except EmulatorError as exc:
        print(f"ministack: {exc}", file=sys.stderr)
        return 1
    print(
        f"MiniStack (AWS emulator) on {emulator.endpoint}; state in {emulator.state_dir}, log {emulator.log_path}\n"
        f"  export AWS_ENDPOINT_URL={emulator.endpoint} AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local "
        f"AWS_REGION={REGION}\n"
        f"  then e.g.: make deploy STAGE=dev\n"
        "Ctrl-C stops it.",
        flush=True,
    )
    try:
        while not stopping["now"]:
            if not emulator.alive():
                print(f"ministack exited (code {emulator.process.returncode}):\n{emulator.log_tail()}", file=sys.stderr)
                return 1
            time.sleep(0.3)
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
