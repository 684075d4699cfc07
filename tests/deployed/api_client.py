"""A client of the deployed stage: ID tokens from its user pool, JSON over API Gateway."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from tests.deployed.stage import Deployment

PASSWORD = "Deployed-Stage-42"


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]
    seconds: float


def sign_up(deployment: Deployment, group: str) -> tuple[str, str]:
    """A new user in the stage's pool and group; returns (username, ID token) via the admin client."""
    idp = deployment.client("cognito-idp")
    pool, username = deployment.outputs["UserPoolId"], f"{group[:-1]}-{uuid.uuid4().hex[:10]}"
    # An address of its own, so that the ID token carries the email claim the stage emails.
    attributes = [{"Name": "email", "Value": f"{username}@example.com"}, {"Name": "email_verified", "Value": "true"}]
    idp.admin_create_user(UserPoolId=pool, Username=username, MessageAction="SUPPRESS", UserAttributes=attributes)
    idp.admin_set_user_password(UserPoolId=pool, Username=username, Password=PASSWORD, Permanent=True)
    idp.admin_add_user_to_group(UserPoolId=pool, Username=username, GroupName=group)
    result = idp.admin_initiate_auth(
        UserPoolId=pool,
        ClientId=deployment.outputs["AdminClientId"],
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": PASSWORD},
    )
    return username, result["AuthenticationResult"]["IdToken"]


def call(deployment: Deployment, method: str, path: str, token: str | None = None, body: Any = None) -> Answer:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(deployment.api + path, data=data, method=method, headers=headers)  # noqa: S310
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - the emulator on loopback
            status, raw, got = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        status, raw, got = exc.code, exc.read(), dict(exc.headers)
    seconds = time.monotonic() - started
    return Answer(status, json.loads(raw) if raw else None, {k.lower(): v for k, v in got.items()}, seconds)
