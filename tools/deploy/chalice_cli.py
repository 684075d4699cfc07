"""The ``chalice`` command line, run directly or through tools/deploy/chalice_with_env.py."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from tools.deploy.chalice_with_env import VARIABLE as STAGE_ENV_VARIABLE
from tools.deploy.settings import DeployError
from tools.shared import ROOT, Runner


def chalice_command(*args: str, project_dir: Path = ROOT) -> list[str]:
    exe = Path(sys.executable).with_name("chalice")
    program = str(exe) if exe.exists() else (shutil.which("chalice") or "chalice")
    return [program, "--project-dir", str(project_dir), *args]


def chalice_with_env_command(*args: str, project_dir: Path = ROOT) -> list[str]:
    """``chalice`` through tools/deploy/chalice_with_env.py, which adds $CHALICE_EXTRA_STAGE_ENV to the stage."""
    return [sys.executable, "-m", "tools.deploy.chalice_with_env", "--project-dir", str(project_dir), *args]


def run_chalice(
    run: Runner,
    *args: str,
    project_dir: Path = ROOT,
    extra_env: dict | None = None,
    stage_env: dict[str, str] | None = None,
) -> None:
    if stage_env:
        command = chalice_with_env_command(*args, project_dir=project_dir)
        extra_env = {**(extra_env or {}), STAGE_ENV_VARIABLE: json.dumps(stage_env)}
    else:
        command = chalice_command(*args, project_dir=project_dir)
    code = run(command, dict(extra_env or {}))
    if code != 0:
        raise DeployError(f"`chalice {' '.join(args)}` failed (exit {code}); its output is above")
