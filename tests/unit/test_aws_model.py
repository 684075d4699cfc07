"""The bench's model on AWS's terms: CPU at the memory share, the designs' order, the cost of a booking."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from bench import aws_model, costs
from bench.booking_cost import CapacityMeter

CPU = aws_model.CpuProfile.default()


def test_cpu_is_charged_at_the_functions_memory_share() -> None:
    one_vcpu = aws_model.cpu_on_lambda_ms(1.0, aws_model.LAMBDA_FULL_VCPU_MB)
    assert one_vcpu == pytest.approx(aws_model.REFERENCE_YARDSTICK_MS)
    # 512 MB is about 0.29 of a vCPU: the same work takes ~3.5 times as long.
    assert aws_model.cpu_on_lambda_ms(1.0, 512) == pytest.approx(one_vcpu * 1769 / 512)
    # One thread cannot use more than one vCPU.
    assert aws_model.cpu_on_lambda_ms(1.0, 3008) == pytest.approx(one_vcpu)


def test_the_model_runs_the_api_function_at_productions_memory(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        '{"stages": {"prod": {"lambda_functions": {"api_handler": {"lambda_memory_size": 1536}}},'
        ' "dev": {"lambda_functions": {"api_handler": {"lambda_memory_size": 384}}}}}'
    )
    assert aws_model.api_memory_mb("prod", config) == 1536
    assert aws_model.api_memory_mb("dev", config) == 384
    assert aws_model.api_memory_mb("prod") == aws_model.API_MEMORY_MB


def test_the_designs_keep_their_order_end_to_end() -> None:
    drawn = aws_model.simulate(CPU, sizes=(5, 100), samples=3000)
    for n in ("5", "100"):
        assert drawn["any_design_floor"][n]["p50"] < drawn["design_floor"][n]["p50"]
        assert drawn["design_floor"][n]["p50"] <= drawn["ours"][n]["p50"] * 1.02
        assert drawn["ours"][n]["p50"] < drawn["express_workflow"][n]["p50"]
        assert drawn["ours"][n]["p50"] < drawn["seed_lambda"][n]["p50"]
    # API Gateway is in every figure: nothing end to end beats the transaction plus the gateway.
    floor = aws_model.TRANSACT.p50_ms + aws_model.API_GATEWAY.p50_ms
    assert drawn["any_design_floor"]["5"]["p50"] > floor
    # The article's Lambda sends in turn: a hundred applications cost about 99 sends.
    assert drawn["seed_lambda"]["100"]["p50"] > 90 * aws_model.SQS.p50_ms


def test_the_design_floor_differs_from_ours_only_where_batches_wait_for_a_round() -> None:
    drawn = aws_model.simulate(CPU, sizes=(1000,), samples=400)
    # 100 batches, 10 at a time: ten rounds against one.
    assert drawn["ours"]["1000"]["p50"] > drawn["design_floor"]["1000"]["p50"] + 5 * aws_model.SQS.p50_ms


def test_a_measured_series_below_100_bookings_reports_its_maximum_not_a_p99() -> None:
    few = aws_model.ours_from_measurement([50.0] * 20, cpu_here_ms=5.0, yardstick_ms=10.0)
    assert "p99" not in few and few["bookings"] == 20
    assert few["max"] >= few["p50"] > 45.0 - 5.0 + aws_model.cpu_on_lambda_ms(0.5, 512)
    many = aws_model.ours_from_measurement([50.0] * 100, cpu_here_ms=5.0, yardstick_ms=10.0)
    assert "p99" in many and "max" not in many


def test_every_figure_has_a_source_and_a_date() -> None:
    for row in aws_model.calibration_table():
        assert row["source"] and row["date"], row


MEASURED_AT_5 = {
    "booking": {
        "units": {"write:total": 10.0, "read:total": 0.5},
        "calls": {"TransactWriteItems": 1, "Query": 1, "SendMessageBatch": 1},
    },
    "declines": {"units": {"write:total": 12.0}, "calls": {"UpdateItem": 4}},
    "sweep": {"units": {"read:total": 1.0}, "calls": {"Query": 1}},
}


def test_a_booking_consumes_its_measured_units_and_the_modelled_rest() -> None:
    ours = costs.consumption("ours", 5, MEASURED_AT_5, handler_mean_ms=60.0, sends=1)
    # 10 + 12 measured, + 6 email receipts modelled.
    assert ours["dynamodb_write_request_unit"] == 28
    assert ours["dynamodb_read_request_unit"] == 0.5 + 2 * 1.0  # two sweeps: ours and the stream's
    assert ours["eventbridge_custom_event"] == 6 and ours["ses_email"] == 6
    assert ours["api_gateway_rest_request"] == 1
    express = costs.consumption("express_workflow", 5, MEASURED_AT_5, handler_mean_ms=60.0)
    assert express["stepfunctions_express_request"] == 1
    assert express["sqs_request"] > ours["sqs_request"]  # one SendMessage per decline against one batch
    # Express bills 64 MB in 100 ms steps.
    assert express["stepfunctions_express_gb_second"] == pytest.approx(0.1 * 64 / 1024)


def test_prices_come_from_one_dated_file_and_emails_are_kept_apart() -> None:
    prices = costs.load_prices()
    assert prices["region"] == "us-east-1" and prices["read_on"]
    priced = costs.price({"ses_email": 6.0, "sqs_request": 2.0}, prices)
    assert priced["per_1000_usd"] == pytest.approx(1000 * 2 * 0.40e-6)
    assert priced["per_1000_with_email_usd"] == pytest.approx(1000 * (2 * 0.40e-6 + 6 * 0.10e-3))


def test_the_capacity_meter_asks_every_call_for_its_units_and_sums_table_and_indexes() -> None:
    client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    meter = CapacityMeter().attach(client)
    key = {"PK": {"S": "a"}, "SK": {"S": "b"}}
    with Stubber(client) as stub:
        stub.add_response(
            "update_item",
            {
                "ConsumedCapacity": {
                    "TableName": "t",
                    "CapacityUnits": 3.0,
                    "Table": {"CapacityUnits": 1.0},
                    "GlobalSecondaryIndexes": {
                        "jobApplications": {"CapacityUnits": 1.0},
                        "byUser": {"CapacityUnits": 1.0},
                    },
                }
            },
            {"TableName": "t", "Key": key, "UpdateExpression": "SET a = :a", "ReturnConsumedCapacity": "INDEXES"}
            | {"ExpressionAttributeValues": {":a": {"S": "x"}}},
        )
        stub.add_response(
            "transact_write_items",
            {"ConsumedCapacity": [{"TableName": "t", "CapacityUnits": 4.0, "WriteCapacityUnits": 4.0}]},
        )
        client.update_item(
            TableName="t", Key=key, UpdateExpression="SET a = :a", ExpressionAttributeValues={":a": {"S": "x"}}
        )
        client.transact_write_items(
            TransactItems=[
                {"ConditionCheck": {"TableName": "t", "Key": key, "ConditionExpression": "attribute_exists(PK)"}}
            ]
        )
        stub.assert_no_pending_responses()
    units = meter.take()
    assert units["write:total"] == 7.0
    assert units["write:table"] == 5.0
    assert units["write:jobApplications"] == 1.0
    assert meter.take() == {}
