"""Prints a bearer token the local stack accepts: ``python -m tools.local.tokens --user alice --role parent``.

The token is shaped like a Cognito ID token (RS256, ``sub``, ``cognito:username``,
``cognito:groups``, ``email``, ``token_use=id``) and signed with the local dev key, whose
JWKS the local stage trusts. A user's ``sub`` is the same in every token, as a real
account's is: ownership follows it.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Sequence

import jwt

from chalicelib.domain import Role, is_valid_email, is_valid_username
from tools.local.devkeys import LocalIssuer, ensure_keys

DEFAULT_TTL_SECONDS = 12 * 3600
ROLES = {"parent": Role.PARENT, "nanny": Role.NANNY}
# Local users' subs are derived from their names under this namespace: stable across tokens.
_LOCAL_USERS = uuid.UUID("0d9b7a0e-4c1f-5e0b-8a7e-3f7a2f1c9b11")


def local_user_id(user: str) -> str:
    return str(uuid.uuid5(_LOCAL_USERS, user))


def make_token(
    user: str,
    role: str,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    issuer: LocalIssuer | None = None,
    email: str | None = None,
) -> str:
    """An ID token for ``user`` in the group of ``role`` ("parent" or "nanny"); ``email``
    defaults to ``<user>@example.com``."""
    if not is_valid_username(user):
        raise ValueError(f"invalid username {user!r}: letters, digits and . _ @ + - (max 128, no leading symbol)")
    if role not in ROLES:
        raise ValueError(f"invalid role {role!r}: use one of {', '.join(ROLES)}")
    if ttl_seconds <= 0:
        raise ValueError("ttl must be positive")
    email = email or f"{user}@example.com"
    if not is_valid_email(email):
        raise ValueError(f"invalid email {email!r}")
    issuer = issuer or LocalIssuer.from_config()
    key, kid = ensure_keys(issuer)
    now = int(time.time())
    claims = {
        "sub": local_user_id(user),
        "cognito:username": user,
        "cognito:groups": [ROLES[role].value],
        "iss": issuer.issuer,
        "aud": issuer.audience,
        "email": email,
        "email_verified": True,
        "token_use": "id",
        "auth_time": now,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.local.tokens", description=__doc__.splitlines()[0])
    parser.add_argument("--user", required=True, help="the cognito:username claim")
    parser.add_argument("--role", required=True, choices=sorted(ROLES), help="parent or nanny")
    parser.add_argument("--email", default=None, help="the email claim (default <user>@example.com)")
    parser.add_argument("--ttl", type=int, default=DEFAULT_TTL_SECONDS, help="lifetime in seconds (default 12 h)")
    args = parser.parse_args(argv)
    try:
        token = make_token(args.user, args.role, args.ttl, email=args.email)
    except ValueError as exc:
        parser.error(str(exc))
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
