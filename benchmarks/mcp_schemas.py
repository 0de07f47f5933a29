"""Federated tools' argument checks: what `mcpdsl.serve.schemas.check_arguments` costs.

    python benchmarks/mcp_schemas.py [--quick]

The gateway checks a federated call's arguments against the schema the upstream
MCP server listed before the policy decides (docs/mcp.md).  Both are hostile
input, so the check is bounded: 64 KiB / 16 levels of arguments, 64 KiB / 32
levels of schema, and a budget of `MAX_VALIDATION_STEPS` keyword applications.
The table gives, per case, the steps spent (or "budget" when the call was
refused as too costly), the verdict, and the median and worst time of `--runs`
checks in milliseconds.  It runs in a worker thread at the gateway, so a slow
check holds one thread, not the event loop.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcpdsl.evaluate.tools import InvalidArguments
from mcpdsl.serve import schemas


def _cases() -> list[tuple[str, dict[str, Any], Any]]:
    search = {"type": "object", "required": ["q"], "additionalProperties": False,
              "properties": {"q": {"type": "string", "maxLength": 512},
                             "limit": {"type": "integer", "minimum": 1, "maximum": 100}}}  # fmt: skip
    item = {"type": "object", "required": ["k"],
            "properties": {"k": {"type": "integer", "minimum": 0},
                           "s": {"type": "string", "maxLength": 20}}}  # fmt: skip
    rows = {"type": "object", "properties": {"a": {"type": "array", "items": item}}}
    enum = {"type": "object", "properties": {
        "e": {"type": "array", "items": {"enum": [f"v{i}" for i in range(4000)]}}}}  # fmt: skip
    unique = {"type": "object", "properties": {"u": {"type": "array", "uniqueItems": True}}}
    branch = {"$ref": "#/$defs/t"}
    explode = {"type": "object", "properties": {"q": branch},
               "$defs": {"t": {"type": "array", "items": {"anyOf": [branch, branch, branch]}}}}  # fmt: skip
    nested: Any = 1
    for _ in range(14):
        nested = [nested]
    regex = {"type": "object",
             "properties": {"q": {"type": "string", "pattern": "^(a+)+$"}}}  # fmt: skip
    return [
        ("small call (2 arguments)", search, {"q": "circuit breaker", "limit": 5}),
        ("64 KiB: 2,400 objects", rows, {"a": [{"k": i, "s": "xxxxx"} for i in range(2400)]}),
        ("8,000 strings vs enum of 4,000", enum, {"e": ["v1"] * 8000}),
        ("uniqueItems: 4,000 objects", unique, {"u": [{"k": i} for i in range(4000)]}),
        ("anyOf x3 through $ref, 14 deep", explode, {"q": nested}),
        ("pattern (a+)+$ on 30,000 chars", regex, {"q": "a" * 30_000 + "!"}),
    ]


def _steps(schema: dict[str, Any], args: Any) -> str:
    limit = schemas.MAX_VALIDATION_STEPS
    budget = schemas._Budget(limit)
    token = schemas._BUDGET.set(budget)
    try:
        list(schemas.arguments_validator(schema).iter_errors(args))
    except schemas.TooCostly:
        return "budget"
    finally:
        schemas._BUDGET.reset(token)
    return f"{limit - budget.left:,}"


def _time(check: Callable[[], str], runs: int) -> tuple[str, list[float]]:
    times = []
    verdict = ""
    for _ in range(runs):
        start = time.perf_counter()
        verdict = check()
        times.append((time.perf_counter() - start) * 1000)
    return verdict, times


def main() -> None:
    runs = 3 if "--quick" in sys.argv else 15
    print(f"budget: {schemas.MAX_VALIDATION_STEPS:,} steps; {runs} runs per case\n")
    print(f"| {'case':<34} | {'bytes':>7} | {'steps':>8} | {'verdict':<12} | p50 ms | max ms |")
    print(f"| {'-' * 34} | {'-' * 6}: | {'-' * 7}: | {'-' * 12} | -----: | -----: |")
    for name, schema, args in _cases():
        validator = schemas.arguments_validator(schema)

        def check(schema: dict[str, Any] = schema, args: Any = args, v: Any = validator) -> str:
            try:
                schemas.check_arguments(schema, args, v)
            except InvalidArguments as exc:
                return "too costly" if "costly" in str(exc) else "invalid"
            return "ok"

        verdict, times = _time(check, runs)
        size = len(json.dumps(args))
        steps = _steps(schema, args)
        print(
            f"| {name:<34} | {size:>7,} | {steps:>8} | {verdict:<12} |"
            f" {statistics.median(times):6.1f} | {max(times):6.1f} |"
        )


if __name__ == "__main__":
    main()
