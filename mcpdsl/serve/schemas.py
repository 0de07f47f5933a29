"""The JSON Schemas of federated tools: which ones the gateway accepts, and how it applies them.

An upstream MCP server lists its tools with any JSON Schema it likes, and an
agent sends any arguments it likes; the gateway checks one against the other
before the policy decides (docs/mcp.md, "Federated MCP servers").  Both sides
are hostile input, so the check must cost a bounded amount of time and never
reach the network:

* the schema is accepted once per listing (`check_schema`): an object schema,
  valid for draft 2020-12, at most `MAX_SCHEMA_DEPTH` deep and
  `MAX_SCHEMA_BYTES` long;
* the arguments pass the gateway's own bounds first
  (`mcpdsl.evaluate.tools.bounded`: 64 KiB, 16 levels);
* `$ref` resolves within the schema and the drafts' meta-schemas only: the
  validator's default registry would *download* a remote reference, a request
  an upstream could aim at any address the gateway reaches;
* regular expressions (`pattern`, `patternProperties`) are not run: Python's
  `re` cannot be interrupted, and `"(a+)+$"` against a long string holds the
  event loop for ever.  The upstream validates them itself;
* `enum`, `const` and `uniqueItems` compare by hashing a canonical form of each
  value (jsonschema's own pairwise comparison is quadratic: minutes for a
  64 KiB array against a large enum);
* every keyword the validator applies spends one step of a budget
  (`MAX_VALIDATION_STEPS`), so combinators nested through `$ref`
  (`anyOf` of `anyOf` of ...) cannot grow exponentially: past the budget the
  call is refused as too costly to check.

Why not simply trust the upstream to validate: the policy decides on
`args.*`, and a rule written for `args.limit: number` must not be handed a
string the upstream would have refused only after the decision.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from jsonschema_specifications import REGISTRY as SPECIFICATIONS

from mcpdsl.evaluate.tools import InvalidArguments, bounded

MAX_SCHEMA_BYTES = 64 * 1024  # an input schema, as compact JSON
MAX_SCHEMA_DEPTH = 32  # nesting of objects/arrays in an input schema
#: Keyword applications one call's arguments may cost.  A 64 KiB array of 2,400
#: small objects against a typical schema takes ~17,000 (~0.1 s: jsonschema is slow,
#: which is why the gateway checks in a worker thread); `anyOf` nested through a
#: `$ref` can ask for billions (benchmarks/mcp_schemas.py).
MAX_VALIDATION_STEPS = 25_000

_REGEX_KEYWORDS = frozenset({"pattern", "patternProperties"})
_BASE: dict[str, Callable[..., Any]] = dict(jsonschema.Draft202012Validator.VALIDATORS)


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value, iteratively (a hostile schema cannot blow the stack)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in node)
    return deepest


def check_schema(schema: Any) -> str | None:
    """Why `schema` cannot be a federated tool's input schema, or None when it can.

    The gateway validates every call's arguments against it, so it must be a JSON
    Schema (2020-12, the MCP default) describing an object, and small enough that
    compiling and evaluating it is cheap.
    """
    if not isinstance(schema, dict):
        return "its input schema is not a JSON object"
    if schema.get("type") != "object":
        return 'its input schema is not an object schema (`"type": "object"` at the root)'
    if _depth(schema) > MAX_SCHEMA_DEPTH:
        return f"its input schema is nested deeper than {MAX_SCHEMA_DEPTH}"
    try:
        size = len(json.dumps(schema, separators=(",", ":"), allow_nan=False))
    except (TypeError, ValueError):
        return "its input schema is not plain JSON"
    if size > MAX_SCHEMA_BYTES:
        return f"its input schema is {size} bytes (limit {MAX_SCHEMA_BYTES})"
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"its input schema is not a valid JSON Schema ({exc.message[:200]})"
    except RecursionError:  # pragma: no cover - depth is bounded above
        return "its input schema is too deeply nested"
    return None


# ------------------------------------------------------------------ the budget


class TooCostly(Exception):
    """The arguments cost more than `MAX_VALIDATION_STEPS` to check."""


@dataclass
class _Budget:
    left: int
    enums: dict[int, frozenset[Any]] = field(default_factory=dict)  # id(enum list) -> keys

    def spend(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise TooCostly


#: The budget of the check in progress.  Validation is synchronous (no await
#: between `check_arguments` setting it and resetting it), and a context variable
#: keeps concurrent checks in other tasks or threads apart.
_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "mcpdsl_schema_budget", default=None
)


def _spend(steps: int = 1) -> _Budget | None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.spend(steps)
    return budget


def _key(value: Any) -> Any:
    """A hashable form with jsonschema's equality: `1 == 1.0`, `true != 1`, dicts unordered."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int):
        return ("n", value)
    if isinstance(value, float):
        return ("n", int(value) if value.is_integer() else value)
    if isinstance(value, str):
        return ("s", value)
    if value is None:
        return ("z",)
    if isinstance(value, list):
        return ("l", tuple(_key(v) for v in value))
    if isinstance(value, dict):
        return ("d", frozenset((k, _key(v)) for k, v in value.items()))
    return ("?", repr(value))


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _enum(validator: Any, enums: Any, instance: Any, schema: Any) -> Iterator[Any]:
    budget = _spend(1)
    if not isinstance(enums, list):
        yield from _BASE["enum"](validator, enums, instance, schema)
        return
    keys = budget.enums.get(id(enums)) if budget is not None else None
    if keys is None:
        _spend(len(enums))
        keys = frozenset(_key(e) for e in enums)
        if budget is not None:
            budget.enums[id(enums)] = keys
    if _key(instance) not in keys:
        yield jsonschema.ValidationError(f"{_short(instance)} is not one of the allowed values")


def _const(validator: Any, const: Any, instance: Any, schema: Any) -> Iterator[Any]:
    _spend(1)
    if _key(instance) != _key(const):
        yield jsonschema.ValidationError(f"{_short(const)} was expected")


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[Any]:
    _spend(1)
    if unique and isinstance(instance, list):
        _spend(len(instance))
        if len({_key(item) for item in instance}) != len(instance):
            yield jsonschema.ValidationError("the array has non-unique elements")


def _metered(keyword: Callable[..., Any]) -> Callable[..., Iterator[Any]]:
    def run(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[Any]:
        _spend(1)
        found = keyword(validator, value, instance, schema)
        if found is not None:
            yield from found

    return run


def _without_regex_additional(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
    if "patternProperties" in schema:
        return  # which names are "additional" needs the regexes: left to the upstream
    yield from _BASE["additionalProperties"](validator, value, instance, schema)


def _skip(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[Any]:
    return iter(())


_HASHED = {"enum": _enum, "const": _const, "uniqueItems": _unique_items}
_NO_REGEX = {
    "pattern": _skip,
    "patternProperties": _skip,
    "additionalProperties": _without_regex_additional,
    "unevaluatedProperties": _skip,  # "evaluated" names also come from `patternProperties`
}

_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    {name: _metered(fn) for name, fn in {**_BASE, **_HASHED}.items()},
)
_RegexFreeValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    {name: _metered(fn) for name, fn in {**_BASE, **_HASHED, **_NO_REGEX}.items()},
)


def _uses_regex(schema: Any) -> bool:
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if _REGEX_KEYWORDS.intersection(node):
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def arguments_validator(schema: dict[str, Any]) -> Any:
    """The validator of a checked input schema (`check_schema`), as the gateway applies it.

    Draft 2020-12 without asserting `format`, with the module's rules: local
    references only, no regular expressions when the schema has any, hashed
    comparisons, a step budget.
    """
    cls = _RegexFreeValidator if _uses_regex(schema) else _Validator
    return cls(schema, registry=SPECIFICATIONS)


def _culprit(error: Any) -> str:
    """The argument an error is about: its first path element, else the named property."""
    path = list(error.absolute_path)
    if path:
        return str(path[0])
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [n for n in error.validator_value if n not in error.instance]
        return str(missing[0]) if missing else ""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        props = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        extra = sorted(k for k in error.instance if k not in props)
        return str(extra[0]) if extra else ""
    return ""


def check_arguments(
    schema: dict[str, Any], arguments: Any, validator: Any = None
) -> dict[str, Any]:
    """A federated call's arguments, bounded and valid for the upstream's schema.

    InvalidArguments (the MCP invalid-params error) names the first offending
    argument: errors are ordered by path, so the answer does not depend on the
    order the validator found them in.  A schema that cannot be applied (an
    unresolvable or endlessly recursive `$ref`) or arguments too costly to check
    refuse the call: the gateway never forwards what it could not check.
    """
    args = bounded(arguments)
    checker = validator if validator is not None else arguments_validator(schema)
    token = _BUDGET.set(_Budget(MAX_VALIDATION_STEPS))
    try:
        errors = sorted(
            checker.iter_errors(args),
            key=lambda e: ([str(p) for p in e.absolute_path], str(e.validator), e.message),
        )
    except TooCostly:
        raise InvalidArguments(
            "the arguments are too costly to check against the tool's input schema"
        ) from None
    except RecursionError:
        raise InvalidArguments("the tool's input schema refers to itself without end") from None
    except Exception as exc:  # referencing's Unresolvable and the like: the schema's fault
        what = type(exc).__name__
        raise InvalidArguments(f"the tool's input schema cannot be applied ({what})") from None
    finally:
        _BUDGET.reset(token)
    if errors:
        first = errors[0]
        name = _culprit(first)
        where = f"`{name}`: " if name else ""
        raise InvalidArguments(f"{where}{first.message[:200]}", name)
    return args


__all__ = [
    "MAX_SCHEMA_BYTES",
    "MAX_SCHEMA_DEPTH",
    "MAX_VALIDATION_STEPS",
    "arguments_validator",
    "check_arguments",
    "check_schema",
]
