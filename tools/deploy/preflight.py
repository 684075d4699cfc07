"""Pre-flight: what would make a deploy fail late, or succeed into a broken stage, refused first.

Run by both deploy paths before anything is created (``python -m tools.deploy.preflight --stage
dev`` runs it alone). Each refusal names the setting and says what to do:

- a required value of the stage's configuration (``.chalice/config.json``) or of the
  template's parameters that is missing, empty or a placeholder (``REGION``,
  ``USER_POOL_ID``, ``APP_CLIENT_ID``, ``CHANGE_ME``, ``<...>``...);
- a page-token key written into config.json, or a parameter name other than the one the
  API's IAM policy grants;
- a pool of your own (``ExistingUserPoolId``) whose JWKS cannot be fetched or holds no RSA
  key: the authorizer would refuse every token;
- reserved concurrency (``reserved_concurrency``) the account cannot give: Lambda keeps at
  least 10 executions unreserved.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tools.deploy import cfn_stack
from tools.deploy.settings import (
    FUNCTIONS,
    NOT_DEPLOYABLE,
    DeployError,
    aws_session,
    emulated_cognito_base,
    function_name,
    stack_name,
)
from tools.deploy.templates import infrastructure_template
from tools.shared import ROOT, Printer, chalice_config, load_project_config, say, stage_environment

# Lambda refuses to reserve the account's last 10 concurrent executions.
MIN_UNRESERVED = 10
PAGE_TOKEN_PARAMETER_VARIABLE = "PAGE_TOKEN_SECRET_PARAMETER"  # noqa: S105 - a variable name
# Names in every function's environment (config.json) without which the app cannot start.
REQUIRED_ENV = ("TABLE_NAME", "DECLINES_QUEUE_NAME")
_PLACEHOLDER = re.compile(
    r"(?<![A-Za-z0-9])(REGION|USER_POOL_ID|APP_CLIENT_ID|ACCOUNT_ID|CHANGE_?ME|REPLACE_?ME|TODO|FIXME|XXX+)(?![A-Za-z0-9])"
    r"|<[^<>]*>|\$\{[^}]*\}"
)

Fetch = Callable[[str], bytes]


def page_token_parameter(stage: str) -> str:
    from chalicelib.page_token_keys import parameter_name

    return parameter_name(stage)


def placeholder(value: object) -> str | None:
    """Why a configured value is not a real one, or None."""
    text = "" if value is None else str(value)
    if not text.strip():
        return "is empty"
    found = _PLACEHOLDER.search(text)
    return f"is a placeholder ({found.group(0)})" if found else None


# ------------------------------------------------------------ configuration


def config_problems(stage: str, project_dir: Path = ROOT) -> list[str]:
    """What is wrong with the stage's part of .chalice/config.json (no AWS call)."""
    if stage in NOT_DEPLOYABLE:
        return [f"stage {stage!r} is for the local stack (`make local`), not for AWS"]
    problems: list[str] = []
    where = f".chalice/config.json stages.{stage}"
    for function in FUNCTIONS:
        env = stage_environment(stage, project_dir, function)
        for name in REQUIRED_ENV:
            if name not in env:
                problems.append(f"{where}: {name} is missing (function {function})")
        for name, value in sorted(env.items()):
            why = placeholder(value)
            if why:
                problems.append(f"{where}: environment variable {name} {why} (function {function}): set a real value")
        if "PAGE_TOKEN_SECRET" in env:
            problems.append(
                f"{where}: PAGE_TOKEN_SECRET is set (function {function}); a deployed stage keeps its key in SSM "
                f"({page_token_parameter(stage)}, created by the deploy): remove it from config.json"
            )
        cfg = chalice_config(stage, function, project_dir)
        if not cfg.autogen_policy:
            policy = project_dir / ".chalice" / str(cfg.iam_policy_file or "")
            if not cfg.iam_policy_file or not policy.is_file():
                problems.append(f"{where}.lambda_functions.{function}.iam_policy_file: {policy.name} does not exist")
    api = stage_environment(stage, project_dir, "api_handler")
    expected = page_token_parameter(stage)
    if api.get(PAGE_TOKEN_PARAMETER_VARIABLE) != expected:
        problems.append(
            f"{where}.lambda_functions.api_handler.environment_variables.{PAGE_TOKEN_PARAMETER_VARIABLE} is "
            f"{api.get(PAGE_TOKEN_PARAMETER_VARIABLE)!r}; it must be {expected!r} (the parameter the deploy creates "
            f"and policy-{stage}-api.json grants)"
        )
    return problems


def parameter_problems(
    given: Mapping[str, str], effective: Mapping[str, str], declared: Mapping[str, Any]
) -> list[str]:
    """Template parameters: unknown names, placeholders, a client without its pool."""
    problems = []
    for name in sorted(given):
        if name not in declared:
            problems.append(
                f"parameter {name} is not a parameter of the template (known: {', '.join(sorted(declared))})"
            )
    for name, value in sorted(effective.items()):
        if name not in declared:
            continue
        optional = "Default" in declared[name]
        why = placeholder(value)
        if why and not (optional and not str(value).strip()):
            problems.append(f"parameter {name} {why}: give a real value (--parameter {name}=...) or leave it out")
    if effective.get("ExistingAppClientId") and not effective.get("ExistingUserPoolId"):
        problems.append(
            "parameter ExistingAppClientId is set without ExistingUserPoolId: a client of your own needs "
            "its pool (--parameter ExistingUserPoolId=<region>_<id>)"
        )
    return problems


# ------------------------------------------------------------- user pool


def _http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - Cognito's https JWKS (or an emulator's)
        return resp.read(1 << 20)


def jwks_url(pool_id: str, region: str, base: str | None) -> str:
    return f"{(base or f'https://cognito-idp.{region}.amazonaws.com').rstrip('/')}/{pool_id}/.well-known/jwks.json"


def jwks_problems(pool_id: str, region: str, base: str | None, fetch: Fetch = _http_get) -> list[str]:
    """A pool of your own must serve a JWKS with an RSA key, or every token is refused."""
    url = jwks_url(pool_id, region, base)
    try:
        keys = json.loads(fetch(url)).get("keys")
    except Exception as exc:  # unreachable, 4xx/5xx, not JSON: all the same to the authorizer
        return [
            f"parameter ExistingUserPoolId={pool_id}: its JWKS {url} cannot be fetched ({type(exc).__name__}: "
            f"{str(exc)[:200]}); check the pool id and the region ({region})"
        ]
    if not isinstance(keys, list) or not any(isinstance(k, dict) and k.get("kty") == "RSA" for k in keys):
        return [
            f"parameter ExistingUserPoolId={pool_id}: its JWKS {url} holds no RSA key; the API could verify no token"
        ]
    return []


# ------------------------------------------------------------- concurrency


def reserved_concurrency(stage: str, project_dir: Path = ROOT) -> dict[str, int]:
    """Each function's ``reserved_concurrency`` in config.json (functions without one left out)."""
    wanted = {}
    for function in FUNCTIONS:
        value = chalice_config(stage, function, project_dir).reserved_concurrency
        if value is not None:
            wanted[function] = int(value)
    return wanted


def concurrency_problems(lambda_client: Any, stage: str, wanted: Mapping[str, int], app_name: str) -> list[str]:
    """Reserved concurrency must leave the account at least 10 unreserved executions.

    What our functions already reserve (an update) is given back before the check.
    """
    if not wanted:
        return []
    limit = lambda_client.get_account_settings()["AccountLimit"]
    unreserved = int(limit["UnreservedConcurrentExecutions"])
    already = 0
    for function in wanted:
        try:
            current = lambda_client.get_function_concurrency(FunctionName=function_name(app_name, stage, function))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            continue
        already += int(current.get("ReservedConcurrentExecutions") or 0)
    available = unreserved + already - MIN_UNRESERVED
    asked = sum(wanted.values())
    if asked <= available:
        return []
    settings = ", ".join(f"{fn} reserved_concurrency={n}" for fn, n in sorted(wanted.items()))
    return [
        f".chalice/config.json stages.{stage}: {settings} does not fit: the account has "
        f"{limit.get('ConcurrentExecutions', '?')} concurrent executions, {unreserved + already} of them free to "
        f"reserve, and AWS keeps {MIN_UNRESERVED} unreserved, so at most {max(available, 0)} can be reserved. "
        f"Ask for a higher Lambda 'Concurrent executions' quota (Service Quotas) or lower reserved_concurrency "
        f"(or remove it) in config.json"
    ]


# ----------------------------------------------------------------- run


def run(
    stage: str,
    *,
    session: Any,
    parameters: Mapping[str, str],
    previous: Mapping[str, str] | None = None,
    declared: Mapping[str, Any] | None = None,
    jwks_base: str | None = None,
    fetch: Fetch = _http_get,
    project_dir: Path = ROOT,
    out: Printer = say,
) -> None:
    """All checks; raises one DeployError listing every problem found."""
    problems = config_problems(stage, project_dir)
    if declared is None:
        declared = infrastructure_template(stage)["Parameters"]
    effective = {**(previous or {}), **parameters}
    problems += parameter_problems(parameters, effective, declared)
    pool = str(effective.get("ExistingUserPoolId") or "").strip()
    if pool and not placeholder(pool):
        base = str(effective.get("CognitoJwksBaseUrl") or "").strip() or jwks_base
        problems += jwks_problems(pool, session.region_name, base, fetch)
    if stage not in NOT_DEPLOYABLE:
        app_name = load_project_config(project_dir)["app_name"]
        try:
            problems += concurrency_problems(
                session.client("lambda"), stage, reserved_concurrency(stage, project_dir), app_name
            )
        except (ClientError, BotoCoreError) as exc:
            problems.append(f"cannot read the account's Lambda concurrency (lambda:GetAccountSettings): {exc}")
    if problems:
        raise DeployError(f"pre-flight refused stage {stage}:\n  - " + "\n  - ".join(problems))
    out("    pre-flight: configuration, parameters, user pool and concurrency OK")


def previous_parameters(cfn: Any, stack: str) -> dict[str, str]:
    """The parameters a stack was last deployed with (a new run keeps those it does not give)."""
    existing = cfn_stack.describe(cfn, stack) or {}
    return {p["ParameterKey"]: p.get("ParameterValue", "") for p in existing.get("Parameters", [])}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.deploy.preflight", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--parameter", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--offline", action="store_true", help="configuration only, no AWS call")
    args = parser.parse_args(argv)
    try:
        params = dict(p.split("=", 1) for p in args.parameter)
        if args.offline:
            problems = config_problems(args.stage)
            if problems:
                raise DeployError("pre-flight refused:\n  - " + "\n  - ".join(problems))
        else:
            session = aws_session()
            previous = previous_parameters(session.client("cloudformation"), stack_name(args.stage))
            run(
                args.stage,
                session=session,
                parameters=params,
                previous=previous,
                jwks_base=emulated_cognito_base(session),
            )
    except (DeployError, ValueError) as exc:
        print(f"pre-flight failed: {exc}", file=sys.stderr)
        return 1
    print("pre-flight OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
