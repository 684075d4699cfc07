"""Verification of Cognito-style RS256 ID tokens against the issuer's JWKS."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import jwt
from jwt import PyJWKSet

from chalicelib.callers import caller_from_context, caller_to_context
from chalicelib.domain import Caller, Role, is_valid_email, is_valid_user_id, is_valid_username

if TYPE_CHECKING:
    from jwt.algorithms import AllowedPublicKeys

__all__ = ["InvalidToken", "JwksSource", "TokenVerifier", "caller_from_context", "caller_to_context"]

log = logging.getLogger(__name__)

_ALGORITHMS = ["RS256"]
# Clock skew allowed on exp, nbf and iat. Kept small because API Gateway keeps serving an
# admission for the authorizer's cache TTL on top of it (the exact bound:
# docs/api.md#how-long-a-token-outlives-its-exp).
LEEWAY_SECONDS = 5
_JWKS_TTL_SECONDS = 3600
# A kid we don't know may be a key rotation; refetching for each one would let any caller
# make us hammer the issuer.
_UNKNOWN_KID_REFETCH_SECONDS = 60
# After a failed load: 1 s, 2 s, 4 s ... up to a minute between attempts.
_BACKOFF_FIRST_SECONDS = 1.0
_BACKOFF_MAX_SECONDS = 60.0
_MAX_JWKS_BYTES = 1 << 20


class InvalidToken(Exception):
    """The token is missing, malformed or fails verification. Never shown to clients."""


class JwksUnavailable(InvalidToken):
    """No signing key has been loaded yet, so no token can be verified: each is refused."""


class Metrics(Protocol):
    def count(self, name: str, value: int = 1) -> None: ...


class _NoMetrics:
    def count(self, name: str, value: int = 1) -> None:
        return None


class JwksSource:
    """Keys from inline JSON, a file or a URL, reloaded every ``ttl_seconds``.

    A URL is refetched for an unknown kid at most once a minute. A load that fails (the
    endpoint down or answering garbage, no RSA key) keeps the last good keys and backs off;
    with none loaded yet, ``key`` raises ``JwksUnavailable``: a refusal, never an error.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        inline: str | None = None,
        path: str | None = None,
        fetch: Callable[[str], bytes] | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        ttl_seconds: float = _JWKS_TTL_SECONDS,
        unknown_kid_refetch_seconds: float = _UNKNOWN_KID_REFETCH_SECONDS,
        backoff_seconds: float = _BACKOFF_FIRST_SECONDS,
        max_backoff_seconds: float = _BACKOFF_MAX_SECONDS,
    ) -> None:
        if not (url or inline or path):
            raise ValueError("a JWKS url, inline JSON or file is required")
        self._url, self._inline, self._path = url, inline, path
        self._fetch = fetch or _http_get
        self._clock = clock
        self._metrics = metrics or _NoMetrics()
        self._ttl = ttl_seconds
        self._unknown_kid_refetch = unknown_kid_refetch_seconds
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._keys: dict[str, AllowedPublicKeys] | None = None  # None until a load succeeds
        self._loaded_at = 0.0
        self._attempted_at = 0.0
        self._retry_at = float("-inf")
        self._failures = 0
        self._lock = threading.Lock()

    def key(self, kid: str) -> AllowedPublicKeys:
        with self._lock:
            now = self._clock()
            if self._due(kid, now):
                self._refresh(now)
            if self._keys is None:
                log.error("no JWKS signing keys loaded: refusing the token")
                self._metrics.count("JwksUnavailable")
                raise JwksUnavailable("no signing keys available")
            try:
                return self._keys[kid]
            except KeyError:
                raise InvalidToken("unknown signing key") from None

    def _due(self, kid: str, now: float) -> bool:
        if now < self._retry_at:
            return False  # backing off after a failed load
        if self._keys is None or now - self._loaded_at >= self._ttl:
            return True
        return bool(self._url) and kid not in self._keys and now - self._attempted_at >= self._unknown_kid_refetch

    def _refresh(self, now: float) -> None:
        self._attempted_at = now
        try:
            keys = self._load()
        # Whatever the issuer's endpoint does (refuse, time out, answer HTML) must not turn
        # valid tokens into errors: keep what we had and try again later.
        except Exception as exc:
            self._failures += 1
            delay = min(self._max_backoff, self._backoff * 2 ** min(self._failures - 1, 16))
            self._retry_at = now + delay
            self._metrics.count("JwksRefreshFailed")
            log.warning(
                "JWKS load failed (%s: %s); %s, next attempt in %.0f s",
                type(exc).__name__,
                str(exc)[:200],
                "keeping the last good keys" if self._keys is not None else "no keys yet",
                delay,
            )
            return
        self._keys, self._loaded_at = keys, now
        self._failures, self._retry_at = 0, float("-inf")

    def _load(self) -> dict[str, AllowedPublicKeys]:
        if self._inline:
            raw: str | bytes = self._inline
        elif self._path:
            with open(self._path, encoding="utf-8") as fh:
                raw = fh.read()
        else:
            raw = self._fetch(self._url or "")
        keyset = PyJWKSet.from_dict(json.loads(raw))
        keys = {k.key_id: k.key for k in keyset.keys if k.key_id and k.key_type == "RSA"}
        if not keys:
            raise ValueError("the JWKS holds no RSA key with a kid")
        return keys


def _http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - the issuer's https JWKS
        body: bytes = resp.read(_MAX_JWKS_BYTES + 1)
    if len(body) > _MAX_JWKS_BYTES:
        raise ValueError("the JWKS is larger than 1 MiB")
    return body


class TokenVerifier:
    def __init__(self, keys: JwksSource, issuer: str, audience: str) -> None:
        self._keys = keys
        self._issuer = issuer
        # "appClient,adminClient": a stage accepts the ID tokens of each of its clients.
        self._audience = [a.strip() for a in audience.split(",") if a.strip()]

    def verify(self, authorization: str | None) -> Caller:
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from None
        if header.get("alg") not in _ALGORITHMS:
            raise InvalidToken("algorithm not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("token has no key id")
        try:
            claims = jwt.decode(
                token,
                self._keys.key(kid),
                algorithms=_ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "token_use"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"token rejected: {exc}") from None
        if claims.get("token_use") != "id":
            raise InvalidToken("not an ID token")
        # Identity is the sub: Cognito never reassigns it, while a deleted user's name can be
        # signed up again by someone else (docs/api.md#who-owns-what).
        user_id = claims.get("sub")
        if not isinstance(user_id, str) or not is_valid_user_id(user_id):
            raise InvalidToken("token has no usable sub")
        username = claims.get("cognito:username")
        if not isinstance(username, str) or not is_valid_username(username):
            raise InvalidToken("token has no usable cognito:username")
        groups = claims.get("cognito:groups") or []
        if not isinstance(groups, list):
            raise InvalidToken("cognito:groups is not a list")
        roles = frozenset(r for r in Role if r.value in groups)
        if not roles:
            raise InvalidToken("caller belongs to neither parents nor nannies")
        email = claims.get("email")
        # An address is only used for notifications: one that is unverified or malformed is left out.
        verified = str(claims.get("email_verified", "true")).lower() != "false"
        usable_email = email if verified and is_valid_email(email) else None
        return Caller(user_id=user_id, username=username, roles=roles, email=usable_email)


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise InvalidToken("no token")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("not a bearer token")
    return token.strip()
