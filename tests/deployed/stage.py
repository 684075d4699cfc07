"""The deployed stage as the tests see it: how to deploy it, where it answers, its clients."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from tools.local import ministack

ROOT = Path(__file__).resolve().parents[2]
STAGE = "dev"  # the emulator is the whole account: the real dev settings, nothing shared
REGION = "us-east-1"
# Short, so that a failed decline comes back within seconds and the poison test stays short.
VISIBILITY_SECONDS = 3
DEPLOY_TIMEOUT_SECONDS = 300

# Figures printed at the end of the session (deploy timings, latencies through API Gateway).
FIGURES: list[str] = []


def deploy_environment(endpoint: str) -> dict[str, str]:
    """What a developer exports to deploy to the emulator; nothing of their own AWS settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_REGION": REGION,
            # No credentials or config files of the developer's: the dummy ones above only.
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_CONFIG_FILE": os.devnull,
        }
    )
    return env


@dataclass
class DeployRun:
    returncode: int
    output: str
    seconds: float


def run_make(endpoint: str, target: str, *args: str, stdin: str | None = None) -> DeployRun:
    """``make -s <target> STAGE=dev ...`` as a developer would run it against the emulator."""
    command = ["make", "-s", target, f"STAGE={STAGE}", *args]
    started = time.monotonic()
    proc = subprocess.run(  # noqa: S603 - fixed argv
        command,
        cwd=ROOT,
        env=deploy_environment(endpoint),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEPLOY_TIMEOUT_SECONDS,
        check=False,
    )
    return DeployRun(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started)


def run_make_deploy(endpoint: str, build_dir: Path, *params: str, smoke: bool = True) -> DeployRun:
    args = [f"DEPLOY_ARGS=--build-dir {build_dir}"]
    if params:
        args.append(f"PARAMS={' '.join(params)}")
    if not smoke:
        args.append("SMOKE=0")
    return run_make(endpoint, "deploy", *args)


@dataclass
class Deployment:
    endpoint: str
    outputs: dict[str, str]
    build_dir: Path
    first: DeployRun
    emulator: ministack.MiniStack
    clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = boto3.client(
                service,
                endpoint_url=self.endpoint,
                region_name=REGION,
                aws_access_key_id="local",
                aws_secret_access_key="local",
            )
        return self.clients[service]

    @property
    def api(self) -> str:
        return f"{self.endpoint}/_aws/execute-api/{self.outputs['RestAPIId']}/{self.outputs['ApiStageName']}"


def packaged_template(deployment: Deployment) -> dict[str, Any]:
    return json.loads((deployment.build_dir / "packaged.json").read_text())
