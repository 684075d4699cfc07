"""The one backoff and retry helper."""

from __future__ import annotations

import pytest

from chalicelib.retries import AFTER_CONFLICT, AFTER_OUTAGE, Backoff, retry


class Busy(Exception):
    pass


def test_pauses_grow_within_their_jitter_and_stop_at_the_longest() -> None:
    doubling = Backoff(first=0.1, jitter=(1.0, 1.0), longest=0.3)
    assert [doubling.pause(n) for n in (1, 2, 3)] == [0.1, 0.2, 0.3]
    linear = Backoff(first=1.0, jitter=(2.0, 2.0), doubling=False)
    assert [linear.pause(n) for n in (1, 2, 3)] == [2.0, 4.0, 6.0]
    assert 0.005 <= AFTER_CONFLICT.pause(1) <= 0.02
    assert 0.2 <= AFTER_OUTAGE.pause(10) <= 0.4


def test_a_retryable_failure_is_retried_then_given_up_on() -> None:
    calls, pauses = [], []

    def call() -> str:
        calls.append(1)
        raise Busy()

    with pytest.raises(RuntimeError, match="gave up"):
        retry(
            call,
            retryable=lambda exc: isinstance(exc, Busy),
            retries=3,
            backoff=Backoff(first=1.0, jitter=(1.0, 1.0), doubling=False),
            exhausted=lambda exc: RuntimeError("gave up"),
            sleep=pauses.append,
        )
    assert len(calls) == 4 and pauses == [1.0, 2.0, 3.0]


def test_a_success_or_another_failure_ends_the_retries() -> None:
    outcomes = iter([Busy(), "done"])

    def call() -> str:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    kwargs = dict(retryable=lambda exc: isinstance(exc, Busy), retries=3, backoff=AFTER_CONFLICT, sleep=lambda _: None)
    assert retry(call, exhausted=RuntimeError, **kwargs) == "done"  # type: ignore[arg-type]

    def fails() -> str:
        raise ValueError("not retryable")

    with pytest.raises(ValueError):
        retry(fails, exhausted=RuntimeError, **kwargs)  # type: ignore[arg-type]
