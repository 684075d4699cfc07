"""What every tools package uses: the project root, output, subprocesses and a stage's settings."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chalice.config import Config

ROOT = Path(__file__).resolve().parent.parent
CHALICE_DIR = ROOT / ".chalice"

Printer = Callable[[str], None]
# Runs a command (argv, extra environment) and returns its exit code.
Runner = Callable[[Sequence[str], dict[str, str]], int]


class ToolError(RuntimeError):
    """A step failed; the message says which and what to do."""


def say(text: str) -> None:
    print(text, flush=True)


def run_command(command: Sequence[str], extra_env: dict[str, str]) -> int:
    env = {**os.environ, **extra_env}
    # cwd: `python -m tools.…` must find this project's tools package.
    return subprocess.run(list(command), env=env, cwd=ROOT, check=False).returncode  # noqa: S603


def load_project_config(project_dir: Path = ROOT) -> dict[str, Any]:
    path = project_dir / ".chalice" / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ToolError(f"cannot read {path}: {exc}") from exc


def chalice_config(stage: str, function: str = "api_handler", project_dir: Path = ROOT) -> Config:
    """The stage's settings for one function, looked up exactly as Chalice does."""
    from chalice.config import Config  # here: the tools that never read a stage do not import Chalice

    on_disk = load_project_config(project_dir)
    if stage not in on_disk.get("stages", {}):
        known = ", ".join(sorted(on_disk.get("stages", {})))
        raise ToolError(f"stage {stage!r} is not in .chalice/config.json (stages: {known})")
    return Config(
        chalice_stage=stage,
        function_name=function,
        config_from_disk=on_disk,
        default_params={"project_dir": str(project_dir), "autogen_policy": True},
    )


def stage_environment(stage: str = "local", project_dir: Path = ROOT, function: str = "api_handler") -> dict[str, str]:
    """The environment variables a stage's function gets from config.json, merged as Chalice merges them
    (top level, then the stage's, then the function's).

    An unreadable config, an unknown stage or a value that is not a string (Lambda takes
    strings only) is a ``ToolError`` saying so, for the local stack as for a deploy.
    """
    env = dict(chalice_config(stage, function, project_dir=project_dir).environment_variables)
    wrong = sorted(name for name, value in env.items() if not isinstance(value, str))
    if wrong:
        raise ToolError(f"stage {stage!r}: environment variables {wrong} in .chalice/config.json are not strings")
    return env
