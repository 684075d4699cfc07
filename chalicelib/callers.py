"""The caller the authorizer admitted, as it travels in API Gateway's authorizer context.

Apart from chalicelib.auth so that the API function, which only reads the context,
does not import PyJWT and cryptography on its cold start: only the authorizer verifies.
The context only carries strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalicelib.domain import Caller, Role, is_valid_email, is_valid_user_id, is_valid_username


def caller_to_context(caller: Caller) -> dict[str, str]:
    context = {
        "userId": caller.user_id,
        "username": caller.username,
        "roles": ",".join(sorted(r.value for r in caller.roles)),
    }
    if caller.email:
        context["email"] = caller.email
    return context


def caller_from_context(context: Mapping[str, Any] | None) -> Caller | None:
    if not context:
        return None
    user_id, username = context.get("userId"), context.get("username")
    if not isinstance(user_id, str) or not is_valid_user_id(user_id):
        return None
    if not isinstance(username, str) or not is_valid_username(username):
        return None
    names = set(str(context.get("roles", "")).split(","))
    email = context.get("email")
    return Caller(
        user_id=user_id,
        username=username,
        roles=frozenset(r for r in Role if r.value in names),
        email=email if is_valid_email(email) else None,
    )
