"""Users of a deployed stage's Cognito pool, made for a check and signed in with the admin flow.

The smoke test and the bench's run against a deployed stage both need a parent (or a
nanny) with a real ID token from the stage's own pool; this is the one place that makes them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PoolUser:
    username: str
    token: str  # the ID token the API's authorizer verifies
    sub: str  # the pool's id of the user: what the service keys owners and applicants on


def sign_up(idp: Any, pool_id: str, admin_client_id: str, group: str, *, prefix: str, email: bool = False) -> PoolUser:
    """Creates a confirmed user in ``group`` and signs it in.

    ``email`` gives it a verified address at example.com, for checks that follow the
    notifications; without it, no email is ever sent to it.
    """
    username = f"{prefix}-{group.rstrip('s')}-{secrets.token_hex(5)}"
    password = f"Pw-{secrets.token_urlsafe(12)}aA1"
    attributes = (
        [{"Name": "email", "Value": f"{username}@example.com"}, {"Name": "email_verified", "Value": "true"}]
        if email
        else []
    )
    idp.admin_create_user(UserPoolId=pool_id, Username=username, MessageAction="SUPPRESS", UserAttributes=attributes)
    idp.admin_set_user_password(UserPoolId=pool_id, Username=username, Password=password, Permanent=True)
    idp.admin_add_user_to_group(UserPoolId=pool_id, Username=username, GroupName=group)
    auth = idp.admin_initiate_auth(
        UserPoolId=pool_id,
        ClientId=admin_client_id,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": password},
    )
    found = idp.admin_get_user(UserPoolId=pool_id, Username=username)["UserAttributes"]
    sub = next(a["Value"] for a in found if a["Name"] == "sub")
    return PoolUser(username, auth["AuthenticationResult"]["IdToken"], sub)
