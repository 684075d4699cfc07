"""The keys that sign page tokens (``nextToken``): SSM Parameter Store on AWS, config locally.

A deployed stage names a SecureString parameter in ``PAGE_TOKEN_SECRET_PARAMETER``
(``/booking/<stage>/page-token-secret``, created by the deploy command on first deploy
and never overwritten). The local stage and the tests set ``PAGE_TOKEN_SECRET`` itself.

The parameter holds one key, or, during and after a rotation, a JSON object
``{"current": k, "next"?: k, "previous"?: k}``: tokens are signed with ``current`` and
accepted under any of the three. A container re-reads it every ``MAX_AGE_SECONDS`` (and
keeps the keys it had if a re-read fails), so a rotation in two steps, each at least that
long apart (``make rotate-page-token-key``), never breaks a client's paging: first the
new key is accepted everywhere (``next``), then signed with (``current``, the old one
kept as ``previous``). See docs/operations.md#rotating-the-page-token-key.

There is no fallback: a stage with neither, or whose parameter cannot be read, refuses
the listings (503 ``PAGE_TOKENS_UNAVAILABLE``) with an ERROR log line naming the
parameter, rather than signing tokens with a value anyone could know.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from chalicelib.domain import Unavailable

log = logging.getLogger(__name__)

PARAMETER_VARIABLE = "PAGE_TOKEN_SECRET_PARAMETER"
VALUE_VARIABLE = "PAGE_TOKEN_SECRET"
# How stale a container's keys may be: each step of a rotation waits at least this long.
MAX_AGE_SECONDS = 300

# Reads a SecureString's decrypted value by name.
Fetch = Callable[[str], str]


class PageTokensUnavailable(Unavailable):
    """The stage has no readable page-token key: listings are refused until it has one."""

    code = "PAGE_TOKENS_UNAVAILABLE"


def parameter_name(stage: str) -> str:
    """Where a deployed stage keeps its page-token key."""
    return f"/booking/{stage}/page-token-secret"


def _powertools_fetch(name: str) -> str:
    from aws_lambda_powertools.utilities import parameters

    # The caller (PageTokenKeySource) keeps the keys for their max age: always fetch here.
    value = parameters.get_parameter(name, decrypt=True, force_fetch=True)
    return value if isinstance(value, str) else ""


def page_token_secret(environ: Mapping[str, str] | None = None, fetch: Fetch | None = None) -> str:
    """The signing key, or ``PageTokensUnavailable``; never a value derived from public names."""
    env = os.environ if environ is None else environ
    name = env.get(PARAMETER_VARIABLE, "").strip()
    if name:
        try:
            value = (fetch or _powertools_fetch)(name)
        except Exception as exc:  # any failure (missing, denied, throttled) means: no key now
            log.error(
                "page-token key unavailable: cannot read SSM parameter %s (%s: %s); listings are refused",
                name,
                type(exc).__name__,
                str(exc)[:300],
                extra={"parameter": name},
            )
            raise _unavailable() from None
        if not value:
            log.error("page-token key unavailable: SSM parameter %s is empty; listings are refused", name)
            raise _unavailable()
        return value
    value = env.get(VALUE_VARIABLE, "")
    if value:
        return value
    log.error(
        "page-token key unavailable: neither %s nor %s is set; listings are refused",
        PARAMETER_VARIABLE,
        VALUE_VARIABLE,
    )
    raise _unavailable()


def _unavailable() -> PageTokensUnavailable:
    return PageTokensUnavailable("Listings are unavailable: the service's page-token key is not configured.")


@dataclass(frozen=True)
class PageTokenKeys:
    """What signs new tokens, and every key a token may be signed with (``signing`` first)."""

    signing: str
    accepted: tuple[str, ...]


def parse_keys(value: str) -> PageTokenKeys:
    """One key, or ``{"current": k, "next"?: k, "previous"?: k}``; anything else is refused."""
    if not value.lstrip().startswith("{"):
        return PageTokenKeys(value, (value,))
    try:
        data = json.loads(value)
    except ValueError:
        data = None
    keys = {role: data.get(role) for role in ("current", "next", "previous")} if isinstance(data, dict) else {}
    if not keys or not _key(keys["current"]) or not all(k is None or _key(k) for k in keys.values()):
        log.error("page-token key unavailable: the parameter is JSON but not {current, next?, previous?}")
        raise _unavailable()
    current = str(keys["current"])
    others = tuple(str(k) for k in (keys["next"], keys["previous"]) if k and k != current)
    return PageTokenKeys(current, (current, *others))


def _key(value: object) -> bool:
    return isinstance(value, str) and len(value) >= 16


class PageTokenKeySource:
    """The stage's page-token keys, re-read every ``max_age_seconds``.

    A re-read that fails keeps the keys already held (logged), and is tried again on the
    next use after ``retry_seconds``; with no keys held, it raises ``PageTokensUnavailable``.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        fetch: Fetch | None = None,
        *,
        max_age_seconds: float = MAX_AGE_SECONDS,
        retry_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._environ = environ
        self._fetch = fetch
        self._max_age = max_age_seconds
        self._retry = retry_seconds
        self._clock = clock
        self._keys: PageTokenKeys | None = None
        self._due = float("-inf")
        self._lock = threading.Lock()

    def __call__(self) -> PageTokenKeys:
        with self._lock:
            now = self._clock()
            if now >= self._due:
                try:
                    self._keys = parse_keys(page_token_secret(self._environ, self._fetch))
                    self._due = now + self._max_age
                except PageTokensUnavailable:
                    if self._keys is None:
                        raise
                    log.warning("page-token key re-read failed; keeping the keys held")
                    self._due = now + self._retry
            assert self._keys is not None
            return self._keys
