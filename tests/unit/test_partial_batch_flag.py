"""Partial batch responses are on only where the stage says so: unset or unclear means off.

Lambda honours a ``batchItemFailures`` answer only when the event source mapping has
``ReportBatchItemFailures``; where it is not known to be set, a partial answer would get the
failed records deleted. Every other test sets the variable, so this one unsets it.
"""

from __future__ import annotations

import pytest

from chalicelib import bootstrap

NAME = "DECLINES_PARTIAL_BATCH_RESPONSES"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        ("", False),
        ("false", False),
        ("FALSE", False),
        ("0", False),
        ("no", False),
        ("garbage", False),
        ("ture", False),
        ("true", True),
        ("TRUE", True),
        (" true ", True),
        ("1", True),
    ],
)
def test_partial_batch_responses_only_when_the_stage_says_true(
    value: str | None, expected: bool, app_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv(NAME, raising=False)
    else:
        monkeypatch.setenv(NAME, value)
    bootstrap.reset()
    assert bootstrap.partial_batch_responses() is expected
