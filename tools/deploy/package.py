"""``chalice package --merge-template``: one SAM template with the app, table, queues and identity,
its deployment.zip optimised for cold starts, checked by cfn-lint (the merge itself: templates.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3

from tools.deploy import lambda_zip
from tools.deploy.chalice_cli import run_chalice
from tools.deploy.settings import DeployError, require_deployable, step
from tools.deploy.templates import check_packaged_template, merge_template
from tools.shared import ROOT, Printer, Runner, chalice_config, run_command, say


def optimise_zip(zip_path: Path, out: Printer = say) -> None:
    """Drops what the runtime provides and ships unchecked-hash bytecode (tools/deploy/lambda_zip.py).

    Runs before the zip's digest is taken for the upload, so an unchanged app still maps
    to the same object and an unchanged stack.
    """
    step(out, "optimise deployment.zip for cold starts")
    before = zip_path.stat().st_size
    done = lambda_zip.optimise(zip_path)
    if not lambda_zip.uses_unchecked_pycs(zip_path):
        raise DeployError(f"{zip_path} lacks unchecked-hash bytecode for some module after optimising it")
    out(
        f"    dropped {done['dropped_files']} runtime-provided files, compiled {done['compiled_modules']} modules; "
        f"{before / 1e6:.1f} MB -> {zip_path.stat().st_size / 1e6:.1f} MB"
    )


def cfn_lint_command(template: Path) -> list[str]:
    exe = Path(sys.executable).with_name("cfn-lint")
    program = str(exe) if exe.exists() else (shutil.which("cfn-lint") or "cfn-lint")
    return [program, "--format", "json", str(template)]


def lint(template: Path, out: Printer = say) -> tuple[list[dict], list[dict]]:
    """Runs cfn-lint; returns (errors, warnings and notes). Raises on errors."""
    try:
        proc = subprocess.run(cfn_lint_command(template), capture_output=True, text=True, check=False)  # noqa: S603
    except FileNotFoundError as exc:
        raise DeployError("cfn-lint is not installed (pip install cfn-lint)") from exc
    try:
        findings = json.loads(proc.stdout or "[]")
    except ValueError as exc:
        raise DeployError(f"cfn-lint failed (exit {proc.returncode}): {proc.stderr or proc.stdout}") from exc
    errors = [f for f in findings if f.get("Level") == "Error"]
    others = [f for f in findings if f.get("Level") != "Error"]
    for f in errors + others:
        path = "/".join(str(p) for p in f.get("Location", {}).get("Path", []))
        out(f"    {f.get('Level')} {f.get('Rule', {}).get('Id')} {path}: {f.get('Message')}")
    out(f"    cfn-lint: {len(errors)} errors, {len(others)} warnings/notes")
    if errors:
        raise DeployError(f"cfn-lint found {len(errors)} errors in {template}")
    return errors, others


def package(
    stage: str,
    out_dir: Path | None = None,
    *,
    run: Runner = run_command,
    project_dir: Path = ROOT,
    out: Printer = say,
) -> Path:
    """Writes ``sam.json`` + ``deployment.zip`` for one stage, with the infrastructure merged in."""
    env = require_deployable(stage, project_dir)
    cfg = chalice_config(stage, project_dir=project_dir)
    out_dir = (out_dir or project_dir / "build" / f"package-{stage}").resolve()
    merge = merge_template(stage, env, cfg.app_name)
    step(out, f"chalice package --stage {stage} {out_dir}")
    with tempfile.TemporaryDirectory() as tmp:
        merge_file = Path(tmp) / "merge.json"
        merge_file.write_text(json.dumps(merge, indent=2), encoding="utf-8")
        args = ["package", "--stage", stage, "--merge-template", str(merge_file), str(out_dir)]
        extra_env = {}
        if boto3.session.Session().region_name is None:
            # Chalice insists on a region although the SAM template only uses ${AWS::Region}.
            extra_env["AWS_DEFAULT_REGION"] = "us-east-1"
        if out_dir.exists():
            shutil.rmtree(out_dir)
        run_chalice(run, *args, project_dir=project_dir, extra_env=extra_env)
    sam = out_dir / "sam.json"
    try:
        template = json.loads(sam.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DeployError(f"chalice package wrote no readable {sam}: {exc}") from exc
    check_packaged_template(template, env)
    optimise_zip(out_dir / "deployment.zip", out)
    step(out, "cfn-lint")
    lint(sam, out)
    out(f"    {sam}")
    return sam
