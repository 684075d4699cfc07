"""What the emulated account's stream subscriptions do with a failed batch.

AWS retries a DynamoDB stream batch from the first record a function reports failed
(``ReportBatchItemFailures``), up to ``MaximumRetryAttempts``. MiniStack does not: it
takes the report for success. It retries a batch whose function raised, about once a
second, and past ``MaximumRetryAttempts`` (only ``MaximumRecordAgeInSeconds`` ends it).
The stream function's deploy depends on this (its flag is false there, so it raises:
tools/deploy/stack.py); if MiniStack starts honouring the report, this fails and the
flag can be true on the emulator too.
"""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from typing import Any

import boto3
import pytest

from tools.local import ministack

HANDLER = """
import json, os, boto3

def handler(event, context):
    sqs = boto3.client("sqs", endpoint_url=os.environ["EMULATOR"], region_name="us-east-1")
    sequences = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
    sqs.send_message(QueueUrl=os.environ["SEEN_QUEUE"], MessageBody=json.dumps(sequences))
    if os.environ["ANSWER"] == "raise":
        raise RuntimeError("fail the whole batch")
    return {"batchItemFailures": [{"itemIdentifier": sequences[0]}]}
"""


def _client(emulator: ministack.MiniStack, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=emulator.endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


@pytest.mark.parametrize("answer", ["report", "raise"])
def test_ministack_retries_a_stream_batch_on_an_error_only(emulator: ministack.MiniStack, answer: str) -> None:
    # Given a table with a stream, and a function that fails its first record every time:
    # by reporting it (ReportBatchItemFailures), or by raising
    name = f"stream-report-{uuid.uuid4().hex[:8]}"
    ddb, sqs, lam, iam = (_client(emulator, s) for s in ("dynamodb", "sqs", "lambda", "iam"))
    ddb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    stream_arn = ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]
    seen = sqs.create_queue(QueueName=name)["QueueUrl"]
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as zf:
        zf.writestr("handler.py", HANDLER)
    lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
        Environment={"Variables": {"EMULATOR": emulator.endpoint, "SEEN_QUEUE": seen, "ANSWER": answer}},
        Timeout=30,
    )
    lam.create_event_source_mapping(
        EventSourceArn=stream_arn,
        FunctionName=name,
        StartingPosition="TRIM_HORIZON",
        BatchSize=10,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        MaximumRetryAttempts=2,
    )

    # When one item is written
    ddb.put_item(TableName=name, Item={"PK": {"S": "one"}})

    # Then a report is taken for success (one invocation; AWS would retry it twice more),
    # while an error is retried
    batches: list[list[str]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not batches:
        got = sqs.receive_message(QueueUrl=seen, WaitTimeSeconds=1, MaxNumberOfMessages=10).get("Messages") or []
        batches += [json.loads(m["Body"]) for m in got]
    if not batches:
        pytest.fail(f"the stream subscription never invoked the function\n{emulator.log_tail()}")
    time.sleep(8)  # room for the retries AWS would make
    while got := sqs.receive_message(QueueUrl=seen, WaitTimeSeconds=1, MaxNumberOfMessages=10).get("Messages"):
        batches += [json.loads(m["Body"]) for m in got]
    if answer == "report":
        assert len(batches) == 1, f"MiniStack retried the reported record: {batches}"
    else:
        assert len(batches) > 1, f"MiniStack did not retry a failed batch: {batches}\n{emulator.log_tail()}"
        # ...and past MaximumRetryAttempts=2 (AWS: 3 invocations at most), about once a second
        # until MaximumRecordAgeInSeconds: only the record age ends a failing batch there.
        assert len(batches) > 3, batches
