"""Logs are JSON, once per line, carry the request id and the ids in play, and forget them after."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from chalicelib.observability import logger
from tests.integration.conftest import Api, Aws

ROOT = Path(__file__).resolve().parents[2]


def _json_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    """The records as the app's handler prints them."""
    lines = [json.loads(logger.registered_formatter.format(r)) for r in caplog.records if r.name.startswith("booking")]
    caplog.clear()
    return lines


def test_log_lines_carry_correlation_and_ids_and_are_cleared(
    api: Api, aws: Aws, caplog: pytest.LogCaptureFixture
) -> None:
    job = api.create_job("alice")
    caplog.set_level(logging.INFO)
    caplog.clear()

    # a refusal logs one line with the job id and the request's correlation id
    api.call("POST", f"/jobs/{job['jobId']}/applications", user="bob", body={})
    refused = [line for line in _json_lines(caplog) if line["message"] == "request refused"]
    assert len(refused) == 1
    assert refused[0]["jobId"] == job["jobId"] and refused[0]["code"] == "ROLE_REQUIRED"
    assert refused[0].get("correlation_id")

    # the next request's lines do not inherit that job id
    api.call("GET", "/jobs?limit=0", user="alice")
    lines = _json_lines(caplog)
    assert lines and all("jobId" not in line for line in lines)
    assert lines[0]["correlation_id"] != refused[0]["correlation_id"]


def _emf(out: str) -> dict[str, float]:
    """Sums the metric values of every EMF blob printed."""
    totals: dict[str, float] = {}
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blob = json.loads(line)
            for metric in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                values = blob[metric["Name"]]
                totals[metric["Name"]] = totals.get(metric["Name"], 0) + sum(
                    values if isinstance(values, list) else [values]
                )
    return totals


def test_bookings_and_declines_are_counted_in_emf(api: Api, aws: Aws, client, capsys) -> None:
    from tests.integration.conftest import run_worker

    job = api.create_job("alice")
    apps = [api.apply(f"n{i}", job["jobId"])["applicationId"] for i in range(3)]
    capsys.readouterr()
    api.book("alice", job["jobId"], apps[0])
    assert _emf(capsys.readouterr().out) == {"Bookings": 1, "DeclinesQueued": 2}
    run_worker(client, aws)
    assert _emf(capsys.readouterr().out) == {"DeclinesApplied": 2}


def test_every_failure_after_a_commit_is_counted_for_its_alarm(api: Api, aws: Aws, capsys) -> None:
    from botocore.exceptions import ReadTimeoutError

    from chalicelib import bootstrap

    job = api.create_job("alice")
    apps = [api.apply(f"n{i}", job["jobId"])["applicationId"] for i in range(3)]

    def no_index(**_: Any) -> None:
        raise ReadTimeoutError(endpoint_url="https://dynamodb.test")

    bootstrap.dynamodb_client().meta.events.register("before-send.dynamodb.Query", no_index)
    capsys.readouterr()
    reply = api.book("alice", job["jobId"], apps[0])
    assert (reply.status, reply.body["code"]) == (503, "BOOKING_INCOMPLETE")
    assert _emf(capsys.readouterr().out) == {"Bookings": 1, "PostCommitFailures": 1}
    # the alarm that watches it
    template = (ROOT / "infra" / "operations.yaml").read_text()
    assert "MetricName: PostCommitFailures" in template
