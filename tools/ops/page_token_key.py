"""One step of replacing a stage's page-token key in SSM (``python -m tools.ops rotate-page-token-key``).

Two steps (see chalicelib/page_token_keys.py): a new key is first accepted (``next``), then,
at least the containers' max age later, signs (``current``, the old one kept as ``previous``),
so no client's paging breaks.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.page_token_keys import MAX_AGE_SECONDS, parameter_name, parse_keys
from tools.shared import Printer, ToolError, say


def rotate_page_token_key(
    ssm: Any, stage: str, *, force: bool = False, now: datetime | None = None, out: Printer = say
) -> str:
    """One step of a rotation; returns ``"accepting"`` (step 1 done) or ``"signing"`` (step 2 done)."""
    name = parameter_name(stage)
    try:
        parameter = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    except ClientError as exc:
        raise ToolError(f"cannot read SSM parameter {name} (deploy the stage first): {exc}") from exc
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
        raise ToolError(
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
        raise ToolError(f"cannot write SSM parameter {name}: {exc}") from exc
