"""The expression table of docs/semantics.md, row by row, for the compiled closures and
the tree-walking interpreter (which must agree with each other and with the table)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from engine_support import expression_cases, expressions_ir
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpdsl.evaluate.closures import fires, prepare_expr
from mcpdsl.evaluate.interp import evaluate, unparse, why
from mcpdsl.evaluate.values import ERROR, MISSING, json_eq, to_json
from mcpdsl.ir import model as m

CASES = expression_cases()
RISK = Decimal("0.5")  # the table's cases read `risk` as 0.5

# Rows of our own, beyond the shared table: fused fast paths, decimal boundaries,
# booleans that are not numbers, error precedence.
EXTRA: list[tuple[str, dict[str, Any], str]] = [
    # a JSON float is the decimal it spells: 0.7 <= 0.7 even though float(0.7) != 0.7
    ("context.a <= 0.7", {"context": {"a": 0.7}}, "true"),
    ("context.a >= 0.7", {"context": {"a": 0.7}}, "true"),
    ("context.a < 0.7", {"context": {"a": 0.7}}, "false"),
    ("context.a == 0.7", {"context": {"a": 0.7}}, "true"),
    ("context.a > 0.69999", {"context": {"a": 0.7}}, "true"),
    ("context.a < 0.30000000000000004", {"context": {"a": 0.3}}, "true"),
    ("context.a == 0.30000000000000004", {"context": {"a": 0.30000000000000004}}, "true"),
    ("risk <= 0.5", {}, "true"),
    ("risk >= 0.5", {}, "true"),
    ("risk == 0.5", {}, "true"),
    ("context.a == 1", {"context": {"a": 1.0}}, "true"),
    ("context.a == 1", {"context": {"a": True}}, "false"),
    ("context.a != 1", {"context": {"a": True}}, "true"),
    ("context.a < 2", {"context": {"a": False}}, "ERROR"),
    ("context.a == true", {"context": {"a": True}}, "true"),
    ("context.a != false", {"context": {"a": "false"}}, "true"),
    ('context.a == "x"', {"context": {"a": ["x"]}}, "false"),
    ('context.a != "x"', {"context": {"a": 5}}, "true"),
    ("context.a in [1, 2.5]", {"context": {"a": 2.5}}, "true"),
    ('context.a in [1, "x"]', {"context": {"a": True}}, "false"),
    ('context.a in [1, "x"]', {"context": {"a": 1.0}}, "true"),
    ('context.a in ["x"]', {"context": {"a": None}}, "false"),
    ('context.a not in ["x"]', {"context": {"a": 7}}, "true"),
    ('"x" in context.b', {"context": {"b": ["x"]}}, "true"),
    ("1 < context.a", {"context": {"a": 2}}, "true"),
    ("0.7 >= context.a", {"context": {"a": 0.7}}, "true"),
    # `and`/`or` never let an early result hide a later error
    ("context.a and context.b", {"context": {"a": False, "b": 1}}, "ERROR"),
    ("context.a or context.b", {"context": {"a": True, "b": "x"}}, "ERROR"),
    ("context.a == 1 and context.b < 2", {"context": {"a": 2, "b": "x"}}, "ERROR"),
    ("context.a == 1 and context.b == 2", {"context": {"a": 2, "b": "x"}}, "false"),
    ("context.a == 1 or context.b == 2", {"context": {"a": 1}}, "true"),
    ("not (context.a == 1)", {"context": {"a": 1}}, "false"),
    # functions read MISSING before ERROR (the table's order); other operators ERROR first
    ("startswith(lower(context.n), context.m)", {"context": {"n": 5}}, "MISSING"),
    ("[context.a + 1, context.b]", {"context": {"a": "x"}}, "ERROR"),
    ("context.a + context.b", {"context": {"a": 0.1, "b": 0.2}}, "0.3"),
    ("context.a * 3", {"context": {"a": 0.1}}, "0.3"),
    ("context.a - context.b", {"context": {"a": 5, "b": 7}}, "-2"),
    ("-context.a", {"context": {"a": True}}, "ERROR"),
    ('context.ip in cidr "fe80::/10"', {"context": {"ip": "fe80::1%eth0"}}, "false"),
    ('context.p matches "/v1/**"', {"context": {"p": "/v1#x"}}, "true"),
    ('context.p matches "/v1/*/x"', {"context": {"p": "/v1/a/x?y"}}, "true"),
    ("now.hour >= 9", {"now": {"hour": 9}}, "true"),
    ('now.weekday == "mon"', {"now": 5}, "false"),
    ('action == "GET"', {"action": "GET"}, "true"),
    ('action == "GET"', {"action": "get"}, "false"),
    ("len(context.l) == 0", {"context": {"l": []}}, "true"),
]

ALL = CASES + EXTRA


@pytest.fixture(scope="module")
def ir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, m.Expr]:
    return expressions_ir(tmp_path_factory.mktemp("expr"), sorted({e for e, _, _ in ALL}))


def expected(result: str) -> Any:
    if result == "MISSING":
        return MISSING
    if result == "ERROR":
        return ERROR
    return json.loads(result)


def same(got: Any, want: Any) -> bool:
    if want is MISSING or want is ERROR:
        return got is want
    if got is MISSING or got is ERROR:
        return False
    return json_eq(to_json(got), want) and json_eq(got, want)


@pytest.mark.parametrize(
    ("expr", "given", "result"), ALL, ids=[f"{i}:{c[0]}" for i, c in enumerate(ALL)]
)
def test_row(ir: dict[str, m.Expr], expr: str, given: dict[str, Any], result: str) -> None:
    node = ir[expr]
    want = expected(result)
    fast = prepare_expr(node).fn(given, RISK)
    slow = evaluate(node, given, RISK)
    assert same(fast, want), f"compiled {expr!r} on {given}: {fast!r}, expected {result}"
    assert same(slow, want), f"interpreted {expr!r} on {given}: {slow!r}, expected {result}"


def test_fires() -> None:
    assert fires(True) is True
    assert fires(False) is False
    assert fires(MISSING) is False
    assert fires(ERROR) is None
    assert fires(1) is None  # a non-boolean value is an evaluation error
    assert fires("true") is None


def test_unparse_round_trips_through_the_front_end(ir: dict[str, m.Expr], tmp_path: Path) -> None:
    texts = {expr: unparse(node) for expr, node in ir.items()}
    again = expressions_ir(tmp_path, sorted(set(texts.values())))

    def bare(node: m.Node) -> Any:  # units print as base-unit numbers: compare values only
        def strip(x: Any) -> Any:
            if isinstance(x, dict):
                return {k: strip(v) for k, v in x.items() if k != "unit"}
            if isinstance(x, list):
                return [strip(v) for v in x]
            return x

        return strip(node.model_dump())

    for expr, text in texts.items():
        assert bare(again[text]) == bare(ir[expr]), (expr, text)


def test_why_names_missing_attributes_and_actual_values(ir: dict[str, m.Expr]) -> None:
    value, reasons = why(ir["context.a < 2"], {"context": {"a": 2}}, RISK)
    assert value is False
    assert "`context.a` is 2" in reasons
    assert "`2 < 2` is false" in reasons
    value, reasons = why(ir["context.a < 2"], {}, RISK)
    assert reasons == ["`context.a` is missing"]
    value, reasons = why(ir["context.a < 2"], {"context": {"a": "1"}}, RISK)
    assert value is ERROR
    assert any("compares numbers" in r and "a string" in r for r in reasons)
    value, reasons = why(ir["context.a and context.b"], {"context": {"a": False, "b": 3}}, RISK)
    assert value is ERROR
    assert any("`context.b` is 3 (a number), not a boolean" in r for r in reasons)


# ------------------------------------------------------------------ random expressions

ROOT_ATTRS = [
    ("context", ("a",)),
    ("context", ("b",)),
    ("context", ("a", "b")),
    ("principal", ("tier",)),
]
VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 3),
        st.sampled_from([0.5, 0.7, 1.0, 2.5, -0.1]),
        st.sampled_from(["x", "y", "", "10.1.2.3", "/v1/a"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2)
    ),
    max_leaves=6,
)
INPUTS = st.fixed_dictionaries(
    {},
    optional={
        "context": st.dictionaries(st.sampled_from(["a", "b"]), VALUES, max_size=2),
        "principal": st.dictionaries(st.sampled_from(["tier"]), VALUES, max_size=1),
    },
)


def _literal() -> st.SearchStrategy[m.Node]:
    return st.one_of(
        st.booleans().map(lambda b: m.Literal_(value=b)),
        st.sampled_from(["0", "1", "0.7", "2.5", "-1"]).map(lambda d: m.Literal_(value=Decimal(d))),
        st.sampled_from(["x", "y", "/v1/a"]).map(lambda s: m.Literal_(value=s)),
    )


def _attr() -> st.SearchStrategy[m.Node]:
    return st.one_of(
        st.sampled_from(ROOT_ATTRS).map(lambda p: m.Attr(root=p[0], path=p[1])),
        st.just(m.Attr(root="risk")),
    )


def _expr(inner: st.SearchStrategy[m.Node]) -> st.SearchStrategy[m.Node]:
    two = st.tuples(inner, inner)
    return st.one_of(
        inner.map(lambda x: m.Not(operand=x)),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: m.And(operands=tuple(xs))),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: m.Or(operands=tuple(xs))),
        st.tuples(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), inner, inner).map(
            lambda t: m.Compare(op=t[0], left=t[1], right=t[2])
        ),
        st.tuples(inner, st.lists(inner, max_size=3), st.booleans()).map(
            lambda t: m.In(item=t[0], collection=m.ListExpr(items=tuple(t[1])), negated=t[2])
        ),
        st.tuples(two, st.booleans()).map(
            lambda t: m.In(item=t[0][0], collection=t[0][1], negated=t[1])
        ),
        inner.map(lambda x: m.InCidr(operand=x, cidr="10.0.0.0/8")),
        inner.map(lambda x: m.Matches(operand=x, pattern="/v1/**")),
        st.tuples(st.sampled_from(["+", "-", "*", "/"]), inner, inner).map(
            lambda t: m.Arith(op=t[0], left=t[1], right=t[2])
        ),
        two.map(lambda t: m.Default(operand=t[0], fallback=t[1])),
        inner.map(lambda x: m.Neg(operand=x)),
        st.tuples(st.sampled_from(["lower", "upper", "len"]), inner).map(
            lambda t: m.Call(function=t[0], args=(t[1],))
        ),
        st.tuples(st.sampled_from(["startswith", "endswith", "contains"]), two).map(
            lambda t: m.Call(function=t[0], args=t[1])
        ),
    )


EXPRS = st.recursive(st.one_of(_literal(), _attr()), _expr, max_leaves=8)


@settings(max_examples=1500)
@given(EXPRS, INPUTS, st.sampled_from([Decimal(0), Decimal("0.5"), Decimal("0.7"), Decimal(1)]))
def test_compiled_closures_agree_with_the_interpreter(
    expr: m.Node, inp: dict[str, Any], risk: Decimal
) -> None:
    fast = prepare_expr(expr).fn(inp, risk)
    slow = evaluate(expr, inp, risk)
    if slow is MISSING or slow is ERROR:
        assert fast is slow, (unparse(expr), inp, fast, slow)
    else:
        assert fast is not MISSING and fast is not ERROR, (unparse(expr), inp, fast, slow)
        assert json_eq(fast, slow), (unparse(expr), inp, fast, slow)
