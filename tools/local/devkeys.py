"""The local stage's identity provider: one RSA signing key and the JWKS that trusts it.

The private key lives in ``.local/auth/signing-key.pem`` (mode 0600, created on
first use, kept by ``make clean-local``); the public half is published as the JWKS
file the local stage's configuration names (``AUTH_JWKS_FILE``). The issuer and
audience come from the same stage configuration, so tokens and verifier agree.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tools.shared import ROOT, stage_environment

SIGNING_KEY = ROOT / ".local" / "auth" / "signing-key.pem"
LOCAL_STAGE = "local"


@dataclass(frozen=True)
class LocalIssuer:
    issuer: str
    audience: str
    jwks_file: Path

    @classmethod
    def from_config(cls, stage: str = LOCAL_STAGE) -> LocalIssuer:
        env = stage_environment(stage)
        jwks = Path(env["AUTH_JWKS_FILE"])
        return cls(env["AUTH_ISSUER"], env["AUTH_AUDIENCE"], jwks if jwks.is_absolute() else ROOT / jwks)


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def public_jwk(key: rsa.RSAPrivateKey) -> dict[str, str]:
    """The public key as a JWK whose ``kid`` is its RFC 7638 thumbprint (stable for the key)."""
    numbers = key.public_key().public_numbers()
    jwk = {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}
    canonical = json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode("ascii")
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode("ascii")
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


def _create_key(path: Path) -> None:
    """Writes a new key unless one appears meanwhile: concurrent first uses agree on one key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".signing-key-")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # fails if another process won the race; its key is kept
    finally:
        os.unlink(tmp)


def signing_key(path: Path = SIGNING_KEY) -> rsa.RSAPrivateKey:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        _create_key(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} does not hold an RSA private key")
    return key


def _write_if_changed(path: Path, content: str) -> None:
    if path.exists() and path.read_text(encoding="utf-8") == content:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".jwks-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(content)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)  # readers never see a half-written file


def ensure_keys(issuer: LocalIssuer | None = None, key_path: Path = SIGNING_KEY) -> tuple[rsa.RSAPrivateKey, str]:
    """The signing key and its kid; (re)writes the JWKS file so the verifier trusts it."""
    issuer = issuer or LocalIssuer.from_config()
    key = signing_key(key_path)
    jwk = public_jwk(key)
    jwks: dict[str, Any] = {"keys": [jwk]}
    _write_if_changed(issuer.jwks_file, json.dumps(jwks, indent=2) + "\n")
    return key, jwk["kid"]
