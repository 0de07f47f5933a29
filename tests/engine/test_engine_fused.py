"""Fused leaves (`closures._fuse`) against the unfused closures they stand for.

A leaf such as `context.tier == "gold"` is compiled with its attribute read
inlined; for anything but a plain value the fused function calls the leaf's own
closure.  Over hostile inputs too (subclasses, NaN, huge integers, non-ASCII
and lone-surrogate strings, a non-dict on the path), the fused leaf must give
the same result, or refuse with the same reason.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mcpdsl.evaluate import closures
from mcpdsl.evaluate.values import Refused
from mcpdsl.ir import model as m


class Str(str):
    pass


class Dict(dict):  # type: ignore[type-arg]
    pass


ODD: list[Any] = [
    None, True, False, 0, 1, -1, 2**70, 0.5, 0.7, 2.5, float("nan"), float("inf"), "x", "gold",
    "é", "\ud800", Str("gold"), [], ["gold"], {}, {"b": "gold"}, Dict(b="gold"), Decimal("0.5"),
]  # fmt: skip
VALUES = st.sampled_from(ODD)
INPUTS = st.fixed_dictionaries(
    {},
    optional={
        "context": st.one_of(
            st.dictionaries(st.sampled_from(["a", "b"]), VALUES, max_size=2),
            st.dictionaries(st.sampled_from(["a"]), st.builds(Dict, b=VALUES), max_size=1),
            VALUES,
        ),
        "action": VALUES,
    },
)
ATTRS = st.sampled_from(
    [m.Attr(root="context", path=("a",)), m.Attr(root="context", path=("a", "b")),
     m.Attr(root="action")]
)  # fmt: skip
LITERALS = st.one_of(
    st.booleans(),
    st.sampled_from(["0", "1", "0.5", "0.7", "-1", "2.5", "1e400", "0.1000000000000000000001"]).map(
        Decimal
    ),
    st.sampled_from(["x", "gold", "é"]),
).map(lambda v: m.Literal_(value=v))
OPS = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])


def _leaves() -> st.SearchStrategy[m.Node]:
    compare = st.tuples(OPS, ATTRS, LITERALS, st.booleans()).map(
        lambda t: (
            m.Compare(op=t[0], left=t[1], right=t[2])
            if t[3]
            else m.Compare(op=t[0], left=t[2], right=t[1])
        )
    )
    risk = st.tuples(OPS, LITERALS).map(
        lambda t: m.Compare(op=t[0], left=m.Attr(root="risk"), right=t[1])
    )
    member = st.tuples(
        ATTRS, st.lists(st.sampled_from(["x", "gold", "é", ""]), max_size=3), st.booleans()
    ).map(
        lambda t: m.In(
            item=t[0],
            collection=m.ListExpr(items=tuple(m.Literal_(value=v) for v in t[1])),
            negated=t[2],
        )
    )
    negation = ATTRS.map(lambda a: m.Not(operand=a))
    return st.one_of(compare, risk, member, negation)


def _unfused(e: m.Node) -> closures.Fn:
    if isinstance(e, m.Compare):
        return closures._compare(e).fn
    if isinstance(e, m.In):
        return closures._in(e).fn
    assert isinstance(e, m.Not)
    return closures._not(closures.prepare_expr(e.operand)).fn


def _run(fn: closures.Fn, inp: dict[str, Any], risk: Any) -> tuple[str, Any]:
    try:
        value = fn(inp, risk)
    except Refused as exc:
        return "refused", str(exc)
    return "value", value


@settings(max_examples=3000)
@given(_leaves(), INPUTS, st.sampled_from([Decimal(0), Decimal("0.5"), Decimal("0.7"), 0.5]))
def test_a_fused_leaf_is_its_closure(e: m.Node, inp: dict[str, Any], risk: Any) -> None:
    assert _run(closures.prepare_expr(e).fn, inp, risk) == _run(_unfused(e), inp, risk)


def test_the_common_leaves_are_fused() -> None:
    attr = m.Attr(root="context", path=("tier",))
    gold = m.Literal_(value="gold")
    for e in [
        m.Compare(op="==", left=attr, right=gold),
        m.Compare(op="<", left=m.Literal_(value=Decimal("0.5")), right=attr),
        m.Compare(op="<", left=m.Attr(root="risk"), right=m.Literal_(value=Decimal("0.7"))),
        m.In(item=attr, collection=m.ListExpr(items=(gold,))),
        m.Not(operand=attr),
    ]:
        assert closures.prepare_expr(e).fn.__name__ == "fused", e


def test_equal_leaves_share_one_closure_and_only_equal_ones() -> None:
    """`closures._shared_leaf`: one closure per leaf, keyed type for type.

    Python's `==` holds `True == 1` and `Decimal("0.2") == Decimal("0.200")`
    (and so does the IR nodes' span-blind `==`); a shared closure must never
    stand for a leaf of another literal type.
    """
    attr = m.Attr(root="context", path=("a",))

    def compare(value: Any, op: str = "==") -> m.Node:
        return m.Compare(op=op, left=attr, right=m.Literal_(value=value))

    first, second = compare("gold"), compare("gold")
    assert first is not second
    assert closures.prepare_expr(first).fn is closures.prepare_expr(second).fn
    both = m.And(operands=(compare("gold"), m.Not(operand=attr)))
    again = m.And(operands=(compare("gold"), m.Not(operand=attr)))
    assert closures.prepare_expr(both).fn is closures.prepare_expr(again).fn
    true, one = closures.prepare_expr(compare(True)).fn, closures.prepare_expr(compare(Decimal(1)))
    assert true is not one.fn
    assert true({"context": {"a": 1}}, Decimal(0)) is False
    assert one.fn({"context": {"a": 1}}, Decimal(0)) is True
    assert one.fn({"context": {"a": True}}, Decimal(0)) is False
    short, long = compare(Decimal("0.2"), "<"), compare(Decimal("0.200"), "<")
    assert closures.prepare_expr(short).fn is not closures.prepare_expr(long).fn
    assert closures.prepare_expr(compare("gold", "!=")).fn is not closures.prepare_expr(first).fn
