"""The deployed stage on an emulated account: MiniStack, and the real ``make deploy`` into it.

One MiniStack per test session, on a free port with its own state directory; the stage
is deployed once (``make deploy STAGE=dev``, as a subprocess with the emulator's endpoint
and dummy credentials) and every test talks to it as a client would: API Gateway,
Cognito, SQS, CloudWatch Logs. MiniStack stops at the end with every function it ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deployed.stage import FIGURES, STAGE, VISIBILITY_SECONDS, Deployment, run_make_deploy
from tools.local import ministack

DESTROY_TESTS = "test_destroy.py"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.deployed)
    # Destroying the stage comes after every test that uses it.
    items.sort(key=lambda item: Path(str(item.fspath)).name == DESTROY_TESTS)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("deployed stage on MiniStack")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ministack.MiniStack]:
    emu = ministack.start(state_dir=tmp_path_factory.mktemp("ministack-state"))
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(scope="session")
def deployment(emulator: ministack.MiniStack, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    build_dir = tmp_path_factory.mktemp("package") / f"package-{STAGE}"
    run = run_make_deploy(emulator.endpoint, build_dir, f"DeclinesVisibilityTimeoutSeconds={VISIBILITY_SECONDS}")
    if run.returncode != 0:
        pytest.fail(f"make deploy failed ({run.returncode}):\n{run.output}\n--- MiniStack:\n{emulator.log_tail()}")
    FIGURES.append(f"first make deploy: {run.seconds:.1f} s")
    deployed = Deployment(emulator.endpoint, {}, build_dir, run, emulator)
    stack = deployed.client("cloudformation").describe_stacks(StackName=f"booking-{STAGE}")["Stacks"][0]
    deployed.outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    return deployed
