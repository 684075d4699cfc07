"""The one place that wires settings, AWS clients and the service together.

Every part is created on first use and then reused for the life of the Lambda
container. ``reset`` forgets them all (tests); ``override`` puts given parts in place
and forgets every part built on them, which is rebuilt around them on next use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar, cast

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

T = TypeVar("T")

_lock = threading.RLock()
_cache: dict[str, object] = {}

# What each part is built from: replacing one forgets every part built on it, directly or not.
BUILT_FROM: dict[str, tuple[str, ...]] = {
    "dynamodb_client": (),
    "sqs_client": (),
    "events_client": (),
    "ses_client": (),
    "executor": (),
    "verifier": (),
    "page_tokens": (),
    "declines_queue_url": ("sqs_client",),
    "store": ("dynamodb_client",),
    "publisher": ("sqs_client", "declines_queue_url"),
    "dead_letters": ("sqs_client", "declines_queue_url"),
    "service": ("store", "publisher", "executor"),
    "stream_processor": ("store", "publisher", "events_client"),
    "mailer": ("store", "ses_client"),
}

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
    settings = get_settings()
    return Config(
        connect_timeout=settings.client_connect_timeout_seconds,
        read_timeout=read_timeout_seconds or settings.client_read_timeout_seconds,
        retries={"mode": "standard", "total_max_attempts": settings.client_max_attempts},  # first try included
        max_pool_connections=20,
    )


def _get(name: str, build: Callable[[], T]) -> T:
    if name not in BUILT_FROM:  # a part the overrides would not know to rebuild
        raise KeyError(f"{name} is not in BUILT_FROM")
    with _lock:
        if name not in _cache:
            _cache[name] = build()
        return cast(T, _cache[name])


def dynamodb_client() -> Any:
    return _get(
        "dynamodb_client",
        lambda: boto3.client("dynamodb", config=client_config(get_settings().dynamodb_read_timeout_seconds)),
    )


def sqs_client() -> Any:
    return _get("sqs_client", lambda: boto3.client("sqs", config=client_config()))


class _OnFirstUse:
    """Stands for ``sqs_client()`` and makes it on its first call: a worker declining
    applications never sends, so its first batch does not pay for building the client
    (about a third of its cold start)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make

    def __getattr__(self, name: str) -> Any:
        return getattr(self._make(), name)


def declines_queue_url() -> Callable[[], str]:
    def build() -> Callable[[], str]:
        settings = get_settings()
        return cached_queue_url(_OnFirstUse(sqs_client), settings.declines_queue_url, settings.declines_queue_name)

    return _get("declines_queue_url", build)


def store() -> DynamoStore:
    def build() -> DynamoStore:
        settings = get_settings()
        return DynamoStore(
            dynamodb_client(),
            settings.table_name,
            settings.query_page_size,
            transaction_deadline_seconds=settings.transaction_deadline_seconds,
        )

    return _get("store", build)


def publisher() -> SqsDeclinePublisher:
    def build() -> SqsDeclinePublisher:
        settings = get_settings()
        return SqsDeclinePublisher(
            _OnFirstUse(sqs_client),
            declines_queue_url(),
            max_attempts=settings.enqueue_max_attempts,
            backoff_seconds=settings.enqueue_backoff_seconds,
            deadline_seconds=settings.enqueue_deadline_seconds,
            concurrency=settings.enqueue_concurrency,
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
        lambda: DeadLetters(_OnFirstUse(sqs_client), declines_queue_url(), get_settings().declines_dlq_url),
    )


def verifier() -> TokenVerifier:
    # Imported on first use: only the authorizer verifies tokens (PyJWT, cryptography).
    from chalicelib.auth import JwksSource, TokenVerifier

    def build() -> TokenVerifier:
        settings = get_settings()
        keys = JwksSource(
            url=settings.auth_jwks_url,
            inline=settings.auth_jwks_json,
            path=settings.auth_jwks_file,
            metrics=PowertoolsMetrics(),
        )
        return TokenVerifier(keys, issuer=settings.auth_issuer, audience=settings.auth_audience)

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
        settings = get_settings()
        if not settings.event_bus_name:
            raise ConfigurationError("EVENT_BUS_NAME is not set")
        events = _get("events_client", lambda: boto3.client("events", config=client_config()))
        return StreamProcessor(
            state_of,
            store(),
            EventBridgeBus(events, settings.event_bus_name),
            publisher(),
            metrics=PowertoolsMetrics(),
            sweep_delay_seconds=settings.stream_sweep_delay_seconds,
        )

    return _get("stream_processor", build)


def mailer() -> Mailer:
    from chalicelib.mail import Mailer
    from chalicelib.ses import SesSender

    def build() -> Mailer:
        settings = get_settings()
        if not settings.mail_sender:
            raise ConfigurationError("MAIL_SENDER is not set")
        ses = _get("ses_client", lambda: boto3.client("sesv2", config=client_config()))
        sender = SesSender(ses, settings.mail_sender, settings.mail_configuration_set)
        return Mailer(store(), sender, metrics=PowertoolsMetrics(), lease_seconds=settings.mail_lease_seconds)

    return _get("mailer", build)


def stream_partial_batch_responses() -> bool:
    return get_settings().stream_partial_batch_responses


def partial_batch_responses() -> bool:
    return get_settings().partial_batch_responses


def override(
    *,
    dynamodb_client: Any = None,
    sqs_client: Any = None,
    declines_queue_url: Callable[[], str] | None = None,
    store: DynamoStore | None = None,
    publisher: SqsDeclinePublisher | None = None,
    service: BookingService | None = None,
    dead_letters: DeadLetters | None = None,
    verifier: TokenVerifier | None = None,
    page_tokens: PageTokens | None = None,
    stream_processor: StreamProcessor | None = None,
    mailer: Mailer | None = None,
) -> None:
    """Puts the given parts in place of what their functions build (e.g. ``store=...`` for
    ``store()``) until the next ``reset``. Every part built on a given one is forgotten and
    rebuilt around it on next use (``dynamodb_client=...``: the store, the service, the
    stream processor and the mailer), unless it is given too. A name that is no part is a TypeError.
    """
    given = {
        name: part
        for name, part in {
            "dynamodb_client": dynamodb_client,
            "sqs_client": sqs_client,
            "declines_queue_url": declines_queue_url,
            "store": store,
            "publisher": publisher,
            "service": service,
            "dead_letters": dead_letters,
            "verifier": verifier,
            "page_tokens": page_tokens,
            "stream_processor": stream_processor,
            "mailer": mailer,
        }.items()
        if part is not None
    }
    with _lock:
        for name in built_on(set(given)) - set(given):
            _cache.pop(name, None)
        _cache.update(given)


def built_on(names: set[str]) -> set[str]:
    """Every part built on any of ``names``, directly or through another part."""
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for part, sources in BUILT_FROM.items():
            if part not in found and (names | found) & set(sources):
                found.add(part)
                changed = True
    return found


def reset() -> None:
    with _lock:
        _cache.clear()
    reset_settings()
