"""Routes, the token authorizer, the decline worker, the table's stream and the mailer: wiring only."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from chalice import AuthResponse, Chalice, Rate, Response
from chalice.app import AuthRequest, CloudWatchEvent, DynamoDBEvent, Request, SQSEvent

from chalicelib import api_errors, api_input, api_views, bootstrap
from chalicelib.callers import caller_from_context, caller_to_context
from chalicelib.domain import Caller, Page
from chalicelib.observability import PowertoolsMetrics, append_keys, flush_metrics, logger, start_invocation

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

T = TypeVar("T")

app = Chalice(app_name="babysitting-booking", configure_logs=False)

# Decorators run at import: `chalice deploy --stage S` imports this module with the
# stage's environment variables set, so the subscription follows the stage.
DECLINES_QUEUE_NAME = os.environ.get("DECLINES_QUEUE_NAME", "booking-declines")
DECLINES_MAX_CONCURRENCY = int(os.environ.get("DECLINES_MAX_CONCURRENCY", "5"))
# How often the due jobs are settled (expired, completed); the local stack runs it more often.
SETTLE_EVERY_MINUTES = int(os.environ.get("SETTLE_EVERY_MINUTES", "1"))
NOTIFICATIONS_QUEUE_NAME = os.environ.get("NOTIFICATIONS_QUEUE_NAME", "booking-notifications")
# A stream's ARN ends in a label known only once the table exists: the packaged template
# puts the table's own StreamArn in its place (tools/deploy/templates.py), `chalice local`
# subscribes nothing (tools/local/stream.py polls the stream instead).
TABLE_STREAM_ARN = os.environ.get(
    "TABLE_STREAM_ARN", "arn:aws:dynamodb:us-east-1:000000000000:table/booking/stream/set-by-the-deploy"
)


# API Gateway caches each token's answer for ttl_seconds (per authorizer, not per token): an
# admitted token is honoured until at most exp + leeway (5 s) + 60 s:
# docs/api.md#how-long-a-token-outlives-its-exp.
@app.authorizer(ttl_seconds=60)
def token_authorizer(auth_request: AuthRequest) -> AuthResponse:
    # Here, not at the top: the API and worker functions import this module too, and
    # only the authorizer needs PyJWT and cryptography (a cold start's worth of imports).
    from chalicelib.auth import InvalidToken

    try:
        caller = bootstrap.verifier().verify(auth_request.token)
    except InvalidToken as exc:
        logger.info("token rejected", extra={"reason": str(exc)})
        return AuthResponse(routes=[], principal_id="anonymous")
    finally:
        flush_metrics()  # the HTTP middleware that flushes the views' metrics skips authorizers
    return AuthResponse(routes=["*"], principal_id=caller.user_id, context=caller_to_context(caller))


# `app.current_request` is one attribute shared by every thread, and `chalice local`
# serves requests on many threads at once: views read their own request from here.
class _ThisRequest(threading.local):
    request: Request


_this = _ThisRequest()


def _request() -> Request:
    return _this.request


@app.middleware("http")
def http_edge(event: Request, get_response: Callable[[Request], Response]) -> Response:
    _this.request = event
    # API Gateway's request id; chalice local has none, so the Lambda request id there.
    start_invocation(event.context.get("requestId") or getattr(event.lambda_context, "aws_request_id", None))
    try:
        return api_errors.normalize_framework_errors(get_response(event))
    finally:
        flush_metrics()


def _caller() -> Caller:
    return api_input.require_caller(_request().context, caller_from_context)


def _body() -> dict[str, Any]:
    return api_input.json_body(_request().raw_body)


def _page_request(scope: str) -> tuple[int, dict[str, Any] | None]:
    limit, token = api_input.query_params(_request().query_params)
    return limit, bootstrap.page_tokens().decode(scope, token)


def _page_response(scope: str, page: Page[T], render: Callable[[T], dict[str, Any]]) -> dict[str, Any]:
    return api_views.page_json(page, render, bootstrap.page_tokens().encode(scope, page.cursor))


@app.route("/jobs", methods=["POST"], authorizer=token_authorizer)
@api_errors.json_view
def create_job() -> Response:
    caller = _caller()
    key = api_input.idempotency_key(_request().headers)
    result = bootstrap.service().create_job(caller, api_input.new_job(_body()), idempotency_key=key)
    append_keys(jobId=result.job.job_id)
    return api_views.created(api_views.job_json(result.job), new=result.created)


@app.route("/jobs", methods=["GET"], authorizer=token_authorizer)
@api_errors.json_view
def list_open_jobs() -> dict[str, Any]:
    _caller()
    limit, cursor = _page_request("jobs:open")
    page = bootstrap.service().list_open_jobs(limit, cursor)
    return _page_response("jobs:open", page, api_views.job_json)


@app.route("/jobs/{job_id}", methods=["GET"], authorizer=token_authorizer)
@api_errors.json_view
def get_job(job_id: str) -> dict[str, Any]:
    _caller()
    api_input.query_params(_request().query_params, allowed=set())
    return api_views.job_json(bootstrap.service().get_job(api_input.path_id(job_id, "jobId")))


@app.route("/jobs/{job_id}/applications", methods=["POST"], authorizer=token_authorizer)
@api_errors.json_view
def apply(job_id: str) -> Response:
    caller = _caller()
    job_id = api_input.path_id(job_id, "jobId")
    append_keys(jobId=job_id)
    application = bootstrap.service().apply(caller, job_id, api_input.application_message(_body()))
    append_keys(applicationId=application.application_id)
    return api_views.created(api_views.application_json(application))


@app.route("/jobs/{job_id}/applications", methods=["GET"], authorizer=token_authorizer)
@api_errors.json_view
def list_applications(job_id: str) -> dict[str, Any]:
    caller = _caller()
    job_id = api_input.path_id(job_id, "jobId")
    scope = f"jobs:{job_id}:applications"
    limit, cursor = _page_request(scope)
    page = bootstrap.service().list_applications(caller, job_id, limit, cursor)
    return _page_response(scope, page, api_views.application_json)


@app.route("/jobs/{job_id}/book", methods=["POST"], authorizer=token_authorizer)
@api_errors.json_view
def book(job_id: str) -> dict[str, Any]:
    caller = _caller()
    job_id = api_input.path_id(job_id, "jobId")
    application_id = api_input.booking_request(_body())
    append_keys(jobId=job_id, applicationId=application_id)
    result = bootstrap.service().book(caller, job_id, application_id)
    return {
        "job": api_views.job_json(result.job),
        "acceptedApplicationId": result.accepted_application_id,
        "declinesQueued": result.declines_queued,
    }


@app.route("/jobs/{job_id}/cancel", methods=["POST"], authorizer=token_authorizer)
@api_errors.json_view
def cancel_job(job_id: str) -> dict[str, Any]:
    caller = _caller()
    job_id = api_input.path_id(job_id, "jobId")
    reason = api_input.cancel_request(_body())
    append_keys(jobId=job_id)
    return api_views.job_json(bootstrap.service().cancel(caller, job_id, reason).job)


@app.route("/jobs/{job_id}/applications/{application_id}", methods=["GET"], authorizer=token_authorizer)
@api_errors.json_view
def get_application(job_id: str, application_id: str) -> dict[str, Any]:
    caller = _caller()
    api_input.query_params(_request().query_params, allowed=set())
    job_id, application_id = api_input.path_id(job_id, "jobId"), api_input.path_id(application_id, "applicationId")
    append_keys(jobId=job_id, applicationId=application_id)
    return api_views.application_json(bootstrap.service().get_application(caller, job_id, application_id))


@app.route("/jobs/{job_id}/applications/{application_id}/withdraw", methods=["POST"], authorizer=token_authorizer)
@api_errors.json_view
def withdraw_application(job_id: str, application_id: str) -> dict[str, Any]:
    caller = _caller()
    job_id, application_id = api_input.path_id(job_id, "jobId"), api_input.path_id(application_id, "applicationId")
    api_input.empty_request(_body())
    append_keys(jobId=job_id, applicationId=application_id)
    return api_views.application_json(bootstrap.service().withdraw(caller, job_id, application_id).application)


@app.route("/me/jobs", methods=["GET"], authorizer=token_authorizer)
@api_errors.json_view
def my_jobs() -> dict[str, Any]:
    caller = _caller()
    scope = f"me:{caller.user_id}:jobs"
    limit, cursor = _page_request(scope)
    return _page_response(scope, bootstrap.service().list_my_jobs(caller, limit, cursor), api_views.job_json)


@app.route("/me/applications", methods=["GET"], authorizer=token_authorizer)
@api_errors.json_view
def my_applications() -> dict[str, Any]:
    caller = _caller()
    scope = f"me:{caller.user_id}:applications"
    limit, cursor = _page_request(scope)
    page = bootstrap.service().list_my_applications(caller, limit, cursor)
    return _page_response(scope, page, api_views.application_json)


@app.on_sqs_message(queue=DECLINES_QUEUE_NAME, batch_size=10, maximum_concurrency=DECLINES_MAX_CONCURRENCY)
def decline_worker(event: SQSEvent) -> dict[str, Any]:
    # Here, not at the top: the batch handling is the worker's alone.
    from chalicelib.worker import handle_decline_batch

    context = event.context
    start_invocation(getattr(context, "aws_request_id", None))
    try:
        return handle_decline_batch(
            event.to_dict(),
            context,
            bootstrap.service(),
            partial_responses=bootstrap.partial_batch_responses(),
            metrics=PowertoolsMetrics(),
            dead_letters=bootstrap.dead_letters(),
        )
    finally:
        flush_metrics()


@app.schedule(Rate(SETTLE_EVERY_MINUTES, unit=Rate.MINUTES))
def settle_due_jobs(event: CloudWatchEvent) -> dict[str, int]:
    """OPEN jobs past their start expire, CLOSED jobs past their end complete (bounded per run)."""
    start_invocation(getattr(event.context, "aws_request_id", None))
    try:
        report = bootstrap.service().settle_due_jobs()
        return {"expired": report.expired, "completed": report.completed, "failed": report.failed}
    finally:
        flush_metrics()


# Every committed change of the table, whatever became of the request that made it:
# heals bookings and cancellations (the sweep) and publishes domain events (docs/stream.md).
@app.on_dynamodb_record(stream_arn=TABLE_STREAM_ARN, batch_size=100, starting_position="TRIM_HORIZON")
def table_stream(event: DynamoDBEvent) -> PartialItemFailureResponse:
    from chalicelib.stream import handle_stream_batch

    start_invocation(getattr(event.context, "aws_request_id", None))
    try:
        return handle_stream_batch(
            event.to_dict(),
            bootstrap.stream_processor(),
            partial_responses=bootstrap.stream_partial_batch_responses(),
        )
    finally:
        flush_metrics()


@app.on_sqs_message(queue=NOTIFICATIONS_QUEUE_NAME, batch_size=10)
def mail_worker(event: SQSEvent) -> PartialItemFailureResponse:
    # Here, not at the top: powertools' batch utilities and the mailer are this function's alone.
    from chalicelib.mail_worker import handle_mail_batch

    context = event.context
    start_invocation(getattr(context, "aws_request_id", None))
    try:
        return handle_mail_batch(
            event.to_dict(),
            context,
            bootstrap.mailer(),
            partial_responses=bootstrap.partial_batch_responses(),
            metrics=PowertoolsMetrics(),
        )
    finally:
        flush_metrics()
