"""A smoke test of a deployed stage: ``make smoke STAGE=dev`` (``python -m tools.deploy.smoke --stage dev``).

Finds the stage from its CloudFormation outputs (the packaged stack ``booking-<stage>``,
or the chalice path's ``booking-resources-<stage>`` and ``.chalice/deployed/<stage>.json``),
honouring ``AWS_ENDPOINT_URL`` like every deploy command. Then, through API Gateway:

1. throwaway users in the stage's pool (a parent, three nannies: AdminCreateUser, a
   permanent password, the group) and their ID tokens (``ADMIN_USER_PASSWORD_AUTH`` on
   the stage's admin client);
2. 401 without a token, 403 with a forged one;
3. create a job → three applications → book one → wait until the worker has declined
   the two others (GET the applications) → page them one at a time (a signed nextToken);
4. a table of each step's latency. The users are deleted whatever happens; the job
   stays in the table (closed, titled "smoke test"). Exit status 1 names the failed step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from tools.deploy import cfn_stack, pool_users
from tools.deploy.settings import DeployError, aws_session, resources_stack_name, stack_name
from tools.shared import ROOT, Printer, say

DECLINES_TIMEOUT_SECONDS = 60.0
NANNIES = 3


class SmokeFailure(Exception):
    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step, self.detail = step, detail


@dataclass
class Target:
    stage: str
    api: str  # base URL, no trailing slash
    pool_id: str
    admin_client_id: str


@dataclass
class Step:
    name: str
    ok: bool
    ms: float
    detail: str = ""


@dataclass
class Answer:
    status: int
    body: Any
    ms: float


def _is_aws(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws"))


def find_target(stage: str, session: Any, project_dir: Path = ROOT) -> Target:
    """The stage's API and pool, from what its deploy left in CloudFormation."""
    cfn = session.client("cloudformation")
    outputs = cfn_stack.outputs(cfn_stack.describe(cfn, stack_name(stage)))
    if outputs.get("RestAPIId"):
        apigw = session.client("apigateway").meta.endpoint_url.rstrip("/")
        if _is_aws(apigw):
            api = outputs["EndpointURL"]
        else:  # an emulator: MiniStack serves the stage under its own endpoint
            api = f"{apigw}/_aws/execute-api/{outputs['RestAPIId']}/{outputs['ApiStageName']}"
    else:
        outputs = cfn_stack.outputs(cfn_stack.describe(cfn, resources_stack_name(stage)))
        deployed = project_dir / ".chalice" / "deployed" / f"{stage}.json"
        api = ""
        if deployed.exists():
            for resource in json.loads(deployed.read_text(encoding="utf-8")).get("resources", []):
                if resource.get("resource_type") == "rest_api":
                    api = resource.get("rest_api_url", "")
        if not outputs or not api:
            raise SmokeFailure(
                "find the stage",
                f"neither stack {stack_name(stage)} nor {resources_stack_name(stage)} "
                "with a recorded API: deploy first",
            )
    if not outputs.get("AdminClientId"):
        raise SmokeFailure(
            "find the stage",
            "the stage has no admin client (a pool of your own, ExistingUserPoolId): smoke signs users in with "
            "ADMIN_USER_PASSWORD_AUTH on the stage's admin client",
        )
    return Target(stage, api.rstrip("/"), outputs["UserPoolId"], outputs["AdminClientId"])


def http(target: Target, method: str, path: str, token: str | None = None, body: Any = None) -> Answer:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(target.api + path, data=data, method=method, headers=headers)  # noqa: S310
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - the stage's API
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    ms = (time.perf_counter() - started) * 1000
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")[:200]
    return Answer(status, parsed, ms)


@dataclass
class Users:
    idp: Any
    pool_id: str
    created: list[str] = field(default_factory=list)

    def sign_up(self, target: Target, group: str) -> tuple[str, str]:
        user = pool_users.sign_up(self.idp, self.pool_id, target.admin_client_id, group, prefix="smoke")
        self.created.append(user.username)
        return user.username, user.token

    def remove_all(self, out: Printer) -> list[str]:
        left = []
        for username in self.created:
            try:
                self.idp.admin_delete_user(UserPoolId=self.pool_id, Username=username)
            except (ClientError, BotoCoreError) as exc:
                left.append(f"{username} ({exc})")
        if left:
            out(f"    could not delete users: {', '.join(left)}")
        return left


def _expect(step: str, answer: Answer, status: int) -> Answer:
    if answer.status != status:
        raise SmokeFailure(step, f"expected {status}, got {answer.status}: {answer.body}")
    return answer


def scenario(target: Target, users: Users, record: Callable[[Step], None], timeout: float) -> None:
    """The steps, in order; each one recorded, the first failure raised."""

    def timed(name: str, fn: Callable[[], tuple[float, str]]) -> None:
        try:
            ms, detail = fn()
        except SmokeFailure as exc:
            record(Step(name, False, 0.0, exc.detail))
            raise
        except (ClientError, BotoCoreError, OSError, KeyError, ValueError) as exc:
            record(Step(name, False, 0.0, f"{type(exc).__name__}: {exc}"))
            raise SmokeFailure(name, f"{type(exc).__name__}: {exc}") from exc
        record(Step(name, True, ms, detail))

    tokens: dict[str, Any] = {}

    def sign_up() -> tuple[float, str]:
        started = time.perf_counter()
        tokens["parent"] = users.sign_up(target, "parents")
        tokens["nannies"] = [users.sign_up(target, "nannies") for _ in range(NANNIES)]
        return (time.perf_counter() - started) * 1000, f"1 parent, {NANNIES} nannies"

    timed(f"sign up {NANNIES + 1} users", sign_up)
    parent = tokens["parent"][1]
    timed("no token -> 401", lambda: (_expect("no token -> 401", http(target, "GET", "/jobs"), 401).ms, ""))

    def forged() -> tuple[float, str]:
        header, payload, signature = parent.split(".")
        answer = http(target, "GET", "/jobs", f"{header}.{payload}.{signature[::-1]}")
        return _expect("forged token -> 403", answer, 403).ms, ""

    timed("forged token -> 403", forged)
    state: dict[str, Any] = {}

    def create() -> tuple[float, str]:
        day = datetime.now(UTC).date() + timedelta(days=3)
        job = {"title": "smoke test", "startsAt": f"{day}T18:00:00Z", "endsAt": f"{day}T20:00:00Z"}
        answer = _expect("create job", http(target, "POST", "/jobs", parent, job), 201)
        state["job"] = answer.body["jobId"]
        return answer.ms, state["job"]

    timed("create job", create)
    state["applications"] = []
    for i, (_, nanny) in enumerate(tokens["nannies"], start=1):

        def apply(nanny: str = nanny, name: str = f"apply {i}/{NANNIES}") -> tuple[float, str]:
            answer = http(target, "POST", f"/jobs/{state['job']}/applications", nanny, {"message": "smoke"})
            state["applications"].append(_expect(name, answer, 201).body["applicationId"])
            return answer.ms, ""

        timed(f"apply {i}/{NANNIES}", apply)

    def book() -> tuple[float, str]:
        choice = {"applicationId": state["applications"][0]}
        answer = _expect("book", http(target, "POST", f"/jobs/{state['job']}/book", parent, choice), 200)
        if answer.body.get("declinesQueued") != NANNIES - 1:
            raise SmokeFailure("book", f"expected {NANNIES - 1} declines queued: {answer.body}")
        return answer.ms, f"{NANNIES - 1} declines queued"

    timed("book", book)

    def declines() -> tuple[float, str]:
        started, polls = time.perf_counter(), 0
        while True:
            polls += 1
            answer = _expect("declines applied", http(target, "GET", f"/jobs/{state['job']}/applications", parent), 200)
            statuses = sorted(a["status"] for a in answer.body["items"])
            if statuses == ["ACCEPTED"] + ["DECLINED"] * (NANNIES - 1):
                return (time.perf_counter() - started) * 1000, f"after {polls} GETs"
            if time.perf_counter() - started > timeout:
                raise SmokeFailure("declines applied", f"still {statuses} after {timeout:.0f} s")
            time.sleep(0.25)

    timed("declines applied", declines)

    def page() -> tuple[float, str]:
        path = f"/jobs/{state['job']}/applications?limit=1"
        first = _expect("page with nextToken", http(target, "GET", path, parent), 200)
        token = first.body.get("nextToken")
        if not token:
            raise SmokeFailure("page with nextToken", f"no nextToken on a page of 1 of {NANNIES}: {first.body}")
        second = _expect(
            "page with nextToken", http(target, "GET", f"{path}&nextToken={urllib.request.quote(token)}", parent), 200
        )
        if second.body["items"] == first.body["items"]:
            raise SmokeFailure("page with nextToken", "the second page repeats the first")
        return first.ms + second.ms, "2 pages"

    timed("page with nextToken", page)


def table(steps: list[Step]) -> str:
    width = max([len(s.name) for s in steps] + [4])
    lines = [f"{'step':<{width}}  result  {'ms':>7}  detail", f"{'-' * width}  ------  {'-' * 7}  ------"]
    for s in steps:
        ms = f"{s.ms:7.0f}" if s.ok else f"{'-':>7}"
        lines.append(f"{s.name:<{width}}  {'ok' if s.ok else 'FAILED':<6}  {ms}  {s.detail}")
    return "\n".join(lines)


def smoke(
    stage: str,
    *,
    session: Any = None,
    timeout: float = DECLINES_TIMEOUT_SECONDS,
    project_dir: Path = ROOT,
    out: Printer = say,
) -> list[Step]:
    """Runs the scenario against the deployed stage; raises SmokeFailure naming the step."""
    session = session or aws_session()
    steps: list[Step] = []
    out(f"==> smoke test of stage {stage}")
    try:
        target = find_target(stage, session, project_dir)
    except (ClientError, BotoCoreError) as exc:
        raise SmokeFailure("find the stage", str(exc)) from exc
    out(f"    API {target.api}, user pool {target.pool_id}")
    users = Users(session.client("cognito-idp"), target.pool_id)
    try:
        scenario(target, users, steps.append, timeout)
    finally:
        left = users.remove_all(out)
        steps.append(Step(f"delete {len(users.created)} users", not left, 0.0, "; ".join(left)))
        out(table(steps))
    if left:
        raise SmokeFailure(steps[-1].name, "some users are left in the pool")
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.deploy.smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--timeout", type=float, default=DECLINES_TIMEOUT_SECONDS, help="for the declines (s)")
    args = parser.parse_args(argv)
    try:
        smoke(args.stage, timeout=args.timeout)
    except SmokeFailure as exc:
        print(f"\nsmoke failed at step '{exc.step}': {exc.detail}", file=sys.stderr)
        return 1
    except DeployError as exc:
        print(f"\nsmoke failed: {exc}", file=sys.stderr)
        return 1
    print(f"smoke test of stage {args.stage} passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
