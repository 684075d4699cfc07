"""Settings are checked once, at start: a bad value is refused by name, never corrected silently."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chalicelib.config import ConfigurationError, Settings, get_settings, reset_settings

REQUIRED = {
    "TABLE_NAME": "booking-test",
    "DECLINES_QUEUE_NAME": "booking-declines-test",
    "AUTH_ISSUER": "https://issuer.example",
    "AUTH_AUDIENCE": "booking",
}


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    yield
    reset_settings()


def _refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    monkeypatch.setenv(name, value)
    reset_settings()
    with pytest.raises(ConfigurationError) as refused:
        get_settings()
    return str(refused.value)


def test_the_defaults_are_accepted() -> None:
    settings = get_settings()
    assert settings.enqueue_concurrency == 10
    assert settings.sweep_delay_seconds == 30
    assert settings.transaction_deadline_seconds == 1.5
    assert settings.dynamodb_read_timeout_seconds == 1.0
    assert settings.query_page_size is None


def test_values_within_their_bounds_are_taken_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "ENQUEUE_CONCURRENCY": "1",
        "SWEEP_DELAY_SECONDS": "0",
        "ENQUEUE_BACKOFF_MS": "0",
        "TRANSACTION_DEADLINE_MS": "0",
        "QUERY_PAGE_SIZE": "4",
        "CLIENT_READ_TIMEOUT_MS": "3000",
    }.items():
        monkeypatch.setenv(name, value)
    settings = get_settings()
    assert (settings.enqueue_concurrency, settings.sweep_delay_seconds, settings.enqueue_backoff_seconds) == (1, 0, 0)
    assert (settings.transaction_deadline_seconds, settings.query_page_size) == (0, 4)
    assert settings.client_read_timeout_seconds == 3.0
    assert settings.dynamodb_read_timeout_seconds == 3.0  # DynamoDB reads as long as the other clients, or 1 s


def test_an_empty_variable_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENQUEUE_CONCURRENCY", "")
    assert get_settings().enqueue_concurrency == 10


def test_a_zero_concurrency_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _refused(monkeypatch, "ENQUEUE_CONCURRENCY", "0")
    assert message == "ENQUEUE_CONCURRENCY must be an integer from 1 to 100, got 0"


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("ENQUEUE_CONCURRENCY", "101", "from 1 to 100"),
        ("ENQUEUE_MAX_ATTEMPTS", "0", "from 1 to 10"),
        ("CLIENT_MAX_ATTEMPTS", "0", "from 1 to 10"),
        ("QUERY_PAGE_SIZE", "0", "from 1 to 1000"),
        ("SWEEP_DELAY_SECONDS", "901", "from 0 to 900"),
        ("SWEEP_DELAY_SECONDS", "-1", "from 0 to 900"),
        ("STREAM_SWEEP_DELAY_SECONDS", "1000", "from 0 to 900"),
        ("MAIL_LEASE_SECONDS", "0", "from 1 to 3600"),
    ],
)
def test_a_count_out_of_its_bounds_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, allowed: str
) -> None:
    assert _refused(monkeypatch, name, value) == f"{name} must be an integer {allowed}, got {int(value)}"


@pytest.mark.parametrize(
    "name",
    [
        "CLIENT_CONNECT_TIMEOUT_MS",
        "CLIENT_READ_TIMEOUT_MS",
        "DYNAMODB_READ_TIMEOUT_MS",
        "TRANSACTION_DEADLINE_MS",
        "ENQUEUE_BACKOFF_MS",
        "ENQUEUE_DEADLINE_MS",
    ],
)
def test_a_negative_timeout_is_refused(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    message = _refused(monkeypatch, name, "-5")
    assert message.startswith(f"{name} must be an integer from ") and message.endswith("got -5")


def test_a_dynamodb_read_timeout_under_a_second_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _refused(monkeypatch, "DYNAMODB_READ_TIMEOUT_MS", "500")
    assert message == "DYNAMODB_READ_TIMEOUT_MS must be an integer from 1000 to 60000, got 500"


@pytest.mark.parametrize("value", ["ten", "1.5", "1e3", "0x10"])
def test_a_non_integer_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    message = _refused(monkeypatch, "ENQUEUE_CONCURRENCY", value)
    assert message == f"ENQUEUE_CONCURRENCY must be an integer from 1 to 100, got {value!r}"


def test_a_missing_required_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TABLE_NAME")
    with pytest.raises(ConfigurationError, match="TABLE_NAME is not set"):
        get_settings()


def test_the_page_token_key_is_not_a_setting() -> None:
    # page_token_keys.py reads it (from SSM on a deployed stage): no second, diverging reading here.
    assert "page_token_secret" not in Settings.__dataclass_fields__
