"""The encoder against the engine, value by value (docs/semantics.md, the MISSING/ERROR table).

For every condition below and a deterministic sample of concrete requests
(every kind of JSON value, MISSING, edge-case strings and addresses), the
request is pinned into the formula (`Encoder.pin`) and the solver must say
exactly what the engine's evaluator says: the condition fires (`true`), and
it counts for a deny (`true` or an evaluation error).  Conditions whose
encoding uses an abstraction (equality of objects or of two lists, case
mapping of non-ASCII strings) are only held to the sound direction on those
values: whatever the engine does, the solver allows it.
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mcpdsl.analysis.encode import Encoder, Env
from mcpdsl.evaluate.closures import prepare_expr
from mcpdsl.evaluate.values import MISSING
from mcpdsl.pipeline import compile_tree

CONDITIONS = [
    "context.x",
    "not context.x",
    "context.x and context.y",
    "context.x or not context.y",
    "context.x == context.y",
    'context.x != "a"',
    "context.x == 1",
    "context.x < 2",
    "context.x >= context.y",
    'context.x in ["a", 1, true]',
    'context.x not in ["a", "b"]',
    "context.x in context.y",
    "context.x not in context.y",
    'context.x in cidr "10.0.0.0/8"',
    'context.x in cidr "192.168.1.0/25"',
    'context.x matches "/v1/*"',
    'context.x matches "/v1/**"',
    'context.x matches "/a/*/c/**"',
    "context.x + context.y == 3",
    'context.x + "b" == "ab"',
    "context.x - 1 > 0",
    "context.x * 2 == 4",
    "context.x / context.y == 2",
    "(context.x ?? 5) == 5",
    '(context.x ?? context.y) == "a"',
    "-context.x < 0",
    'lower(context.x) == "ab"',
    'upper(context.x) == "AB"',
    "len(context.x) == 2",
    "len(context.x) > 1",
    'startswith(context.x, "a")',
    "endswith(context.x, context.y)",
    'contains(context.x, "b")',
    'contains(context.x, "\\\\") or context.x == "€"',
    "contains(context.x, context.y)",
    "contains(context.y, context.x)",
    "[context.x, 1] == [2, 1]",
    "context.x.y == 1",
    "context.x == true",
    "context.x != context.y",
]

VALUES: list[Any] = [
    MISSING,
    None,
    True,
    False,
    0,
    1,
    2,
    2.5,
    -1,
    Decimal("0.1"),
    "a",
    "ab",
    "AB",
    "aB",
    "b",
    "",
    "/v1/x",
    "/v1",
    "/v10",
    "/v1/x/y?q=1",
    "/a/b/c",
    "/a/b/c/d",
    "é\\u{41}",
    "€",
    "a\\b",
    "10.1.2.3",
    "192.168.1.7",
    "192.168.1.200",
    "010.1.2.3",
    "10.1.2",
    "::1",
    ["a"],
    [1, 2],
    [],
    ["b", "a"],
    {"y": 1},
    {},
]


def _tree(tmp: Path) -> Path:
    rules = "\n".join(f"  r{i}: allow any -> any when {c}" for i, c in enumerate(CONDITIONS))
    (tmp / "t.mcp").write_text(f"package t\n\npolicy p {{\n{rules}\n}}\n")
    return tmp


def _request(x: Any, y: Any) -> dict[str, Any]:
    ctx: dict[str, Any] = {}
    if x is not MISSING:
        ctx["x"] = x
    if y is not MISSING:
        ctx["y"] = y
    return {"context": ctx}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    c = compile_tree(_tree(tmp_path_factory.mktemp("enc")))
    assert c.project is not None, [d.message for d in c.diagnostics]
    return c.project


@pytest.mark.parametrize("index", range(len(CONDITIONS)), ids=CONDITIONS)
def test_encoding_agrees_with_the_engine(project, index: int) -> None:  # type: ignore[no-untyped-def]
    rule = project.policies[0].rules[index]
    assert rule.condition is not None
    enc = Encoder([project])
    env = Env(("risk", 0))
    fires = enc.fires(rule.condition, env)
    counts = enc.fires_or_errors(rule.condition, env)
    engine_fn = prepare_expr(rule.condition).fn
    rng = random.Random(index)
    pairs = [(x, y) for x in VALUES for y in (MISSING, "a", 1, ["a", "b"], "b", None)]
    sample = rng.sample(pairs, 40) + [(x, MISSING) for x in VALUES]
    checked = 0
    for x, y in sample:
        request = _request(x, y)
        try:
            pin = enc.pin(request)
        except ValueError:  # a list longer than the attribute's slots
            continue
        v = engine_fn(request, Decimal(0))
        want_fire = v is True
        want_count = v is not False and v is not MISSING
        got_fire = enc.solve(fires & pin, witness=False).status == "sat"
        got_count = enc.solve(counts & pin, witness=False).status == "sat"
        abstracted = (
            isinstance(x, dict)
            or isinstance(y, dict)
            or (isinstance(x, list) and isinstance(y, list))
            or (
                any(f in CONDITIONS[index] for f in ("lower(", "upper("))
                and isinstance(x, str)
                and not x.isascii()
            )
        )
        if abstracted:
            assert got_fire or not want_fire, (CONDITIONS[index], request, v)
            assert got_count or not want_count, (CONDITIONS[index], request, v)
        else:
            assert got_fire == want_fire, (CONDITIONS[index], request, v)
            assert got_count == want_count, (CONDITIONS[index], request, v)
        checked += 1
    assert checked >= 30
