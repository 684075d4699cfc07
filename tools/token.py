"""Prints a bearer token the local stack accepts: ``python -m tools.token --user alice --role parent``.

The token is shaped like a Cognito ID token (RS256, ``cognito:username``,
``cognito:groups``, ``token_use=id``) and signed with the local dev key, whose
JWKS the local stage trusts.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Sequence

import jwt

from chalicelib.domain import Role, is_valid_username
from tools.devkeys import LocalIssuer, ensure_keys

DEFAULT_TTL_SECONDS = 12 * 3600
ROLES = {"parent": Role.PARENT, "nanny": Role.NANNY}


def make_token(user: str, role: str, ttl_seconds: int = DEFAULT_TTL_SECONDS, issuer: LocalIssuer | None = None) -> str:
    """An ID token for ``user`` in the group of ``role`` ("parent" or "nanny")."""
    if not is_valid_username(user):
        raise ValueError(f"invalid username {user!r}: letters, digits and . _ @ + - (max 128, no leading symbol)")
    if role not in ROLES:
        raise ValueError(f"invalid role {role!r}: use one of {', '.join(ROLES)}")
    if ttl_seconds <= 0:
        raise ValueError("ttl must be positive")
    issuer = issuer or LocalIssuer.from_config()
    key, kid = ensure_keys(issuer)
    now = int(time.time())
    claims = {
        "sub": str(uuid.uuid4()),
        "cognito:username": user,
        "cognito:groups": [ROLES[role].value],
        "iss": issuer.issuer,
        "aud": issuer.audience,
        "token_use": "id",
        "auth_time": now,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.token", description=__doc__.splitlines()[0])
    parser.add_argument("--user", required=True, help="the cognito:username claim")
    parser.add_argument("--role", required=True, choices=sorted(ROLES), help="parent or nanny")
    parser.add_argument("--ttl", type=int, default=DEFAULT_TTL_SECONDS, help="lifetime in seconds (default 12 h)")
    args = parser.parse_args(argv)
    try:
        token = make_token(args.user, args.role, args.ttl)
    except ValueError as exc:
        parser.error(str(exc))
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
