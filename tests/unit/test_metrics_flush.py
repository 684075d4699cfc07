"""Metrics are forgotten once flushed, even when publishing them is disabled."""

from __future__ import annotations

import pytest

from chalicelib import observability


@pytest.mark.parametrize("disabled", ["true", "false"])
def test_flushed_metrics_do_not_pile_up(disabled: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", disabled)
    metrics = observability.PowertoolsMetrics()
    for _ in range(150):  # powertools prints a metric on its own once it holds 100 values
        metrics.count("DeclinesApplied")
        observability.flush_metrics()
    printed = [line for line in capsys.readouterr().out.splitlines() if "DeclinesApplied" in line]
    assert len(printed) == (0 if disabled == "true" else 150)
    assert not observability._metrics.metric_set
