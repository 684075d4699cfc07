"""The deployment package imports on its own, as Lambda would run it.

MiniStack runs the functions with its own virtualenv's interpreter, which also holds
packages the zip may lack; so each handler is imported here from the unzipped package,
in a fresh interpreter that sees only the standard library, the package and boto3
(which the Lambda runtime provides).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deployed.stage import Deployment, packaged_template

# What the Lambda Python runtime provides besides the standard library.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")

IMPORT_HANDLER = """
import importlib, sys
module_name, _, attribute = sys.argv[1].rpartition(".")
handler = getattr(importlib.import_module(module_name), attribute)
assert callable(handler), sys.argv[1]
print(handler.__module__ if hasattr(handler, "__module__") else "")
"""


def _runtime_dir(tmp: Path) -> Path:
    """A directory holding boto3 and its dependencies only (symlinks into our virtualenv)."""
    runtime = tmp / "runtime"
    runtime.mkdir()
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec and spec.origin, name
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (runtime / source.name).symlink_to(source)
    return runtime


@pytest.fixture(scope="module")
def unzipped(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("lambda")
    code = tmp / "code"
    with zipfile.ZipFile(deployment.build_dir / "deployment.zip") as zf:
        zf.extractall(code)
    return code, _runtime_dir(tmp)


def test_every_handler_imports_from_the_zip_with_only_boto3_beside_it(
    deployment: Deployment, unzipped: tuple[Path, Path]
) -> None:
    code, runtime = unzipped
    handlers = {
        name: r["Properties"]["Handler"]
        for name, r in packaged_template(deployment)["Resources"].items()
        if r["Type"] == "AWS::Serverless::Function"
    }
    assert set(handlers) == {
        "APIHandler",
        "TokenAuthorizer",
        "DeclineWorker",
        "SettleDueJobs",
        "TableStream",
        "MailWorker",
    }
    # The stream and mail functions import their modules on their first event: check those too.
    for lazy in (
        "chalicelib.stream.handle_stream_batch",
        "chalicelib.mail_worker.handle_mail_batch",
        "chalicelib.bus.EventBridgeBus",
        "chalicelib.ses.SesSender",
    ):
        handlers[f"lazy {lazy}"] = lazy
    for name, handler in handlers.items():
        # -I: no user site, no PYTHON* variables; -S: no site-packages. PYTHONPATH-free sys.path.
        script = f"import sys; sys.path[:0] = [{str(code)!r}, {str(runtime)!r}]\n" + IMPORT_HANDLER
        proc = subprocess.run(  # noqa: S603 - our interpreter, fixed script
            [sys.executable, "-I", "-S", "-c", script, handler],
            cwd=code,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, f"{name} ({handler}) does not import from the package:\n{proc.stderr}"


def test_the_check_notices_a_missing_dependency(unzipped: tuple[Path, Path], tmp_path: Path) -> None:
    # The same check on a package that imports something neither it nor the runtime has.
    _, runtime = unzipped
    (tmp_path / "app.py").write_text("import jwt\n\ndef handler(event, context):\n    return {}\n")
    script = f"import sys; sys.path[:0] = [{str(tmp_path)!r}, {str(runtime)!r}]\n" + IMPORT_HANDLER
    proc = subprocess.run(  # noqa: S603
        [sys.executable, "-I", "-S", "-c", script, "app.handler"], capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0
    assert "No module named 'jwt'" in proc.stderr
