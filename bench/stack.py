"""The local stack (``python -m tools.local``) as a subprocess, and this process wired to it.

The stack runs MiniStack (DynamoDB and SQS), ``chalice local`` and the queue
pollers; the benchmarks call the service in this process too, against the same
emulators, so this module also gives the process the environment the app sees there.
"""

from __future__ import annotations

import os
from pathlib import Path

from tools.local.stack import DROPPED_AWS, DUMMY_AWS
from tools.local.stack_process import StackProcess
from tools.local.stack_process import start_stack as start_stack_process
from tools.shared import ROOT as PROJECT_ROOT  # noqa: F401 - re-exported for the other bench modules

# The declines of the bookings a part makes in this process: a queue of the bench's own, which the
# stack's pollers do not read.
BOOK_QUEUE_NAME = "bench-book-declines"
# The environment as it was before this process wired itself to a stack: what subprocesses get.
_STARTING_ENV = dict(os.environ)


def clean_env(**extra: str) -> dict[str, str]:
    """An environment for subprocesses: this process's as it started, without emulator endpoints."""
    env = {k: v for k, v in _STARTING_ENV.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env.update(extra)
    return env


Stack = StackProcess


def start_stack(workdir: Path, pollers: int | None = None, batching_window: float | None = None) -> Stack:
    """Starts a stack on free ports with in-memory data; returns once it has written its endpoints.

    ``pollers`` and ``batching_window`` override the stack's queue pollers and their batching window.
    """
    args: list[str] = []
    if pollers:
        args += ["--pollers", str(pollers)]
    if batching_window is not None:
        args += ["--batching-window", f"{batching_window:g}"]
    return start_stack_process(workdir, args=args, env=clean_env())


def prepare_environment() -> None:
    """Gives this process the environment ``chalice local --stage local`` gives the app.

    The stage's variables from ``.chalice/config.json`` and dummy credentials. Call it
    before anything imports ``chalicelib``: its logger and metrics read it at import.
    """
    from tools.shared import stage_environment

    for name in DROPPED_AWS:
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
