"""The key that signs page tokens (``nextToken``): SSM Parameter Store on AWS, config locally.

A deployed stage names a SecureString parameter in ``PAGE_TOKEN_SECRET_PARAMETER``
(``/booking/<stage>/page-token-secret``, created by the deploy command on first deploy
and never overwritten). It is read once per container through powertools Parameters,
decrypted, and cached. The local stage and the tests set ``PAGE_TOKEN_SECRET`` itself.

There is no fallback: a stage with neither, or whose parameter cannot be read, refuses
the listings (503 ``PAGE_TOKENS_UNAVAILABLE``) with an ERROR log line naming the
parameter, rather than signing tokens with a value anyone could know.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

from chalicelib.domain import Unavailable

log = logging.getLogger(__name__)

PARAMETER_VARIABLE = "PAGE_TOKEN_SECRET_PARAMETER"
VALUE_VARIABLE = "PAGE_TOKEN_SECRET"
# The key changes only if someone replaces the parameter; a container reads it once.
MAX_AGE_SECONDS = 3600

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

    value = parameters.get_parameter(name, decrypt=True, max_age=MAX_AGE_SECONDS)
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
