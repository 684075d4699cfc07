"""What MiniStack charges, where the bench's cost and drain figures depend on it.

- Write units follow DynamoDB: an update writes each index whose projected view changes,
  and no index whose view it leaves alone (so a projection decides what a decline costs).
- Read units do not: a Query is billed 0.5 units (1 consistent) whatever it reads, so
  bench/booking_cost.py sizes reads itself. If this test fails, MiniStack bills reads by
  size now and that sizing can go.
- ReceiveMessage grows with the queue's depth, so a local stack that falls behind drains
  more slowly the further behind it is (docs/performance.md#local-figures-in-yardsticks).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tools.local import ministack

pytestmark = pytest.mark.e2e

TABLE = "emulator-costs"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    emulator = ministack.start(services=("dynamodb", "sqs"))
    try:
        yield emulator.endpoint
    finally:
        emulator.stop()


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


@pytest.fixture(scope="module")
def dynamodb(endpoint: str) -> Any:
    client = _client("dynamodb", endpoint)
    client.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("PK", "SK", "G1", "G2")],
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "allAttributes",
                "KeySchema": [{"AttributeName": "G1", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            },
            {
                "IndexName": "keysOnly",
                "KeySchema": [{"AttributeName": "G2", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
    )
    return client


def _item(i: int) -> dict[str, Any]:
    return {
        "PK": {"S": "JOB#1"},
        "SK": {"S": f"APPLICATION#{i:04d}"},
        "G1": {"S": "JOB#1"},
        "G2": {"S": f"NANNY#{i}"},
        "status": {"S": "PENDING"},
        "message": {"S": "x" * 300},
    }


def test_an_update_writes_only_the_indexes_whose_projected_view_changes(dynamodb: Any) -> None:
    dynamodb.put_item(TableName=TABLE, Item=_item(0))
    answer = dynamodb.update_item(
        TableName=TABLE,
        Key={"PK": {"S": "JOB#1"}, "SK": {"S": "APPLICATION#0000"}},
        UpdateExpression="SET #s = :d",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":d": {"S": "DECLINED"}},
        ReturnConsumedCapacity="INDEXES",
    )["ConsumedCapacity"]
    assert answer["Table"]["CapacityUnits"] == 1.0
    assert answer["GlobalSecondaryIndexes"] == {"allAttributes": {"CapacityUnits": 1.0}}  # keysOnly: unchanged


def test_a_query_is_billed_the_same_whatever_it_reads(dynamodb: Any) -> None:
    with _BatchWriter(dynamodb) as put:
        for i in range(1, 301):
            put(_item(i))
    small = dynamodb.query(
        TableName=TABLE,
        KeyConditionExpression="PK = :p AND SK = :s",
        ExpressionAttributeValues={":p": {"S": "JOB#1"}, ":s": {"S": "APPLICATION#0001"}},
        ReturnConsumedCapacity="TOTAL",
    )
    large = dynamodb.query(
        TableName=TABLE,
        KeyConditionExpression="PK = :p",
        ExpressionAttributeValues={":p": {"S": "JOB#1"}},
        ReturnConsumedCapacity="TOTAL",
    )
    assert large["Count"] >= 300  # ~120 KB read: DynamoDB would bill ~15 units
    assert small["ConsumedCapacity"]["CapacityUnits"] == large["ConsumedCapacity"]["CapacityUnits"] == 0.5


class _BatchWriter:
    def __init__(self, client: Any) -> None:
        self._client, self._items = client, []

    def __enter__(self) -> Any:
        return self._items.append

    def __exit__(self, *_: object) -> None:
        for i in range(0, len(self._items), 25):
            chunk = [{"PutRequest": {"Item": it}} for it in self._items[i : i + 25]]
            self._client.batch_write_item(RequestItems={TABLE: chunk})


def test_receiving_costs_more_the_deeper_the_queue(endpoint: str) -> None:
    sqs = _client("sqs", endpoint)
    url = sqs.create_queue(QueueName="emulator-depth")["QueueUrl"]
    entries = [{"Id": str(i), "MessageBody": "m" * 100} for i in range(10)]

    def receive_ms() -> float:
        samples = []
        for _ in range(15):
            t0 = time.perf_counter()
            sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600)
            samples.append((time.perf_counter() - t0) * 1000)
        return statistics.median(samples)

    for _ in range(20):
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    shallow = receive_ms()
    for _ in range(1500):
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    deep = receive_ms()
    assert deep > 2.5 * shallow, (shallow, deep)
