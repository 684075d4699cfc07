"""DynamoDB refuses a Query whose FilterExpression names a key attribute of the table or
index it reads ("Filter Expression can only contain non-primary key attributes"); moto and
MiniStack accept it. Such a request once broke booking on AWS and nowhere else, so the
integration tests look at every Query the code sends, on both backends.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from tools import resources

# Words of the expression grammar, not attribute names.
_GRAMMAR = {
    "and",
    "or",
    "not",
    "between",
    "in",
    "attribute_exists",
    "attribute_not_exists",
    "attribute_type",
    "begins_with",
    "contains",
    "size",
}
_TOKEN = re.compile(r"""(#\w+)|(:\w+)|([A-Za-z_][\w]*)|("[^"]*")""")


@functools.cache
def template_keys() -> dict[str | None, set[str]]:
    """Key attributes of infra/resources.yaml's table."""
    return key_attributes(resources.load_template())


def key_attributes(template: Mapping[str, Any]) -> dict[str | None, set[str]]:
    """Key attributes of the template's table (under ``None``) and of each of its indexes."""
    table = next(r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::DynamoDB::Table")
    keys: dict[str | None, set[str]] = {None: {k["AttributeName"] for k in table["KeySchema"]}}
    for index in table.get("GlobalSecondaryIndexes", []) + table.get("LocalSecondaryIndexes", []):
        keys[index["IndexName"]] = {k["AttributeName"] for k in index["KeySchema"]}
    return keys


def attributes_named(expression: str, names: Mapping[str, str] | None) -> set[str]:
    """The top-level attribute names an expression refers to (placeholders resolved)."""
    found = set()
    for placeholder, _value, bare, _quoted in _TOKEN.findall(expression):
        if placeholder:
            found.add((names or {}).get(placeholder, placeholder))
        elif bare and bare.lower() not in _GRAMMAR:
            found.add(bare)
    return found


def key_filter_violation(params: Mapping[str, Any], keys: Mapping[str | None, set[str]]) -> str | None:
    """Why DynamoDB would refuse this Query's FilterExpression, or None."""
    expression = params.get("FilterExpression")
    if not expression:
        return None
    index = params.get("IndexName")
    on_keys = attributes_named(expression, params.get("ExpressionAttributeNames")) & keys.get(index, set())
    if not on_keys:
        return None
    where = f"index {index}" if index else f"table {params.get('TableName')}"
    return f"Query on {where} filters on its key attribute(s) {sorted(on_keys)}: {expression!r}"
