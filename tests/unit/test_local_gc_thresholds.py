"""MiniStack and ``chalice local`` run with garbage-collection thresholds that make their full
collections rare (a full pass over a loaded emulator stalls every request for 70-300 ms)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tools.local import chalice_local, ministack
from tools.local.processes import GC_THRESHOLDS


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
    assert shown.stdout.strip() == str(GC_THRESHOLDS)


def test_full_passes_are_over_700_times_rarer_and_young_ones_small() -> None:
    young, middle, old = GC_THRESHOLDS
    assert young * middle * old >= 700 * (700 * 10 * 10)
    assert young * middle <= 50_000


def test_chalice_local_sets_the_thresholds_before_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    import chalice.cli

    seen: list[tuple[int, int, int]] = []
    monkeypatch.setattr(chalice.cli, "main", lambda: seen.append(gc.get_threshold()) or 0)
    for change in ("disable_nagle", "one_write_per_response", "access_lines_for_errors_only"):
        monkeypatch.setattr(chalice_local, change, lambda: None)
    monkeypatch.setattr(chalice_local, "answer_unknown_methods_with_405", lambda: None)
    before = gc.get_threshold()
    try:
        assert chalice_local.main() == 0
    finally:
        gc.set_threshold(*before)
    assert seen == [GC_THRESHOLDS]
