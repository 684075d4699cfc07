"""The booking algorithm of the design this service started from, as the benchmarks' baseline.

Re-implemented here on this service's table and keys, step for step as the original
ran it, so that only the algorithm differs from ``BookingService.book``:

1. one ``Query`` of the job's ``jobApplications`` partition, newest first, and only
   its first page (no ``LastEvaluatedKey`` handling, no filter on the status);
2. one ``TransactWriteItems`` that closes the job and accepts the chosen application;
3. one ``SendMessage`` per other item the query returned, one after the other.

It uses the same low-level boto3 clients as the service (the original used the
resource layer, which only adds client-side work), and sends this service's decline
message so the same worker can apply it. Benchmarks only: it has none of the
service's refusals, retries or replay handling.
"""

from __future__ import annotations

from typing import Any

from chalicelib import items as store_module  # the table's key and item shapes
from chalicelib.declines import DeclineApplication
from chalicelib.domain import format_time, utc_now


class OriginalBaseline:
    def __init__(self, dynamodb: Any, sqs: Any, table: str, queue_url: str) -> None:
        self._db = dynamodb
        self._sqs = sqs
        self._table = table
        self._queue_url = queue_url

    def book(self, owner: str, job_id: str, application_id: str) -> int:
        """Books ``application_id``; returns how many decline messages it sent."""
        # 1. Everything in the job's index partition: one page, as it comes.
        listed = self._db.query(
            TableName=self._table,
            IndexName=store_module.JOB_APPLICATIONS_INDEX,
            KeyConditionExpression="GSI1PK = :pk",
            ExpressionAttributeValues={":pk": {"S": store_module.job_partition(job_id)}},
            ScanIndexForward=False,
        )
        # 2. Close the job and accept the application together.
        now = format_time(utc_now())
        job_key = store_module.job_key(job_id)
        self._db.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": job_key,
                        "ConditionExpression": "attribute_exists(PK)",
                        "UpdateExpression": (
                            "SET #status = :closed, acceptedApplicationId = :app, closedAt = :now REMOVE GSI3PK, GSI3SK"
                        ),
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {
                            ":closed": {"S": "CLOSED"},
                            ":app": {"S": application_id},
                            ":now": {"S": now},
                        },
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": store_module.application_key(job_id, application_id),
                        "UpdateExpression": "SET #status = :accepted, updatedAt = :now",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {":accepted": {"S": "ACCEPTED"}, ":now": {"S": now}},
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
            ]
        )
        # 3. One message per other application, sequentially.
        sent = 0
        for item in listed.get("Items") or []:
            # The index holds keys only; a job written before that carries GSI1SK=JOB.
            sort = item["GSI1SK"]["S"]
            if not sort.startswith(store_module.APPLICATION_PREFIX):
                continue
            other = store_module.application_id_of(sort)
            if other == application_id:
                continue
            self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=DeclineApplication(job_id, other).to_json())
            sent += 1
        return sent
