"""Makes the deployment zip Chalice builds start faster on Lambda.

Two things cost a cold start there, both fixed after ``chalice package`` has written
``deployment.zip``:

- **No bytecode.** Lambda's code directory is read-only, so a zip of sources is
  compiled on every cold start. Every module is compiled here into ``__pycache__``
  with unchecked-hash pycs (PEP 552): Python loads them without comparing them to the
  sources, whose timestamps a zip does not keep faithfully anyway.
- **A second botocore.** aws-xray-sdk (pulled in by powertools' tracer) depends on
  botocore, so Chalice bundles one, which then shadows the runtime's own boto3 stack.
  The packages the Python runtime already provides are dropped from the zip.

The zip's Python version must be the runtime's: Chalice sets the function runtime
from the interpreter that runs it, and this module compiles with the same one.
"""

from __future__ import annotations

import importlib.util
import py_compile
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

# Provided by Lambda's Python runtime (boto3 and its dependencies): import names, then distribution names.
RUNTIME_MODULES = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six"})
RUNTIME_DISTRIBUTIONS = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "urllib3", "six"})


def _provided(name: str) -> bool:
    """Whether a zip member belongs to a package the runtime provides."""
    first = name.split("/", 1)[0]
    if first.endswith(".dist-info"):
        return first.split("-", 1)[0].lower().replace("_", "-") in RUNTIME_DISTRIBUTIONS
    return first.removesuffix(".py") in RUNTIME_MODULES


def optimise(zip_path: Path) -> dict[str, int]:
    """Rewrites ``zip_path`` in place; returns what it dropped and compiled."""
    dropped = compiled = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "code"
        with zipfile.ZipFile(zip_path) as zf:
            members = zf.infolist()
            for info in members:
                if _provided(info.filename):
                    dropped += 1
                    continue
                zf.extract(info, root)
        tag = sys.implementation.cache_tag
        for source in sorted(root.rglob("*.py")):
            target = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
            try:
                py_compile.compile(
                    str(source),
                    cfile=str(target),
                    dfile=str(source.relative_to(root)),
                    doraise=True,
                    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
                )
            except py_compile.PyCompileError:
                continue  # e.g. a template file with a .py name: Python would not import it either
            compiled += 1
        new_zip = Path(tmp) / "deployment.zip"
        with zipfile.ZipFile(new_zip, "w", compression=zipfile.ZIP_DEFLATED) as out:
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    info = zipfile.ZipInfo.from_file(path, str(path.relative_to(root)))
                    # Readable by the runtime's user, as Chalice's own zip is.
                    info.external_attr = (0o755 if path.stat().st_mode & 0o111 else 0o644) << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    out.writestr(info, path.read_bytes())
        shutil.move(str(new_zip), zip_path)
    return {"dropped_files": dropped, "compiled_modules": compiled}


def uses_unchecked_pycs(zip_path: Path) -> bool:
    """Whether every ``.py`` in the zip has an unchecked-hash pyc beside it."""
    tag = sys.implementation.cache_tag
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        sources = [n for n in names if n.endswith(".py")]
        for source in sources:
            folder, _, file = source.rpartition("/")
            pyc = f"{folder + '/' if folder else ''}__pycache__/{file[:-3]}.{tag}.pyc"
            if pyc not in names:
                return False
            flags = int.from_bytes(zf.read(pyc)[4:8], "little")
            if flags != 0b01:  # hash-based, check_source off
                return False
    return bool(sources) and importlib.util.MAGIC_NUMBER is not None
