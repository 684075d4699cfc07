"""MiniStack is started with garbage-collection thresholds that make its full collections rare
(a full pass over a loaded emulator stalls every request for 70-300 ms)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tools.local import ministack


class CapturedPopen:
    commands: list[list[str]] = []

    def __init__(self, cmd: list[str], **_: Any) -> None:
        self.commands.append(cmd)
        self.pid = 0

    def poll(self) -> None:
        return None


def test_the_emulator_runs_its_own_entry_point_after_setting_the_thresholds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ministack, "install", lambda: Path("/emulator/python"))
    monkeypatch.setattr(ministack, "healthy", lambda *_, **__: True)
    monkeypatch.setattr(ministack.subprocess, "Popen", CapturedPopen)
    ministack.start(port=4999, state_dir=tmp_path)
    monkeypatch.undo()  # ``ministack.subprocess`` is the subprocess module: Popen back before running one
    interpreter, flag, code = CapturedPopen.commands[-1]
    assert (interpreter, flag) == ("/emulator/python", "-c")
    settings, _, entry = code.partition("from ministack.app import main")
    assert entry == "; main()"  # what ``python -m ministack`` runs
    shown = subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-c", settings + "print(gc.get_threshold())"], capture_output=True, text=True, check=True
    )
    assert shown.stdout.strip() == str(ministack.GC_THRESHOLDS)
    assert ministack.GC_THRESHOLDS[0] * ministack.GC_THRESHOLDS[1] * ministack.GC_THRESHOLDS[2] >= 1000 * 700 * 10 * 10
