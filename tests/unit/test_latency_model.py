"""The bench's AWS latency model: published percentiles, calls held or answered, the limit."""

from __future__ import annotations

import random
import time

import boto3
from botocore.stub import Stubber

from bench.latency_model import (
    ITEM,
    QUERY_MS_PER_ITEM_READ,
    SQS,
    TRANSACT,
    Latency,
    LatencyModel,
    any_design_floor_ms,
    design_floor_ms,
    expected_booking_ms,
)
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


def test_a_query_is_held_longer_the_more_items_it_reads() -> None:
    client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    LatencyModel({"Query": Latency(1.0, 1.001, "fixed")}).attach(client)
    with Stubber(client) as stub:
        # A filtered query: it answers one item, but read a thousand.
        stub.add_response("query", {"Items": [], "Count": 1, "ScannedCount": 1000})
        t0 = time.perf_counter()
        client.query(TableName="t", KeyConditionExpression="PK = :p", ExpressionAttributeValues={":p": {"S": "a"}})
        assert (time.perf_counter() - t0) * 1000 >= 1 + 1000 * QUERY_MS_PER_ITEM_READ - 0.5


def test_the_design_floor_is_reached_only_with_every_batch_in_flight() -> None:
    floor = design_floor_ms(1000)["p50"]
    assert expected_booking_ms(1000, concurrency=100)["p50"] == floor
    assert expected_booking_ms(1000, concurrency=4)["p50"] > 5 * floor
    # One application: the transaction beside the query, then the sweep alone.
    assert design_floor_ms(1)["p50"] < design_floor_ms(100)["p50"]


def test_the_floors_are_the_slower_of_commit_and_query_then_one_send_and_the_transaction_alone() -> None:
    any_floor = any_design_floor_ms()["p50"]
    assert abs(any_floor / TRANSACT.p50_ms - 1) < 0.1
    # The commit is two reads then the transaction; the query goes beside it, not after it.
    commit = 2 * ITEM.p50_ms + TRANSACT.p50_ms
    assert design_floor_ms(1)["p50"] < commit + ITEM.p50_ms + SQS.p50_ms
    assert design_floor_ms(1)["p50"] > commit + 0.5 * SQS.p50_ms
