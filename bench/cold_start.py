"""Cold start: what each Lambda function imports before it can answer, from the packaged zip.

Lambda imports ``app.py`` from the deployment package in a fresh interpreter that has
boto3 (the runtime's) and nothing else of ours. This part rebuilds that situation:
the zip ``make package`` writes, unzipped; an interpreter from a virtualenv holding
only boto3; no bytecode written (Lambda's code directory is read-only). For each
function it times, in a fresh interpreter each run:

- ``import app``, then the function's handler answering one event that needs no AWS
  call (a malformed token, a request refused before any read, an unreadable message), so
  imports deferred to a function's own path are counted where they happen;
- ``import boto3`` alone, the yardstick the targets are set against;
- ``import boto3`` and one DynamoDB client: what any function that declines an
  application must pay before its first call, whatever else it imports.

Medians of ``runs`` interpreters per function, interleaved so drift hits all alike.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RUNTIME_VENV = PROJECT_ROOT / ".local" / "lambda-runtime-venv"
# The boto3 the Lambda runtime brings (pinned like ours, so the figure does not move with PyPI).
RUNTIME_REQUIREMENTS = ("boto3==1.44.5", "botocore==1.44.5")

# One probe per function: the handler Lambda would call, and an event that needs no AWS call.
_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
if sys.argv[1] in ("boto3", "boto3_client"):
    import boto3
    import_ms = (time.perf_counter() - t0) * 1000
    if sys.argv[1] == "boto3_client":
        boto3.client("dynamodb")
    print(json.dumps({"import_ms": import_ms, "first_answer_ms": (time.perf_counter() - t0) * 1000}))
    raise SystemExit(0)
import importlib
module_name, _, attr = sys.argv[2].rpartition(".")
handler = getattr(importlib.import_module(module_name), attr)
import_ms = (time.perf_counter() - t0) * 1000

class Context:
    function_name = "cold-start"; memory_limit_in_mb = 512; aws_request_id = "cold-start-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:cold-start"
    def get_remaining_time_in_millis(self): return 10000

kind = sys.argv[1]
if kind == "api":
    event = {"resource": "/jobs/{job_id}", "path": "/jobs/x", "httpMethod": "GET", "headers": {},
             "multiValueHeaders": {}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
             "pathParameters": {"job_id": "not-an-id"}, "stageVariables": None, "body": None,
             "isBase64Encoded": False, "requestContext": {"resourcePath": "/jobs/{job_id}", "httpMethod": "GET",
             "requestId": "cold", "authorizer": {}}}
    answer = handler(event, Context())
elif kind == "authorizer":
    event = {"type": "TOKEN", "authorizationToken": "Bearer not-a-token",
             "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc/api/GET/jobs"}
    answer = handler(event, Context())
else:
    # One unreadable message: refused before any AWS call (all failed, so the batch raises).
    record = {"messageId": "m1", "receiptHandle": "r1", "body": "{}", "attributes": {"ApproximateReceiveCount": "1"},
              "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs", "awsRegion": "us-east-1",
              "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q"}
    try:
        answer = handler({"Records": [record]}, Context())
    except Exception:  # noqa: BLE001 - the answer does not matter, the imports on its way do
        answer = None
print(json.dumps({"import_ms": import_ms, "first_answer_ms": (time.perf_counter() - t0) * 1000}))
"""

FUNCTIONS = {"api": "API (api_handler)", "authorizer": "authorizer", "worker": "decline worker"}
# Chalice's handlers; a packaged template may give a function a leaner one of its own.
DEFAULT_HANDLERS = {"api": "app.app", "authorizer": "app.token_authorizer", "worker": "app.decline_worker"}
_LOGICAL_IDS = {"api": "APIHandler", "authorizer": "TokenAuthorizer", "worker": "DeclineWorker"}


def handlers_of(template_path: Path) -> dict[str, str]:
    """Each function's ``Handler`` as the packaged template (sam.json) sets it."""
    resources = json.loads(template_path.read_text(encoding="utf-8")).get("Resources", {})
    found = dict(DEFAULT_HANDLERS)
    for kind, logical in _LOGICAL_IDS.items():
        handler = resources.get(logical, {}).get("Properties", {}).get("Handler")
        if handler:
            found[kind] = handler
    return found


# Values the template computes at deploy time (Fn::Sub on the user pool); any valid shape does here.
_DEPLOY_TIME_VALUES = {
    "AUTH_ISSUER": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_coldstart",
    "AUTH_AUDIENCE": "coldstartclient",
    "AUTH_JWKS_URL": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_coldstart/.well-known/jwks.json",
}


def environment_of(template_path: Path, kind: str) -> dict[str, str]:
    """A function's environment from the packaged template; deploy-time expressions get stand-ins."""
    resources = json.loads(template_path.read_text(encoding="utf-8")).get("Resources", {})
    props = resources.get(_LOGICAL_IDS[kind], {}).get("Properties", {})
    variables = props.get("Environment", {}).get("Variables", {})
    return {k: v if isinstance(v, str) else _DEPLOY_TIME_VALUES.get(k, "deploy-time") for k, v in variables.items()}


def runtime_python() -> Path:
    """A virtualenv with only boto3, as the Lambda runtime has; made on first use."""
    stamp = RUNTIME_VENV / (".installed-" + "-".join(RUNTIME_REQUIREMENTS).replace("=", ""))
    python = RUNTIME_VENV / "bin" / "python"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(RUNTIME_VENV)], check=True)  # noqa: S603
        subprocess.run(  # noqa: S603
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *RUNTIME_REQUIREMENTS],
            check=True,
        )
        stamp.touch()
    return python


def function_environment(code_dir: Path, stage_env: dict[str, str]) -> dict[str, str]:
    """What Lambda gives a function: its stage variables, its markers, dummy credentials."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(code_dir),
        "PYTHONDONTWRITEBYTECODE": "1",  # the code directory is read-only on Lambda
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "cold",
        "AWS_SECRET_ACCESS_KEY": "cold",
        "AWS_LAMBDA_FUNCTION_NAME": "cold-start",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "LAMBDA_TASK_ROOT": str(code_dir),
        # No daemon to send traces to here; the tracer's imports still happen.
        "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
    }
    env.update(stage_env)
    return env


def _probe(python: Path, code_dir: Path, env: dict[str, str], kind: str, handler: str = "") -> dict[str, float]:
    if kind.startswith("boto3"):  # the runtime's boto3 alone: nothing of the zip on the path
        env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "LAMBDA_TASK_ROOT")}
        code_dir = code_dir.parent
    proc = subprocess.run(  # noqa: S603 - our own probe
        [str(python), "-c", _PROBE, kind, handler],
        cwd=code_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"cold-start probe {kind} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def zip_contents(zip_path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
    return {
        "files": len(names),
        "pyc_files": sum(n.endswith(".pyc") for n in names),
        "bundles_botocore": any(n.startswith("botocore/") for n in names),
        "size_bytes": zip_path.stat().st_size,
    }


def measure(zip_path: Path, template_path: Path, runs: int = 5) -> dict[str, Any]:
    """Cold starts of the package ``chalice package`` wrote (deployment.zip beside sam.json)."""
    handlers = handlers_of(template_path)
    python = runtime_python()
    code_dir = Path(tempfile.mkdtemp(prefix="cold-start-"))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(code_dir)
        envs = {kind: function_environment(code_dir, environment_of(template_path, kind)) for kind in FUNCTIONS}
        envs["boto3"] = envs["boto3_client"] = function_environment(code_dir, {})
        samples: dict[str, list[dict[str, float]]] = {k: [] for k in ("boto3", "boto3_client", *FUNCTIONS)}
        for _ in range(runs):
            for kind in samples:
                samples[kind].append(_probe(python, code_dir, envs[kind], kind, handlers.get(kind, "")))
    finally:
        shutil.rmtree(code_dir, ignore_errors=True)
    boto3_ms = statistics.median(s["import_ms"] for s in samples["boto3"])
    client_ms = statistics.median(s["first_answer_ms"] for s in samples["boto3_client"])
    result: dict[str, Any] = {
        "runs": runs,
        "zip": zip_contents(zip_path),
        "boto3_import_ms": boto3_ms,
        "boto3_and_dynamodb_client_ms": client_ms,
    }
    result["functions"] = {
        kind: {
            "label": FUNCTIONS[kind],
            "handler": handlers[kind],
            "import_ms": statistics.median(s["import_ms"] for s in samples[kind]),
            "first_answer_ms": statistics.median(s["first_answer_ms"] for s in samples[kind]),
            "samples": samples[kind],
        }
        for kind in FUNCTIONS
    }
    for entry in result["functions"].values():
        entry["x_boto3"] = entry["first_answer_ms"] / boto3_ms
        entry["x_boto3_client"] = entry["first_answer_ms"] / client_ms
    return result
