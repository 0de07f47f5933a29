"""Helpers shared by the engine tests (a unique module name: tests are not packages)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import mcpdsl
from mcpdsl.engine import Engine
from mcpdsl.ir import model as m

REPO = Path(__file__).resolve().parent.parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXPRESSIONS = REPO / "tests" / "compile" / "fixtures" / "opa" / "expressions.txt"
_counter = itertools.count()

PRELUDE = """package t

service frontend { image "x" port 80 stateful }
service api { image "x" port 80 stateful }
service postgres { image "x" port 80 stateful }
"""


def write_tree(root: Path, source: str, prelude: bool = True) -> Path:
    tree = root / f"tree{next(_counter)}"
    tree.mkdir()
    (tree / "t.mcp").write_text((PRELUDE if prelude else "") + source, encoding="utf-8")
    return tree


def engine_for(root: Path, source: str, prelude: bool = True, **kw: Any) -> Engine:
    return Engine.load(write_tree(root, source, prelude), **kw)


def request(
    principal: tuple[str, str] = ("service", "frontend"),
    action: str = "GET",
    resource: tuple[str, str] = ("service", "api"),
    path: str | None = "/v1/items",
    **attributes: Any,
) -> dict[str, Any]:
    """A request; keyword `context__device__managed=True` sets `context.device.managed`."""
    req: dict[str, Any] = {
        "principal": {"type": principal[0], "id": principal[1]},
        "action": action,
        "resource": {"type": resource[0], "id": resource[1]},
        "request": {} if path is None else {"path": path},
    }
    for key, value in attributes.items():
        root, _, rest = key.partition("__")
        cursor = req.setdefault(root, {})
        parts = rest.split("__")
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = value
    return req


def expression_cases() -> list[tuple[str, dict[str, Any], str]]:
    """(expression, input, RESULT text) rows of the implementation-neutral table."""
    cases = []
    for line in EXPRESSIONS.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        expr, given, result = (part.strip() for part in line.rsplit(" | ", 2))
        cases.append((expr, json.loads(given), result))
    return cases


def expressions_ir(root: Path, exprs: list[str]) -> dict[str, m.Expr]:
    """IR of each expression via `allow any -> any when (E) ?? false`, the `??` peeled off."""
    rules = "\n".join(f"  allow any -> any when ({e}) ?? false" for e in exprs)
    tree = root / f"exprs{next(_counter)}"
    tree.mkdir()
    (tree / "t.mcp").write_text(f"package t\n\npolicy table {{\n{rules}\n}}\n", encoding="utf-8")
    project = mcpdsl.load(tree)
    out = {}
    for expr, rule in zip(exprs, project.policies[0].rules, strict=True):
        assert isinstance(rule.condition, m.Default)
        out[expr] = rule.condition.operand
    return out
