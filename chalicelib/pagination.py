"""Opaque, signed ``nextToken``s bound to the listing that issued them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from chalicelib.domain import InvalidInput

_MAX_TOKEN_LENGTH = 2048


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokens:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(secret.encode("utf-8")).digest()

    def encode(self, scope: str, cursor: dict | None) -> str | None:
        if cursor is None:
            return None
        payload = json.dumps({"s": scope, "k": cursor}, separators=(",", ":"), sort_keys=True).encode("utf-8")
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def decode(self, scope: str, token: str | None) -> dict | None:
        """The cursor inside ``token``, or None for the first page; 400 if forged."""
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
        if not hmac.compare_digest(given, self._sign(payload)):
            raise invalid
        try:
            data = json.loads(payload)
        except ValueError:
            raise invalid from None
        if not isinstance(data, dict) or data.get("s") != scope or not isinstance(data.get("k"), dict):
            raise invalid
        return data["k"]

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:18]
