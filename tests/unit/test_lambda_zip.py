"""The deployment zip rewrite: runtime packages dropped, unchecked bytecode that Python uses."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tools.deploy.lambda_zip import optimise, uses_unchecked_pycs


def _zip(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def test_drops_what_the_runtime_provides_and_keeps_the_rest(tmp_path: Path) -> None:
    zip_path = _zip(
        tmp_path / "deployment.zip",
        {
            "app.py": "VALUE = 42\n",
            "chalicelib/__init__.py": "",
            "botocore/__init__.py": "",
            "botocore-1.0.dist-info/METADATA": "x",
            "python_dateutil-2.9.0.dist-info/METADATA": "x",
            "dateutil/__init__.py": "",
            "six.py": "",
            "jwt/__init__.py": "",
            "aws_xray_sdk/__init__.py": "",
        },
    )
    report = optimise(zip_path)
    names = set(zipfile.ZipFile(zip_path).namelist())
    assert report["dropped_files"] == 5
    assert not any(n.startswith(("botocore", "dateutil", "python_dateutil", "six")) for n in names)
    assert {"app.py", "chalicelib/__init__.py", "jwt/__init__.py", "aws_xray_sdk/__init__.py"} <= names
    assert uses_unchecked_pycs(zip_path)


def test_python_loads_the_shipped_bytecode_without_checking_the_source(tmp_path: Path) -> None:
    zip_path = optimise_and_extract = _zip(tmp_path / "deployment.zip", {"app.py": "VALUE = 42\n"})
    optimise(optimise_and_extract)
    code = tmp_path / "code"
    zipfile.ZipFile(zip_path).extractall(code)
    # Change the source behind the pyc's back: an unchecked pyc is still the one imported.
    (code / "app.py").write_text("VALUE = 7\n")
    out = subprocess.run(
        [sys.executable, "-c", "import app; print(app.VALUE)"],
        cwd=code,
        env={"PYTHONPATH": str(code), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "42"


def test_a_zip_of_sources_only_is_reported(tmp_path: Path) -> None:
    assert not uses_unchecked_pycs(_zip(tmp_path / "d.zip", {"app.py": "X = 1\n"}))
