"""Opaque, signed ``nextToken``s bound to the listing that issued them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Protocol

from chalicelib.domain import InvalidInput

_MAX_TOKEN_LENGTH = 2048


class KeySet(Protocol):
    # Read-only: a frozen dataclass (page_token_keys.PageTokenKeys) is one.
    @property
    def signing(self) -> str: ...
    @property
    def accepted(self) -> tuple[str, ...]: ...


@lru_cache(maxsize=8)
def _derived(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokens:
    """Signs with the current key; accepts a token signed with any key the stage accepts
    (the previous or next one during a rotation). ``keys`` is asked on every use."""

    def __init__(self, keys: str | Callable[[], KeySet]) -> None:
        self._keys = keys

    def _key_set(self) -> tuple[str, tuple[str, ...]]:
        if isinstance(self._keys, str):
            return self._keys, (self._keys,)
        found = self._keys()
        return found.signing, found.accepted

    def encode(self, scope: str, cursor: dict[str, Any] | None) -> str | None:
        if cursor is None:
            return None
        payload = json.dumps({"s": scope, "k": cursor}, separators=(",", ":"), sort_keys=True).encode("utf-8")
        signing, _ = self._key_set()
        return f"{_b64(payload)}.{_b64(_sign(signing, payload))}"

    def decode(self, scope: str, token: str | None) -> dict[str, Any] | None:
        """The cursor inside ``token``, or None for the first page; 400 if forged."""
        # Asked first, even for a first page: without keys a listing is refused before any read.
        _, accepted = self._key_set()
        if token is None:
            return None
        invalid = InvalidInput("nextToken is not valid for this request.", code="INVALID_NEXT_TOKEN")
        if not token or len(token) > _MAX_TOKEN_LENGTH or token.count(".") != 1:
            raise invalid
        body, signature = token.split(".")
        try:
            payload = _unb64(body)
            given = _unb64(signature)
        except (ValueError, TypeError):
            raise invalid from None
        if not any(hmac.compare_digest(given, _sign(key, payload)) for key in accepted):
            raise invalid
        try:
            data = json.loads(payload)
        except ValueError:
            raise invalid from None
        if not isinstance(data, dict) or data.get("s") != scope:
            raise invalid
        cursor = data.get("k")
        if not isinstance(cursor, dict):
            raise invalid
        return cursor


def _sign(secret: str, payload: bytes) -> bytes:
    return hmac.new(_derived(secret), payload, hashlib.sha256).digest()[:18]
