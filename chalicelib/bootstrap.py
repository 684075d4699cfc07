"""The one place that wires settings, AWS clients and the service together.

Everything is created on first use and then reused for the life of the Lambda
container. ``reset`` forgets it all (tests), ``override`` injects fakes.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from chalicelib.booking import BookingService
from chalicelib.config import ConfigurationError, get_settings, reset_settings
from chalicelib.declines import DeadLetters, SqsDeclinePublisher, cached_queue_url
from chalicelib.observability import PowertoolsMetrics, traced
from chalicelib.pagination import PageTokens
from chalicelib.store import DynamoStore

if TYPE_CHECKING:
    from chalicelib.auth import TokenVerifier
    from chalicelib.mail import Mailer
    from chalicelib.stream import StreamProcessor

_lock = threading.RLock()
_cache: dict[str, Any] = {}

_TRACED = (
    "create_job",
    "get_job",
    "apply",
    "book",
    "cancel",
    "withdraw",
    "get_application",
    "decline",
    "sweep",
    "settle_due_jobs",
    "list_applications",
)


def client_config(read_timeout_seconds: float | None = None) -> Config:
    """Bounded calls, so the API (10 s timeout) answers before Lambda cuts it off.

    Standard retry mode retries throttling, 5xx, timeouts and TransactionInProgress with
    backoff (at most 1 s before the second attempt). With the defaults an SQS call ends
    within 2 x (0.3 s connect + 0.7 s read) + 1 s = 3 s and a DynamoDB call (1 s read, AWS's
    advice for transactions) within 3.6 s; a transaction is re-sent with its token until
    1.5 s after its first attempt, so it ends within 5.1 s. A booking's index read runs
    beside its transaction, then one round of sends: within 8.1 s plus the publisher's
    0.5 s (docs/api.md#timeouts-and-retries). Pools sized for the publisher's concurrent batches.
    """
    s = get_settings()
    return Config(
        connect_timeout=s.client_connect_timeout_seconds,
        read_timeout=read_timeout_seconds or s.client_read_timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": s.client_max_attempts},  # first try included
        max_pool_connections=20,
    )


def _get(name: str, build: Any) -> Any:
    with _lock:
        if name not in _cache:
            _cache[name] = build()
        return _cache[name]


def dynamodb_client() -> Any:
    return _get(
        "dynamodb",
        lambda: boto3.client("dynamodb", config=client_config(get_settings().dynamodb_read_timeout_seconds)),
    )


def sqs_client() -> Any:
    return _get("sqs", lambda: boto3.client("sqs", config=client_config()))


def declines_queue_url() -> Any:
    def build() -> Any:
        s = get_settings()
        return cached_queue_url(sqs_client(), s.declines_queue_url, s.declines_queue_name)

    return _get("declines_queue_url", build)


def store() -> DynamoStore:
    def build() -> DynamoStore:
        s = get_settings()
        return DynamoStore(
            dynamodb_client(),
            s.table_name,
            s.query_page_size,
            transaction_deadline_seconds=s.transaction_deadline_seconds,
        )

    return _get("store", build)


def publisher() -> SqsDeclinePublisher:
    def build() -> SqsDeclinePublisher:
        s = get_settings()
        return SqsDeclinePublisher(
            sqs_client(),
            declines_queue_url(),
            max_attempts=s.enqueue_max_attempts,
            backoff_seconds=s.enqueue_backoff_seconds,
            deadline_seconds=s.enqueue_deadline_seconds,
            concurrency=s.enqueue_concurrency,
        )

    return _get("publisher", build)


def service() -> BookingService:
    def build() -> BookingService:
        svc = BookingService(
            store(),
            publisher(),
            metrics=PowertoolsMetrics(),
            sweep_delay_seconds=get_settings().sweep_delay_seconds,
            executor=_get("executor", lambda: ThreadPoolExecutor(max_workers=4, thread_name_prefix="service")),
        )
        for name in _TRACED:
            setattr(svc, name, traced(getattr(svc, name)))
        return svc

    return _get("service", build)


def dead_letters() -> DeadLetters:
    return _get(
        "dead_letters",
        lambda: DeadLetters(sqs_client(), declines_queue_url(), get_settings().declines_dlq_url),
    )


def verifier() -> TokenVerifier:
    # Imported on first use: only the authorizer verifies tokens (PyJWT, cryptography).
    from chalicelib.auth import JwksSource, TokenVerifier

    def build() -> TokenVerifier:
        s = get_settings()
        keys = JwksSource(
            url=s.auth_jwks_url, inline=s.auth_jwks_json, path=s.auth_jwks_file, metrics=PowertoolsMetrics()
        )
        return TokenVerifier(keys, issuer=s.auth_issuer, audience=s.auth_audience)

    return _get("verifier", build)


def page_tokens() -> PageTokens:
    from chalicelib.page_token_keys import PageTokenKeySource  # SSM on a deployed stage; no fallback

    # The source re-reads the keys on their max age: a rotation reaches warm containers.
    return _get("page_tokens", lambda: PageTokens(PageTokenKeySource()))


def stream_processor() -> StreamProcessor:
    from chalicelib.bus import EventBridgeBus
    from chalicelib.items import state_of
    from chalicelib.stream import StreamProcessor

    def build() -> StreamProcessor:
        s = get_settings()
        if not s.event_bus_name:
            raise ConfigurationError("EVENT_BUS_NAME is not set")
        events = _get("events", lambda: boto3.client("events", config=client_config()))
        return StreamProcessor(
            state_of,
            store(),
            EventBridgeBus(events, s.event_bus_name),
            publisher(),
            metrics=PowertoolsMetrics(),
            sweep_delay_seconds=s.stream_sweep_delay_seconds,
        )

    return _get("stream_processor", build)


def mailer() -> Mailer:
    from chalicelib.mail import Mailer
    from chalicelib.ses import SesSender

    def build() -> Mailer:
        s = get_settings()
        if not s.mail_sender:
            raise ConfigurationError("MAIL_SENDER is not set")
        ses = _get("sesv2", lambda: boto3.client("sesv2", config=client_config()))
        sender = SesSender(ses, s.mail_sender, s.mail_configuration_set)
        return Mailer(store(), sender, metrics=PowertoolsMetrics(), lease_seconds=s.mail_lease_seconds)

    return _get("mailer", build)


def stream_partial_batch_responses() -> bool:
    return get_settings().stream_partial_batch_responses


def partial_batch_responses() -> bool:
    return get_settings().partial_batch_responses


def override(**parts: Any) -> None:
    """Replaces wired parts (e.g. ``publisher=...``) until the next ``reset``.

    The service is rebuilt around the new parts unless it is given itself.
    """
    with _lock:
        if "service" not in parts:
            _cache.pop("service", None)
        _cache.update(parts)


def reset() -> None:
    with _lock:
        _cache.clear()
    reset_settings()
