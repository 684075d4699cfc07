"""The stage's page-token key in SSM Parameter Store: created on first deploy, never overwritten.

``/booking/<stage>/page-token-secret``, a SecureString under the AWS-managed key
``aws/ssm``, holding ``secrets.token_urlsafe(48)``. The API function reads it
(chalicelib/page_token_keys.py) with ``ssm:GetParameter`` on that one ARN
(``.chalice/policy-<stage>-api.json``). CloudFormation cannot create a SecureString,
so the deploy command does, before the stack; ``destroy`` deletes it.

``make rotate-page-token-key`` replaces it (tools/ops/page_token_key.py).
"""

from __future__ import annotations

import secrets
from typing import Any

from botocore.exceptions import ClientError

from tools.deploy.settings import APP_NAME, DeployError
from tools.shared import Printer, say


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
