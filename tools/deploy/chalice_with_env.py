"""``chalice`` with extra stage environment variables: ``python -m tools.deploy.chalice_with_env deploy --stage dev``.

The ``chalice deploy`` path reads the user pool's issuer, audience and JWKS URL from
the resources stack at deploy time; ``.chalice/config.json`` holds none of them. This
adds the JSON object in ``$CHALICE_EXTRA_STAGE_ENV`` to every stage's
``environment_variables`` as Chalice loads the file, without writing it.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

VARIABLE = "CHALICE_EXTRA_STAGE_ENV"


def with_extra_env(config: dict[str, Any], extra: dict[str, str]) -> dict[str, Any]:
    for stage in config.get("stages", {}).values():
        stage["environment_variables"] = {**stage.get("environment_variables", {}), **extra}
    return config


def install(extra: dict[str, str]) -> None:
    from chalice.cli.factory import CLIFactory

    load = CLIFactory.load_project_config

    def load_project_config(self: CLIFactory) -> dict[str, Any]:
        return with_extra_env(load(self), extra)

    CLIFactory.load_project_config = load_project_config  # type: ignore[method-assign]


def main() -> int:
    from chalice.cli import main as chalice_main

    install(json.loads(os.environ.get(VARIABLE) or "{}"))
    return chalice_main()


if __name__ == "__main__":
    sys.exit(main())
