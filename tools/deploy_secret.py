"""The stage's page-token key in SSM Parameter Store: created on first deploy, never overwritten.

``/booking/<stage>/page-token-secret``, a SecureString under the AWS-managed key
``aws/ssm``, holding ``secrets.token_urlsafe(48)``. The API function reads it
(chalicelib/page_token_keys.py) with ``ssm:GetParameter`` on that one ARN
(``.chalice/policy-<stage>-api.json``). CloudFormation cannot create a SecureString,
so the deploy command does, before the stack; ``destroy`` deletes it.

``rotate_page_token_key`` replaces it in two steps (see chalicelib/page_token_keys.py): a new key
is first accepted (``next``), then, at least the containers' max age later, signs
(``current``, the old one kept as ``previous``), so no client's paging breaks.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from tools.deploy_settings import APP_NAME, DeployError, Printer, say


def parameter_name(stage: str) -> str:
    from chalicelib.page_token_keys import parameter_name as name

    return name(stage)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def ensure_page_token_key(ssm: Any, stage: str, *, out: Printer = say) -> bool:
    """Creates the key when missing; True when it did. An existing one is kept as it is."""
    name = parameter_name(stage)
    try:
        existing = ssm.get_parameter(Name=name, WithDecryption=False)["Parameter"]
    except ClientError as exc:
        if _code(exc) != "ParameterNotFound":
            raise DeployError(f"cannot read SSM parameter {name}: {exc}") from exc
        existing = None
    if existing is not None:
        if existing.get("Type") != "SecureString":
            raise DeployError(
                f"SSM parameter {name} is a {existing.get('Type')}, not a SecureString: delete it "
                f"(aws ssm delete-parameter --name {name}) and deploy again to get a new key"
            )
        out(f"    page-token key {name}: exists, kept")
        return False
    try:
        ssm.put_parameter(
            Name=name,
            Description=f"Signs the page tokens (nextToken) of stage {stage}",
            Value=secrets.token_urlsafe(48),
            Type="SecureString",
            Overwrite=False,
            Tags=[{"Key": "app", "Value": APP_NAME}, {"Key": "stage", "Value": stage}],
        )
    except ClientError as exc:
        if _code(exc) == "ParameterAlreadyExists":  # another deploy got there first: keep its key
            out(f"    page-token key {name}: created meanwhile by another run, kept")
            return False
        raise DeployError(f"cannot create SSM parameter {name}: {exc}") from exc
    out(f"    page-token key {name}: created (SecureString, a new random key)")
    return True


def delete_page_token_key(ssm: Any, stage: str, *, out: Printer = say) -> bool:
    name = parameter_name(stage)
    try:
        ssm.delete_parameter(Name=name)
    except ClientError as exc:
        if _code(exc) == "ParameterNotFound":
            out(f"    no page-token key {name}")
            return False
        raise
    out(f"    deleted page-token key {name} (a new deploy makes a new one; older nextTokens stop working)")
    return True


def rotate_page_token_key(
    ssm: Any, stage: str, *, force: bool = False, now: datetime | None = None, out: Printer = say
) -> str:
    """One step of a rotation; returns ``"accepting"`` (step 1 done) or ``"signing"`` (step 2 done)."""
    from chalicelib.page_token_keys import MAX_AGE_SECONDS, parse_keys

    name = parameter_name(stage)
    try:
        parameter = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    except ClientError as exc:
        raise DeployError(f"cannot read SSM parameter {name} (deploy the stage first): {exc}") from exc
    keys = parse_keys(parameter["Value"])
    value = json.loads(parameter["Value"]) if parameter["Value"].lstrip().startswith("{") else {}
    pending = value.get("next")
    if not pending:
        new = {"current": keys.signing, "next": secrets.token_urlsafe(48)}
        _overwrite(ssm, name, new)
        out(
            f"    page-token key {name}: a new key is now accepted (step 1 of 2). Within "
            f"{MAX_AGE_SECONDS} s every container accepts it; then run this again to sign with it."
        )
        return "accepting"
    modified = parameter.get("LastModifiedDate")
    age = ((now or datetime.now(UTC)) - modified).total_seconds() if isinstance(modified, datetime) else None
    if not force and (age is None or age < MAX_AGE_SECONDS):
        raise DeployError(
            f"step 1 was {age:.0f} s ago; wait until {MAX_AGE_SECONDS} s have passed, so that every "
            "container accepts the new key before any signs with it (or --force)"
            if age is not None
            else "cannot tell when step 1 happened; pass --force once every container has had time to re-read"
        )
    _overwrite(ssm, name, {"current": pending, "previous": keys.signing})
    out(f"    page-token key {name}: the new key signs, the old one is still accepted (step 2 of 2)")
    return "signing"


def _overwrite(ssm: Any, name: str, value: dict[str, str]) -> None:
    try:
        ssm.put_parameter(Name=name, Value=json.dumps(value), Type="SecureString", Overwrite=True)
    except ClientError as exc:
        raise DeployError(f"cannot write SSM parameter {name}: {exc}") from exc
