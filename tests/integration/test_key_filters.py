"""The guard against filters on key attributes: it sees the store's queries and catches a bad one."""

from __future__ import annotations

import pytest
from chalice.test import Client

from tests.integration.conftest import Api, Aws, run_worker
from tests.integration.key_filters import key_filter_violation, template_keys


@pytest.mark.parametrize(
    ("params", "refused"),
    [
        ({"IndexName": "jobApplications", "FilterExpression": "begins_with(GSI1SK, :a)"}, True),
        (
            {
                "IndexName": "jobApplications",
                "FilterExpression": "#t = :job OR #k = :x",
                "ExpressionAttributeNames": {"#t": "type", "#k": "GSI1SK"},
            },
            True,
        ),
        ({"TableName": "t", "FilterExpression": "attribute_exists(SK)"}, True),
        # Not a key of the index queried: allowed.
        ({"IndexName": "openJobs", "FilterExpression": "attribute_exists(GSI1SK)"}, False),
        (
            {
                "IndexName": "jobApplications",
                "FilterExpression": "#type = :job OR #status = :pending",
                "ExpressionAttributeNames": {"#type": "type", "#status": "status"},
            },
            False,
        ),
        ({"IndexName": "jobApplications", "KeyConditionExpression": "GSI1PK = :pk"}, False),
    ],
)
def test_a_filter_on_a_key_of_the_queried_table_or_index_is_refused(params: dict, refused: bool) -> None:
    assert (key_filter_violation(params, template_keys()) is not None) is refused


def test_the_guard_sees_every_query_of_a_booking_and_its_declines(api: Api, aws: Aws, client: Client) -> None:
    job = api.create_job("kf-parent")
    first = api.apply("kf-nanny-1", job["jobId"])
    api.apply("kf-nanny-2", job["jobId"])
    assert api.book("kf-parent", job["jobId"], first["applicationId"]).status == 200
    run_worker(client, aws)
    api.applications("kf-parent", job["jobId"])
    assert api.book("kf-parent", job["jobId"], first["applicationId"]).status == 200  # a replay

    filtered = [q for q in aws.queries.seen if q.get("FilterExpression")]
    assert filtered, aws.queries.seen  # the replay's query of pending applications filters
    assert all(q["TableName"] == aws.table for q in aws.queries.seen)
    assert aws.queries.refused == []
