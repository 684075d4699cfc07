"""openapi.yaml's schemas as JSON Schema validators, for the tests that check answers against it."""

from __future__ import annotations

from typing import Any

import jsonschema


def _to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 → JSON Schema: `nullable` and the boolean `exclusiveMinimum` are not JSON Schema."""
    if isinstance(node, dict):
        node = {k: _to_json_schema(v) for k, v in node.items()}
        if node.pop("nullable", False):
            node = {"anyOf": [node, {"type": "null"}]}
        if node.get("exclusiveMinimum") is True:
            node["exclusiveMinimum"] = node.pop("minimum")
        return node
    if isinstance(node, list):
        return [_to_json_schema(v) for v in node]
    return node


def validator(root: dict[str, Any], spec: dict[str, Any]) -> jsonschema.Validator:
    """A validator for ``root`` (a schema, or a ``$ref`` into ``spec``'s components)."""
    schema = _to_json_schema({**root, "components": spec["components"]})
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
