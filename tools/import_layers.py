"""An import-linter layers contract that also reads top-level modules (``app.py``).

import-linter builds its graph from packages only: it refuses a module such as ``app``
in ``root_packages`` and sees it only as a name others import. This contract parses the
modules it names and adds their imports to the graph before the layers are checked, so
``app`` importing ``tools`` breaks the contract as ``chalicelib`` importing ``app`` does.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from importlinter import ContractCheck, fields
from importlinter.contracts.layers import LayersContract

from tools.shared import ROOT


def module_imports(module: str, root: Path = ROOT) -> list[tuple[str, int, str]]:
    """(imported module, line, line's text) for every import in ``<root>/<module>.py``, nested ones too."""
    path = root / f"{module}.py"
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        else:
            continue
        found += [(name, node.lineno, lines[node.lineno - 1].strip()) for name in names]
    return found


class ModuleLayersContract(LayersContract):
    """``type = "module_layers"``: a layers contract; ``modules`` lists the top-level modules to read."""

    modules = fields.ListField(subfield=fields.StringField(), required=False)

    def check(self, graph: Any, verbose: bool) -> ContractCheck:
        roots = set(self.session_options.get("root_packages", [])) | set(self.modules or [])  # type: ignore[call-overload]
        for module in self.modules or []:  # type: ignore[attr-defined]
            for imported, line, text in module_imports(module):
                if imported.split(".")[0] not in roots:
                    continue  # outside the project: not a layer
                graph.add_module(imported)
                graph.add_import(importer=module, imported=imported, line_number=line, line_contents=text)
        return super().check(graph, verbose)
