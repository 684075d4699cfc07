"""tools.shared.stage_environment: the one reading of a stage's settings, for the local stack and deploys alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.shared import ToolError, stage_environment


def _project(tmp_path: Path, config: dict) -> Path:
    (tmp_path / ".chalice").mkdir()
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return tmp_path


def test_merges_top_level_stage_and_function_as_chalice_does(tmp_path: Path) -> None:
    project = _project(
        tmp_path,
        {
            "version": "2.0",
            "app_name": "x",
            "environment_variables": {"A": "top", "B": "top"},
            "stages": {
                "dev": {
                    "environment_variables": {"B": "stage"},
                    "lambda_functions": {"worker": {"environment_variables": {"C": "fn"}}},
                }
            },
        },
    )
    assert stage_environment("dev", project) == {"A": "top", "B": "stage"}
    assert stage_environment("dev", project, function="worker") == {"A": "top", "B": "stage", "C": "fn"}


def test_an_unknown_stage_an_unreadable_config_and_a_non_string_value_are_tool_errors(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="cannot read"):
        stage_environment("dev", tmp_path)
    project = _project(tmp_path, {"app_name": "x", "stages": {"dev": {"environment_variables": {"N": 3}}}})
    with pytest.raises(ToolError, match=r"'prod' is not in \.chalice/config\.json"):
        stage_environment("prod", project)
    with pytest.raises(ToolError, match=r"\['N'\].*not strings"):
        stage_environment("dev", project)


def test_the_local_stage_is_the_default() -> None:
    assert stage_environment()["TABLE_NAME"] == stage_environment("local")["TABLE_NAME"]
