"""Tools as the MCP gateway shows and checks them: input schemas and argument validation.

`input { customer_id: string, limit?: number }` of an integration becomes a
JSON Schema (draft 2020-12) object: each field typed (`string`, `number`,
`boolean`, `object`, `array`), `required` = the fields not marked optional,
`additionalProperties: false`.  The gateway validates `tools/call` arguments
against it itself (`validate`): the type set is this small one, and the checks
must also bound what a hostile client can send (size, depth), which a general
validator does not.  The tests check that `jsonschema` agrees on the schemas
produced here; a federated tool's schema (any JSON Schema an upstream MCP server
lists) is checked with `jsonschema` after the same bounds (`bounded`), in
`mcpdsl.serve.federation.check_arguments`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from mcpdsl.ir import model as m

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: Bounds on one call's arguments: a larger or deeper object is refused unread.
MAX_ARGS_BYTES = 64 * 1024
MAX_ARGS_DEPTH = 16

_JSON_TYPES = {
    "string": "string",
    "number": "number",
    "boolean": "boolean",
    "bool": "boolean",
    "object": "object",
    "array": "array",
    "list": "array",
}


@dataclass(frozen=True)
class Tool:
    """One REST-backed tool: its name, the integration behind it, and its schema."""

    name: str
    integration: m.Integration
    description: str
    schema: dict[str, Any]


class InvalidArguments(ValueError):
    """Arguments that do not fit the schema; `field` names the first culprit ("" for the whole)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def input_schema(integration: m.Integration) -> dict[str, Any]:
    """The JSON Schema of an integration's `input` block (module doc)."""
    properties = {
        name: {"type": _JSON_TYPES.get(typ, "string")} for name, typ in integration.input.items()
    }
    required = sorted(n for n in integration.input if n not in integration.optional)
    return {
        "$schema": SCHEMA_DIALECT,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def catalog(project: m.Project) -> dict[str, Tool]:
    """Every REST-backed tool of the project by name (federated tools come from elsewhere).

    Two integrations exposing one tool name: the first declared wins (the front
    end reports the clash); integrations without `expose tool` or with `upstream
    mcp` are not tools here.
    """
    out: dict[str, Tool] = {}
    for integ in project.integrations:
        if integ.tool is None or integ.upstream != "rest" or integ.tool in out:
            continue
        out[integ.tool] = Tool(integ.tool, integ, integ.description or "", input_schema(integ))
    return out


def _depth(value: Any, limit: int) -> int:
    """The nesting depth of a JSON value, stopping past `limit` (no recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return depth
        deepest = max(deepest, depth)
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


def _fits(value: Any, typ: str) -> bool:
    if typ == "string":
        return isinstance(value, str)
    if typ == "number":
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and (not isinstance(value, float) or math.isfinite(value))
        )
    if typ == "boolean":
        return isinstance(value, bool)
    if typ == "object":
        return isinstance(value, dict)
    if typ == "array":
        return isinstance(value, list)
    return False


def bounded(arguments: Any) -> dict[str, Any]:
    """The arguments as an object within the bounds (size, depth); InvalidArguments otherwise.

    Every tool's arguments pass here first, declared or federated: a hostile
    client's object is measured without recursion before any schema reads it.
    """
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise InvalidArguments("the arguments must be a JSON object")
    if _depth(arguments, MAX_ARGS_DEPTH) > MAX_ARGS_DEPTH:
        raise InvalidArguments(f"the arguments are nested deeper than {MAX_ARGS_DEPTH} levels")
    try:
        size = len(json.dumps(arguments, ensure_ascii=False, allow_nan=False).encode())
    except (ValueError, TypeError, RecursionError):
        raise InvalidArguments("the arguments are not JSON (a number is not finite)") from None
    if size > MAX_ARGS_BYTES:
        raise InvalidArguments(f"the arguments are larger than {MAX_ARGS_BYTES} bytes")
    return arguments


def validate(schema: dict[str, Any], arguments: Any) -> dict[str, Any]:
    """The arguments, checked against the schema and the bounds; InvalidArguments otherwise."""
    arguments = bounded(arguments)
    properties: dict[str, Any] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in arguments:
            raise InvalidArguments(f"`{name}` is required", name)
    for name, value in arguments.items():
        spec = properties.get(name)
        if spec is None:
            raise InvalidArguments(f"`{name}` is not an argument of this tool", name)
        if not _fits(value, spec["type"]):
            raise InvalidArguments(f"`{name}` must be of type {spec['type']}", name)
    return arguments


__all__ = [
    "MAX_ARGS_BYTES",
    "MAX_ARGS_DEPTH",
    "InvalidArguments",
    "Tool",
    "bounded",
    "catalog",
    "input_schema",
    "validate",
]
