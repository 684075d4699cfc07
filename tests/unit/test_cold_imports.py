"""What each function's cold start imports: only what its own path needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tools.shared import ROOT

_REPORT = "import json, sys; {body}; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {tops!r})))"
_HEAVY = {"jwt", "cryptography", "aws_xray_sdk", "aws_lambda_powertools"}


def _imported_after_top(body: str, top: str) -> set[str]:
    """The modules of package ``top`` loaded after ``body``."""
    return _imported_after(body, {top})


def _imported_after(body: str, tops: set[str] = _HEAVY) -> set[str]:
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": "us-east-1",
        "TABLE_NAME": "t",
        "DECLINES_QUEUE_NAME": "q",
        "POWERTOOLS_SERVICE_NAME": "booking",
    }
    code = _REPORT.format(body=body, tops=tops)
    out = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_app_leaves_token_verification_batching_and_tracing_for_later() -> None:
    loaded = _imported_after("import app")
    assert not {m for m in loaded if m.split(".")[0] in {"jwt", "cryptography", "aws_xray_sdk"}}
    # powertools' package imports its Tracer class, but not the X-Ray SDK behind it.
    assert not {m for m in loaded if m.startswith("aws_lambda_powertools.utilities.batch")}


def test_the_authorizer_path_imports_no_powertools_and_no_xray() -> None:
    loaded = _imported_after("import chalicelib.lambda_authorizer")
    assert "jwt" in loaded
    assert not {m for m in loaded if m.split(".")[0] in {"aws_xray_sdk", "aws_lambda_powertools"}}


def test_the_packaged_worker_path_imports_neither_chalice_nor_powertools_batching() -> None:
    loaded = _imported_after("import chalicelib.lambda_worker")
    assert "aws_lambda_powertools" in loaded  # its logger and metrics
    assert not {m for m in loaded if m.startswith("aws_lambda_powertools.utilities.batch")}
    assert not {m for m in loaded if m.split(".")[0] in {"jwt", "cryptography", "aws_xray_sdk"}}
    chalice = _imported_after_top("import chalicelib.lambda_worker", "chalice")
    assert not chalice
