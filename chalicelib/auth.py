"""Verification of Cognito-style RS256 ID tokens against the issuer's JWKS."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import jwt
from jwt import PyJWKSet

from chalicelib.domain import Caller, Role, is_valid_username

_ALGORITHMS = ["RS256"]
_LEEWAY_SECONDS = 30
_JWKS_TTL_SECONDS = 3600


class InvalidToken(Exception):
    """The token is missing, malformed or fails verification. Never shown to clients."""


class JwksSource:
    """Keys from inline JSON, a file or a URL; a URL is cached and refetched for unknown kids."""

    def __init__(
        self,
        *,
        url: str | None = None,
        inline: str | None = None,
        path: str | None = None,
        fetch: Callable[[str], bytes] | None = None,
        ttl_seconds: int = _JWKS_TTL_SECONDS,
    ) -> None:
        if not (url or inline or path):
            raise ValueError("a JWKS url, inline JSON or file is required")
        self._url, self._inline, self._path = url, inline, path
        self._fetch = fetch or _http_get
        self._ttl = ttl_seconds
        self._keys: dict[str, Any] = {}
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    def key(self, kid: str) -> Any:
        with self._lock:
            age = None if self._loaded_at is None else time.monotonic() - self._loaded_at
            # A key we don't know may be a rotation: refetch a URL, at most once a minute.
            if age is None or age > self._ttl or (kid not in self._keys and self._url and age > 60):
                self._keys = self._load()
                self._loaded_at = time.monotonic()
            try:
                return self._keys[kid]
            except KeyError:
                raise InvalidToken("unknown signing key") from None

    def _load(self) -> dict[str, Any]:
        if self._inline:
            raw = self._inline
        elif self._path:
            with open(self._path, encoding="utf-8") as fh:
                raw = fh.read()
        else:
            raw = self._fetch(self._url or "").decode("utf-8")
        keyset = PyJWKSet.from_dict(json.loads(raw))
        return {k.key_id: k.key for k in keyset.keys if k.key_id and k.key_type == "RSA"}


def _http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - the issuer's https JWKS
        return resp.read()


class TokenVerifier:
    def __init__(self, keys: JwksSource, issuer: str, audience: str) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience

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
                leeway=_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "token_use"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"token rejected: {exc}") from None
        if claims.get("token_use") != "id":
            raise InvalidToken("not an ID token")
        username = claims.get("cognito:username")
        if not is_valid_username(username):
            raise InvalidToken("token has no usable cognito:username")
        groups = claims.get("cognito:groups") or []
        if not isinstance(groups, list):
            raise InvalidToken("cognito:groups is not a list")
        roles = frozenset(r for r in Role if r.value in groups)
        if not roles:
            raise InvalidToken("caller belongs to neither parents nor nannies")
        return Caller(username=username, roles=roles)


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise InvalidToken("no token")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("not a bearer token")
    return token.strip()


# The authorizer hands the caller to the views through API Gateway's context,
# which only carries strings.
def caller_to_context(caller: Caller) -> dict[str, str]:
    return {"username": caller.username, "roles": ",".join(sorted(r.value for r in caller.roles))}


def caller_from_context(context: dict[str, Any] | None) -> Caller | None:
    if not context or not is_valid_username(context.get("username")):
        return None
    names = set(str(context.get("roles", "")).split(","))
    return Caller(username=context["username"], roles=frozenset(r for r in Role if r.value in names))
