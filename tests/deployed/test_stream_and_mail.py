"""Through API Gateway on the emulated account: a booking ends in the domain events on the stage's bus
and in one email per nanny, sent by the deployed stream and mail functions."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.deployed.api_client import call, sign_up
from tests.deployed.stage import FIGURES, Deployment
from tools.local.mail import sent_emails

WAIT_SECONDS = 60


def _listen_to_the_bus(deployment: Deployment) -> tuple[str, str]:
    """A consumer of the stage's events, as any other team's would be: a rule and a queue of its own."""
    sqs, events = deployment.client("sqs"), deployment.client("events")
    name = f"listener-{uuid.uuid4().hex[:8]}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = deployment.outputs["EventBusName"]
    events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps({"source": ["babysitting.booking"]}))
    events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "listener", "Arn": arn}])
    return name, url


def _received(deployment: Deployment, url: str) -> list[dict[str, Any]]:
    found = []
    while batch := deployment.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        found += [json.loads(m["Body"]) for m in batch]
    return found


def _wait(condition: Any, what: str) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {WAIT_SECONDS} s waiting for {what}")


def test_a_booking_through_api_gateway_ends_in_events_and_one_email_per_nanny(deployment: Deployment) -> None:
    rule, listener = _listen_to_the_bus(deployment)
    _, parent_token = sign_up(deployment, "parents")
    start = datetime.now(UTC) + timedelta(days=3)
    job = call(
        deployment,
        "POST",
        "/jobs",
        parent_token,
        {
            "title": "Deployed evening",
            "startsAt": start.isoformat(),
            "endsAt": (start + timedelta(hours=4)).isoformat(),
        },
    )
    assert job.status == 201, job.body
    job_id = job.body["jobId"]
    nannies, apps = [], []
    for _ in range(4):
        nanny, token = sign_up(deployment, "nannies")
        applied = call(deployment, "POST", f"/jobs/{job_id}/applications", token, {})
        assert applied.status == 201, applied.body
        nannies.append(nanny)
        apps.append(applied.body["applicationId"])

    booked_at = time.monotonic()
    booked = call(deployment, "POST", f"/jobs/{job_id}/book", parent_token, {"applicationId": apps[0]})
    assert booked.status == 200, booked.body
    addresses = {f"{n}@example.com" for n in nannies}
    sender = deployment.outputs["MailSender"]

    def nanny_emails() -> list[dict[str, Any]]:
        found = [e for e in sent_emails(deployment.endpoint, sender=sender) if set(e["to"]) & addresses]
        return found if len(found) >= 4 else []

    emails = _wait(nanny_emails, "an email to each of the four nannies")
    FIGURES.append(
        f"booking to its four emails through the deployed stream and mailer: {time.monotonic() - booked_at:.1f} s"
    )
    again = call(deployment, "POST", f"/jobs/{job_id}/book", parent_token, {"applicationId": apps[0]})
    assert again.status == 200
    time.sleep(5)

    assert Counter(e["to"][0] for e in nanny_emails()) == Counter(addresses)
    subjects = {e["to"][0]: e["subject"] for e in emails}
    assert subjects[f"{nannies[0]}@example.com"] == "You are booked: Deployed evening"
    events = _wait(
        lambda: [e for e in _received(deployment, listener) if e["detail"]["jobId"] == job_id] or None,
        "the job's events on the bus",
    )
    events += [e for e in _received(deployment, listener) if e["detail"]["jobId"] == job_id]
    kinds = Counter(e["detail-type"] for e in events)
    assert kinds["JobBooked"] >= 1 and kinds["ApplicationAccepted"] >= 1
    assert {e["detail"]["eventId"] for e in events if e["detail-type"] == "ApplicationDeclined"} or kinds[
        "ApplicationDeclined"
    ] == 0
    deployment.client("events").remove_targets(
        Rule=rule, EventBusName=deployment.outputs["EventBusName"], Ids=["listener"]
    )
    deployment.client("events").delete_rule(Name=rule, EventBusName=deployment.outputs["EventBusName"])


def test_the_emulated_stage_fails_whole_stream_batches(deployment: Deployment) -> None:
    """MiniStack's stream subscriptions retry a batch only on an error and ignore a report of
    failed records (AWS honours it): a report there would drop them. So the deploy sets the
    stream function's flag to false on an emulator, and the function fails whole batches."""
    lam = deployment.client("lambda")
    function = "babysitting-booking-dev-table_stream"
    env = lam.get_function_configuration(FunctionName=function)["Environment"]["Variables"]
    assert env["STREAM_PARTIAL_BATCH_RESPONSES"] == "false"
    (mapping,) = [
        m
        for m in lam.list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
        if ":table/booking-dev/stream/" in m["EventSourceArn"]
    ]
    assert mapping["EventSourceArn"] == deployment.outputs["TableStreamArn"]
    assert (
        mapping.get("DestinationConfig", {})
        .get("OnFailure", {})
        .get("Destination", "")
        .endswith(":booking-stream-failures-dev")
    )
