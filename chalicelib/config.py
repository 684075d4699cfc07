"""Settings read from the environment on first use, never at import time.

Chalice's test client sets a stage's environment variables only while a request
runs, and ``chalice local`` sets them before importing the app: reading lazily
keeps both working. ``reset_settings`` drops the cache for tests.

Every number is checked against its bounds here, once: a value out of them, or not an
integer, is a ``ConfigurationError`` naming the variable and what it allows, raised at
the first use (a cold start) rather than corrected silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache


class ConfigurationError(RuntimeError):
    """A variable missing or out of its bounds: the function cannot start."""


def _flag(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on", "enabled"}


def _int(name: str, default: int | None, *, minimum: int, maximum: int | None = None) -> int | None:
    """An integer variable within ``[minimum, maximum]``; unset or empty: ``default``. Anything
    else is refused at start, naming the variable and what it allows."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    allowed = f"an integer from {minimum} to {maximum}" if maximum is not None else f"an integer of at least {minimum}"
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigurationError(f"{name} must be {allowed}, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise ConfigurationError(f"{name} must be {allowed}, got {value}")
    return value


def _bounded(name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    value = _int(name, default, minimum=minimum, maximum=maximum)
    return default if value is None else value


def _milliseconds(name: str, default: int, *, minimum: int, maximum: int) -> float:
    """A duration given in milliseconds, as seconds."""
    return _bounded(name, default, minimum=minimum, maximum=maximum) / 1000


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigurationError(f"{name} is not set")
    return value


@dataclass(frozen=True)
class Settings:
    table_name: str
    declines_queue_name: str | None
    declines_queue_url: str | None
    # True only where the worker's event source mapping is known to have
    # FunctionResponseTypes=[ReportBatchItemFailures]; otherwise a partial
    # response would be ignored by Lambda and failed records deleted.
    partial_batch_responses: bool
    auth_issuer: str
    auth_audience: str
    auth_jwks_url: str | None
    auth_jwks_json: str | None
    auth_jwks_file: str | None
    query_page_size: int | None
    enqueue_max_attempts: int
    enqueue_backoff_seconds: float
    enqueue_deadline_seconds: float
    enqueue_concurrency: int
    # How long after a booking its sweep runs: past the index's usual lag (SQS allows 0-900).
    sweep_delay_seconds: int
    declines_dlq_url: str | None
    # botocore, for every client: see docs/api.md#timeouts-and-retries.
    client_connect_timeout_seconds: float
    client_read_timeout_seconds: float
    client_max_attempts: int
    # DynamoDB's: at least 1 s, AWS's advice for transactions (a shorter one re-sends a
    # transaction that is still running, which answers TransactionInProgressException).
    dynamodb_read_timeout_seconds: float
    # No new attempt of a transaction starts later than this after its first.
    transaction_deadline_seconds: float
    # The table's stream, the bus and the emails (docs/stream.md).
    event_bus_name: str | None
    # As for the worker: only where the stream subscription is known to honour partial responses.
    stream_partial_batch_responses: bool
    # The stream's sweep reads the base table consistently: no index lag to wait for.
    stream_sweep_delay_seconds: int
    mail_sender: str | None
    mail_configuration_set: str | None
    mail_lease_seconds: int


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    queue_name = os.environ.get("DECLINES_QUEUE_NAME") or None
    queue_url = os.environ.get("DECLINES_QUEUE_URL") or None
    if not (queue_name or queue_url):
        raise ConfigurationError("DECLINES_QUEUE_NAME or DECLINES_QUEUE_URL must be set")
    return Settings(
        table_name=_required("TABLE_NAME"),
        declines_queue_name=queue_name,
        declines_queue_url=queue_url,
        partial_batch_responses=_flag("DECLINES_PARTIAL_BATCH_RESPONSES"),
        auth_issuer=_required("AUTH_ISSUER"),
        auth_audience=_required("AUTH_AUDIENCE"),
        auth_jwks_url=os.environ.get("AUTH_JWKS_URL") or None,
        auth_jwks_json=os.environ.get("AUTH_JWKS") or None,
        auth_jwks_file=os.environ.get("AUTH_JWKS_FILE") or None,
        # The bounds below are checked once, here: a bad value stops the start, naming the variable.
        query_page_size=_int("QUERY_PAGE_SIZE", None, minimum=1, maximum=1000),
        enqueue_max_attempts=_bounded("ENQUEUE_MAX_ATTEMPTS", 3, minimum=1, maximum=10),
        enqueue_backoff_seconds=_milliseconds("ENQUEUE_BACKOFF_MS", 50, minimum=0, maximum=5000),
        enqueue_deadline_seconds=_milliseconds("ENQUEUE_DEADLINE_MS", 500, minimum=0, maximum=10_000),
        # Ten batches in flight: a booking of up to 100 applications sends all its batches in one
        # round; past that the client's CPU per batch, not SQS, bounds it (bench/README.md).
        enqueue_concurrency=_bounded("ENQUEUE_CONCURRENCY", 10, minimum=1, maximum=100),
        # SQS delays a message by 0 to 900 s.
        sweep_delay_seconds=_bounded("SWEEP_DELAY_SECONDS", 30, minimum=0, maximum=900),
        declines_dlq_url=os.environ.get("DECLINES_DLQ_URL") or None,
        client_connect_timeout_seconds=_milliseconds("CLIENT_CONNECT_TIMEOUT_MS", 300, minimum=1, maximum=60_000),
        client_read_timeout_seconds=_milliseconds("CLIENT_READ_TIMEOUT_MS", 700, minimum=1, maximum=60_000),
        client_max_attempts=_bounded("CLIENT_MAX_ATTEMPTS", 2, minimum=1, maximum=10),
        dynamodb_read_timeout_seconds=_dynamodb_read_timeout_seconds(),
        transaction_deadline_seconds=_milliseconds("TRANSACTION_DEADLINE_MS", 1500, minimum=0, maximum=10_000),
        event_bus_name=os.environ.get("EVENT_BUS_NAME") or None,
        stream_partial_batch_responses=_flag("STREAM_PARTIAL_BATCH_RESPONSES"),
        stream_sweep_delay_seconds=_bounded("STREAM_SWEEP_DELAY_SECONDS", 0, minimum=0, maximum=900),
        mail_sender=os.environ.get("MAIL_SENDER") or None,
        mail_configuration_set=os.environ.get("MAIL_CONFIGURATION_SET") or None,
        mail_lease_seconds=_bounded("MAIL_LEASE_SECONDS", 60, minimum=1, maximum=3600),
    )


def _dynamodb_read_timeout_seconds() -> float:
    """DYNAMODB_READ_TIMEOUT_MS, else CLIENT_READ_TIMEOUT_MS raised to 1 s: AWS's advice for
    transactions (a shorter one re-sends a transaction still running)."""
    own = _int("DYNAMODB_READ_TIMEOUT_MS", None, minimum=1000, maximum=60_000)
    if own is not None:
        return own / 1000
    return max(1.0, _milliseconds("CLIENT_READ_TIMEOUT_MS", 1000, minimum=1, maximum=60_000))


def reset_settings() -> None:
    get_settings.cache_clear()
