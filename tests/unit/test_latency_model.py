"""The bench's AWS latency model: published percentiles, calls held or answered, the limit."""

from __future__ import annotations

import random
import time

import boto3
from botocore.stub import Stubber

from bench.latency_model import ITEM, SQS, TRANSACT, Latency, LatencyModel, booking_limit_ms, expected_booking_ms
from bench.stats import percentile


def test_draws_follow_the_published_median_and_p99() -> None:
    rng = random.Random(1)
    for latency in (TRANSACT, ITEM, SQS):
        draws = [latency.draw(rng) for _ in range(20000)]
        assert abs(percentile(draws, 50) / latency.p50_ms - 1) < 0.05
        assert abs(percentile(draws, 99) / latency.p99_ms - 1) < 0.15


def _sqs() -> object:
    return boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def test_sqs_sends_are_answered_by_the_model_after_the_drawn_latency() -> None:
    client = _sqs()
    LatencyModel({"SendMessageBatch": Latency(30.0, 30.001, "fixed")}).attach(client)
    entries = [{"Id": str(i), "MessageBody": "m"} for i in range(3)]
    t0 = time.perf_counter()
    # No endpoint answers here: only the model can.
    reply = client.send_message_batch(QueueUrl="http://127.0.0.1:9/000000000000/q", Entries=entries)
    elapsed_ms = (time.perf_counter() - t0) * 1000
    assert [e["Id"] for e in reply["Successful"]] == ["0", "1", "2"]
    assert reply["Failed"] == []
    assert elapsed_ms >= 29


def test_other_calls_reach_the_service_and_are_held_until_the_latency_has_passed() -> None:
    client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    LatencyModel({"GetItem": Latency(40.0, 40.001, "fixed")}).attach(client)
    with Stubber(client) as stub:
        stub.add_response("get_item", {})
        t0 = time.perf_counter()
        client.get_item(TableName="t", Key={"PK": {"S": "a"}})
        assert (time.perf_counter() - t0) * 1000 >= 39
        stub.assert_no_pending_responses()


def test_the_limit_is_reached_only_with_every_batch_in_flight() -> None:
    limit = booking_limit_ms(1000)["p50"]
    assert expected_booking_ms(1000, concurrency=100)["p50"] == limit
    assert expected_booking_ms(1000, concurrency=4)["p50"] > 5 * limit
    # One application: nothing to decline, the transaction and the query only.
    assert booking_limit_ms(1)["p50"] < booking_limit_ms(10)["p50"]
