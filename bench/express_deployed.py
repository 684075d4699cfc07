"""Part 7 on the emulated account: the Express workflow beside our *deployed* API.

The default part 7 books through ``chalice local``; this books through what ``make deploy``
creates on MiniStack: API Gateway, the authorizer and the API function (run by the
emulator's Lambda), the stage's own user pool for the token, and the deployed worker
draining the queue. The state machine is created on the same emulator, against the
deployed table and queue, and the bookings alternate as in the default run.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3

from bench.express_workflow import Target, _api_booker, compare
from bench.stack import clean_env
from tools.deploy import pool_users
from tools.local import ministack
from tools.shared import ROOT, stage_environment

STAGE = "dev"
REGION = "us-east-1"
DEPLOY_TIMEOUT_S = 300


def run(workdir: Path, say: Callable[[str], None], bookings: int = 20, apps_per_job: int = 5) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    # MiniStack's Lambda runs a function with the emulator's own environment under its
    # own, and this process carries the local stage's (AUTH_* and the rest): start it without.
    with _without(set(stage_environment("local"))):
        emulator = ministack.start(state_dir=workdir / "ministack-state", log_path=workdir / "ministack-deployed.log")
    try:
        seconds = _deploy(emulator.endpoint, workdir / "build", workdir / "deploy.log")
        say(f"  part 7: the stage deployed on MiniStack in {seconds:.1f} s ({emulator.endpoint})")
        client = _clients(emulator.endpoint)
        stack = client("cloudformation").describe_stacks(StackName=f"booking-{STAGE}")["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        api = f"{emulator.endpoint}/_aws/execute-api/{outputs['RestAPIId']}/{outputs['ApiStageName']}"
        owner, token, sub = _parent(client("cognito-idp"), outputs)
        target = Target(
            client("dynamodb"), client("sqs"), outputs["TableName"], outputs["DeclinesQueueUrl"], emulator.endpoint
        )
        headers = {"Authorization": f"Bearer {token}"}
        result = compare(
            target,
            _api_booker(api, headers),
            owner,
            lambda name: sub if name == owner else f"bench-{name}",
            say,
            bookings,
            apps_per_job,
        )
        return result | {"deployed": True, "deploy_seconds": round(seconds, 1)}
    finally:
        emulator.stop()


@contextlib.contextmanager
def _without(names: set[str]) -> Iterator[None]:
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _clients(endpoint: str) -> Callable[[str], Any]:
    made: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in made:
            made[service] = boto3.client(
                service,
                endpoint_url=endpoint,
                region_name=REGION,
                aws_access_key_id="local",
                aws_secret_access_key="local",  # noqa: S106 - the emulator accepts anything
            )
        return made[service]

    return client


def _deploy(endpoint: str, build_dir: Path, log: Path) -> float:
    """``python -m tools.deploy deploy --stage dev --no-smoke`` into the emulator, as ``make deploy`` runs it."""
    # Nothing of the local stage the bench runs under (its AUTH_*, table and queue names):
    # the deploy reads the dev stage's own settings.
    local = set(stage_environment("local"))
    env = {k: v for k, v in clean_env().items() if not k.startswith("AWS_") and k not in local}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",  # noqa: S106 - the emulator accepts anything
        AWS_REGION=REGION,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_CONFIG_FILE=os.devnull,
    )
    command = [sys.executable, "-m", "tools.deploy", "deploy", "--stage", STAGE, "--no-smoke"]
    command += ["--build-dir", str(build_dir)]
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(  # noqa: S603 - fixed argv
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=DEPLOY_TIMEOUT_S, check=False
        )
    if proc.returncode != 0:
        raise RuntimeError(f"deploying the stage failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    return time.monotonic() - started


def _parent(idp: Any, outputs: dict[str, str]) -> tuple[str, str, str]:
    """A parent in the stage's pool, with an address for its notifications: (username, ID token, sub)."""
    user = pool_users.sign_up(
        idp, outputs["UserPoolId"], outputs["AdminClientId"], "parents", prefix="bench", email=True
    )
    return user.username, user.token, user.sub
