"""The plain-Rego forms of a condition hold exactly when the lib form does (real OPA).

`opa_expr.fires_lines` / `fires_bodies` write the common shapes of an allow
condition as plain Rego (no `lib` calls) for speed, and `fires_or_errs_bodies`
those of a deny rule, a risk term or a `require` (fired or ERROR: fail
closed).  Each shape is evaluated both ways, in OPA, on inputs where the
attributes are missing, of every JSON type, or behind a step that is not an
object; the two must agree on every one.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from validators import opa_available

from mcpdsl.compile import opa as target
from mcpdsl.compile.opa_expr import (
    compile_expr,
    fires_bodies,
    fires_lines,
    fires_or_errs_bodies,
    lib_call,
    render,
)
from mcpdsl.ir import model as m

pytestmark = pytest.mark.skipif(
    not opa_available(),
    reason="system component missing: the OPA engine (opa-golib-python-bindings)",
)


def attr(dotted: str) -> m.Attr:
    root, *path = dotted.split(".")
    return m.Attr(root=root, path=tuple(path))


def lit(value: bool | str | int | float) -> m.Literal_:
    return m.Literal_(value=value if isinstance(value, (bool, str)) else Decimal(str(value)))


def cmp(op: str, left: m.Expr, right: m.Expr) -> m.Compare:
    return m.Compare(op=op, left=left, right=right)  # type: ignore[arg-type]


SHAPES: list[m.Expr] = [
    attr("context.flag"),
    m.Not(operand=attr("context.flag")),
    m.Not(operand=attr("context.a.b")),
    cmp("==", attr("context.x"), lit("t0")),
    cmp("==", attr("context.x"), lit(1)),
    cmp("==", attr("context.x"), lit(True)),
    cmp("!=", attr("context.x"), lit("t0")),
    cmp("!=", attr("context.a.b"), lit(1)),
    cmp("<", attr("context.x"), lit(0.7)),
    cmp(">=", attr("context.x"), lit(1)),
    cmp("<=", lit(1), attr("context.x")),
    cmp(">", lit(1), attr("context.a.b")),
    cmp("==", lit("t0"), attr("context.x")),
    cmp("<", attr("risk"), lit(0.7)),
    cmp(">=", attr("risk"), lit(0.5)),
    cmp("==", attr("action"), lit("GET")),
    m.In(item=attr("context.x"), collection=m.ListExpr(items=(lit("gold"), lit(1), lit(True)))),
    m.In(item=attr("context.a.b"), collection=m.ListExpr(items=(lit("gold"),))),
    m.And(
        operands=(
            attr("context.flag"),
            cmp("==", attr("context.x"), lit("t0")),
            m.And(
                operands=(cmp("<", attr("context.y"), lit(3)), m.Not(operand=attr("context.a.b")))
            ),
        )
    ),
]

VALUES: list[Any] = [None, True, False, 0, 1, 1.0, 0.5, 0.7, 3, "t0", "gold", "", [], {}, ["t0"]]


def contexts() -> list[Any]:
    """Contexts where x, y, flag and a.b take every value, are missing, or sit behind a non-object."""
    out: list[Any] = [{}, None, [], "x", 5, {"a": None}, {"a": []}, {"a": "b"}, {"a": {"b": {}}}]
    for value in VALUES:
        out += [
            {"x": value, "y": value, "flag": value},
            {"a": {"b": value}},
            {"x": "t0", "y": 2, "flag": True, "a": {"b": value}},
            {"x": "t0", "y": value, "flag": True, "a": {"b": False}},
        ]
    return out


def module(shapes: list[m.Expr], risk: str) -> str:
    lines = ["package t", "", "import rego.v1", "", "import data.mcp.lib", "", f"_risk := {risk}"]
    for i, shape in enumerate(shapes):
        plain = fires_lines(shape)
        assert plain is not None, shape
        lines += [f"default plain_{i} := false", f"plain_{i} if {{", *plain, "}"]
        lines += [f"default lib_{i} := false", f"lib_{i} if {{"]
        lines += [render(lib_call("fires", compile_expr(shape)), 1), "}"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("risk", ["0", "0.5", "0.7", "1"])
def test_plain_and_lib_forms_agree(risk: str) -> None:
    from opa_bindings import OpaEngine

    opa = OpaEngine()
    opa.add_policy("lib.rego", target.render_template("lib.rego.j2", version="t", cidr=False))
    opa.add_policy("t.rego", module(SHAPES, risk))
    checked = 0
    for context in contexts():
        for action in ("GET", "POST", 1):
            result = opa.eval_document("t", {"context": context, "action": action})
            for i in range(len(SHAPES)):
                assert result[f"plain_{i}"] == result[f"lib_{i}"], (SHAPES[i], context, action)
                checked += 1
    assert checked > 1000


def test_shapes_without_a_plain_form_keep_the_lib() -> None:
    for shape in [
        m.Or(operands=(attr("context.flag"), attr("context.other"))),
        cmp("<", attr("context.x"), lit("a")),  # ordering a string is ERROR
        cmp("==", attr("context.x"), attr("context.y")),
        m.In(item=attr("context.x"), collection=attr("context.list")),
        m.In(item=attr("context.x"), collection=m.ListExpr(items=(lit(1),)), negated=True),
        m.Not(operand=cmp("==", attr("context.x"), lit(1))),
        attr("now.hour"),
        attr("risk"),
        m.And(operands=(attr("context.flag"), m.Or(operands=(attr("context.a"),)))),
    ]:
        assert fires_lines(shape) is None, shape


#: Shapes of `fires_or_errs_bodies` beyond SHAPES: `or`, `not in`, ERROR-prone operands.
FAIL_CLOSED_SHAPES: list[m.Expr] = [
    *SHAPES,
    m.Or(operands=(attr("context.flag"), cmp(">", attr("context.y"), lit(3)))),
    m.Or(
        operands=(
            m.And(
                operands=(m.Not(operand=attr("context.flag")), cmp("<", attr("context.x"), lit(1)))
            ),
            cmp("==", attr("context.a.b"), lit("gold")),
        )
    ),
    m.In(item=attr("context.x"), collection=m.ListExpr(items=(lit("t0"), lit(1))), negated=True),
    m.And(operands=(attr("context.flag"), attr("context.a.b"))),
    m.And(operands=(cmp(">=", attr("risk"), lit(0.5)), m.Not(operand=attr("context.flag")))),
]

#: Shapes of `fires_bodies` beyond SHAPES: `or` of plain operands.
ALLOW_SHAPES: list[m.Expr] = [
    *SHAPES,
    m.Or(operands=(cmp(">=", attr("context.y"), lit(0.5)), attr("context.flag"))),
    m.Or(
        operands=(
            m.Not(operand=attr("context.a.b")),
            cmp("==", attr("context.x"), lit("t0")),
            m.In(item=attr("context.y"), collection=m.ListExpr(items=(lit(3), lit("gold")))),
        )
    ),
    m.Or(operands=(cmp("<", attr("context.y"), lit(3)), cmp("!=", attr("context.x"), lit(1)))),
]


def bodies_module(shapes: list[m.Expr], risk: str, plain_form: Any, helper: str) -> str:
    """`plain_i` (one rule body per alternative) beside `lib_i` (the helper) for every shape."""
    lines = ["package t", "", "import rego.v1", "", "import data.mcp.lib", "", f"_risk := {risk}"]
    for i, shape in enumerate(shapes):
        bodies = plain_form(shape)
        assert bodies, shape
        lines.append(f"default plain_{i} := false")
        for body in bodies:
            lines += [f"plain_{i} if {{", *body, "}"]
        lines += [f"default lib_{i} := false", f"lib_{i} if {{"]
        lines += [render(lib_call(helper, compile_expr(shape)), 1), "}"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("shapes", "plain_form", "helper"),
    [
        (FAIL_CLOSED_SHAPES, fires_or_errs_bodies, "fires_or_errs"),
        (ALLOW_SHAPES, fires_bodies, "fires"),
    ],
    ids=["fires_or_errs", "fires"],
)
@pytest.mark.parametrize("risk", ["0", "0.5", "1"])
def test_plain_bodies_and_lib_forms_agree(
    shapes: list[m.Expr], plain_form: Any, helper: str, risk: str
) -> None:
    from opa_bindings import OpaEngine

    opa = OpaEngine()
    opa.add_policy("lib.rego", target.render_template("lib.rego.j2", version="t", cidr=False))
    opa.add_policy("t.rego", bodies_module(shapes, risk, plain_form, helper))
    checked = 0
    fired = 0
    for context in contexts():
        for action in ("GET", 1):
            result = opa.eval_document("t", {"context": context, "action": action})
            for i in range(len(shapes)):
                assert result[f"plain_{i}"] == result[f"lib_{i}"], (shapes[i], context, action)
                checked += 1
                fired += result[f"lib_{i}"]
    assert checked > 1000
    assert 0 < fired < checked  # both outcomes are exercised


def test_fail_closed_shapes_without_a_plain_form_keep_the_lib() -> None:
    for shape in [
        cmp("<", attr("context.x"), lit("a")),  # ERROR whenever present
        cmp("==", attr("context.x"), attr("context.y")),
        m.In(item=attr("context.x"), collection=attr("context.list")),
        attr("args.flag"),  # ERROR on a tool call without `args`
        m.Not(operand=attr("args.flag")),
        attr("now.hour"),
        attr("risk"),
        m.And(operands=(attr("context.flag"), m.Or(operands=(attr("context.a"),)))),
        m.Or(operands=(attr("context.flag"), attr("stats.principal.requests"))),
    ]:
        assert fires_or_errs_bodies(shape) is None, shape
    for shape in [
        m.Or(operands=(attr("context.flag"), cmp("<", attr("risk"), lit(0.5)))),
        m.Or(operands=(attr("context.flag"), attr("args.flag"))),
        m.Or(
            operands=(attr("context.flag"), m.And(operands=(attr("context.a"), attr("context.b"))))
        ),
    ]:
        assert fires_bodies(shape) is None, shape
