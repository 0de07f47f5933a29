"""The tree-walking evaluator: the slow path behind `explain()` and a test oracle.

`evaluate` follows docs/semantics.md row by row without any of the fast
path's fusions or short-circuits, so the test suite can check the compiled
closures against it.  `why` evaluates an expression and says, in words, why
it has the value it has (missing attributes, false comparisons with the
actual values, errors).
"""

from __future__ import annotations

import ipaddress
import json
from decimal import Decimal
from typing import Any

from mcpdsl.evaluate.closures import arith, call, negate
from mcpdsl.evaluate.values import (
    ERROR,
    MISSING,
    is_number,
    json_eq,
    json_in,
    num_cmp,
    show,
    type_name,
)
from mcpdsl.ir import args, globs
from mcpdsl.ir import model as m

# ----------------------------------------------------------------- unparse


def unparse(e: m.Node) -> str:
    """An expression as source text (canonical spacing)."""
    return _unparse(e)[0]


def _unparse(e: m.Node) -> tuple[str, int]:
    """Text and precedence (grammar: or 1, and 2, not 3, compare 4, sum 5, product 6,
    `??` 7, unary minus 8, atoms 9)."""
    if isinstance(e, m.Literal_):
        v = e.value
        if isinstance(v, bool):
            return ("true" if v else "false"), 9
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False), 9
        if e.unit == "percent":
            return f"{(v * 100).normalize():f}%", 9
        if e.unit == "time":
            minutes = int(v)
            return f"{minutes // 60:02d}:{minutes % 60:02d}", 9
        return f"{v.normalize():f}", (9 if v >= 0 else 8)
    if isinstance(e, m.Attr):
        return e.dotted() if e.path else e.root, 9
    if isinstance(e, m.ListExpr):
        return "[" + ", ".join(unparse(i) for i in e.items) + "]", 9
    if isinstance(e, m.Not):
        return "not " + _wrap(e.operand, 3), 3
    if isinstance(e, m.And):
        return " and ".join(_wrap(o, 3) for o in e.operands), 2
    if isinstance(e, m.Or):
        return " or ".join(_wrap(o, 2) for o in e.operands), 1
    if isinstance(e, m.Compare):
        return f"{_wrap(e.left, 5)} {e.op} {_wrap(e.right, 5)}", 4
    if isinstance(e, m.In):
        word = " not in " if e.negated else " in "
        return _wrap(e.item, 5) + word + _wrap(e.collection, 5), 4
    if isinstance(e, m.InCidr):
        return f"{_wrap(e.operand, 5)} in cidr {json.dumps(e.cidr)}", 4
    if isinstance(e, m.Matches):
        return f"{_wrap(e.operand, 5)} matches {json.dumps(e.pattern)}", 4
    if isinstance(e, m.Arith):
        prec = 5 if e.op in "+-" else 6
        return f"{_wrap(e.left, prec)} {e.op} {_wrap(e.right, prec + 1)}", prec
    if isinstance(e, m.Default):
        return f"{_wrap(e.operand, 7)} ?? {_wrap(e.fallback, 8)}", 7
    if isinstance(e, m.Neg):
        return "-" + _wrap(e.operand, 8), 8
    if isinstance(e, m.Call):
        return f"{e.function}(" + ", ".join(unparse(a) for a in e.args) + ")", 9
    raise TypeError(type(e).__name__)


def _wrap(e: m.Node, prec: int) -> str:
    text, own = _unparse(e)
    return f"({text})" if own < prec else text


# ---------------------------------------------------------------- evaluate


def lookup(inp: dict[str, Any], root: str, path: tuple[str, ...], risk: Decimal) -> Any:
    if root == "risk":
        return risk
    if root == args.ROOT and not isinstance(inp.get(root), dict):
        return ERROR if args.unread(inp) else MISSING  # mcpdsl.ir.args: fails closed
    value: Any = inp
    for step in (root, *path):
        if not isinstance(value, dict) or step not in value:
            return MISSING
        value = value[step]
    return value


def as_bool(v: Any) -> bool | None:
    """An operand of `and`/`or`: MISSING reads as false; None means ERROR."""
    if v is MISSING:
        return False
    if isinstance(v, bool):
        return v
    return None


def evaluate(e: m.Node, inp: dict[str, Any], risk: Decimal) -> Any:
    """The value of an expression, straight from the semantics table."""
    if isinstance(e, m.Literal_):
        return e.value
    if isinstance(e, m.Attr):
        return lookup(inp, e.root, e.path, risk)
    if isinstance(e, m.ListExpr):
        items = [evaluate(i, inp, risk) for i in e.items]
        if any(i is ERROR for i in items):
            return ERROR
        if any(i is MISSING for i in items):
            return MISSING
        return items
    if isinstance(e, m.Not):
        v = evaluate(e.operand, inp, risk)
        if v is True:
            return False
        if v is False or v is MISSING:
            return True
        return ERROR
    if isinstance(e, (m.And, m.Or)):
        values = [as_bool(evaluate(o, inp, risk)) for o in e.operands]
        if any(v is None for v in values):
            return ERROR
        return all(values) if isinstance(e, m.And) else any(values)
    if isinstance(e, m.Compare):
        a, b = evaluate(e.left, inp, risk), evaluate(e.right, inp, risk)
        if a is ERROR or b is ERROR:
            return ERROR
        if a is MISSING or b is MISSING:
            return False
        if e.op == "==":
            return json_eq(a, b)
        if e.op == "!=":
            return not json_eq(a, b)
        if not (is_number(a) and is_number(b)):
            return ERROR
        c = num_cmp(a, b)
        return {"<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0}[e.op]
    if isinstance(e, m.In):
        x, y = evaluate(e.item, inp, risk), evaluate(e.collection, inp, risk)
        if x is ERROR or y is ERROR:
            return ERROR
        if x is MISSING or y is MISSING:
            return False
        if not isinstance(y, (list, tuple)):
            return ERROR
        found = json_in(x, y)
        return not found if e.negated else found
    if isinstance(e, m.InCidr):
        x = evaluate(e.operand, inp, risk)
        if x is MISSING:
            return False
        if not isinstance(x, str):
            return ERROR
        try:
            address = ipaddress.ip_address(x)
        except ValueError:
            return False
        if "%" in x:  # an IPv6 zone is not an address of a network
            return False
        network = ipaddress.ip_network(e.cidr, strict=False)
        return address.version == network.version and address in network
    if isinstance(e, m.Matches):
        x = evaluate(e.operand, inp, risk)
        if x is MISSING:
            return False
        if not isinstance(x, str):
            return ERROR
        return globs.matches(e.pattern, x)
    if isinstance(e, m.Arith):
        return arith(e.op, evaluate(e.left, inp, risk), evaluate(e.right, inp, risk))
    if isinstance(e, m.Default):
        v = evaluate(e.operand, inp, risk)
        return evaluate(e.fallback, inp, risk) if v is MISSING else v
    if isinstance(e, m.Neg):
        return negate(evaluate(e.operand, inp, risk))
    if isinstance(e, m.Call):
        return call(e.function, [evaluate(a, inp, risk) for a in e.args])
    raise TypeError(type(e).__name__)


# --------------------------------------------------------------------- why


def why(e: m.Node, inp: dict[str, Any], risk: Decimal) -> tuple[Any, list[str]]:
    """The value of `e` and the facts that explain it (for a condition: why it (did not) fire)."""
    value = evaluate(e, inp, risk)
    return value, list(dict.fromkeys(_reasons(e, value, inp, risk)))  # in order, once each


def _reasons(e: m.Node, value: Any, inp: dict[str, Any], risk: Decimal) -> list[str]:
    if isinstance(e, m.Literal_):
        return []
    if isinstance(e, m.Attr):
        return [_fact(e, value)]
    if isinstance(e, (m.And, m.Or)):
        parts = [(o, evaluate(o, inp, risk)) for o in e.operands]
        bad = [(o, v) for o, v in parts if as_bool(v) is None]
        if bad:
            return [r for o, v in bad for r in _operand_error(o, v, inp, risk)]
        if isinstance(e, m.And) and value is False:
            chosen = [(o, v) for o, v in parts if as_bool(v) is False]
        elif isinstance(e, m.Or) and value is True:
            chosen = [(o, v) for o, v in parts if as_bool(v) is True]
        else:
            chosen = parts
        return [r for o, v in chosen for r in _reasons(o, v, inp, risk)]
    if isinstance(e, m.Not):
        inner = evaluate(e.operand, inp, risk)
        if value is ERROR:
            return _operand_error(e.operand, inner, inp, risk)
        return _reasons(e.operand, inner, inp, risk)
    children = _children(e)
    values = [evaluate(c, inp, risk) for c in children]
    text = unparse(e)
    facts = [_fact(c, v) for c, v in zip(children, values, strict=True) if _interesting(c)]
    if value is ERROR:
        errors = [(c, v) for c, v in zip(children, values, strict=True) if v is ERROR]
        if errors:
            return [r for c, v in errors for r in _reasons(c, v, inp, risk)]
        return [*facts, f"`{text}` is an error: {_error_cause(e, values)}"]
    missing = [c for c, v in zip(children, values, strict=True) if v is MISSING]
    if missing:
        return [r for c in missing for r in _reasons(c, MISSING, inp, risk)]
    if isinstance(e, (m.Compare, m.In, m.InCidr, m.Matches)):
        shown = _with_values(e, inp, risk)
        return [*facts, f"`{shown}` is {show(value)}"]
    return [*facts, f"`{text}` is {show(value)}"]


def _operand_error(o: m.Node, v: Any, inp: dict[str, Any], risk: Decimal) -> list[str]:
    if v is ERROR:
        return _reasons(o, v, inp, risk)
    return [f"`{unparse(o)}` is {show(v)} ({type_name(v)}), not a boolean: an evaluation error"]


def _fact(e: m.Node, value: Any) -> str:
    if value is MISSING:
        return f"`{unparse(e)}` is missing"
    if value is ERROR and isinstance(e, m.Attr) and e.root == args.ROOT:
        return f"`{unparse(e)}` is an error: the tool call carries no `args` object"
    return f"`{unparse(e)}` is {show(value)}"


def _interesting(e: m.Node) -> bool:
    return not isinstance(e, m.Literal_) and not (
        isinstance(e, m.ListExpr) and all(isinstance(i, m.Literal_) for i in e.items)
    )


def _children(e: m.Node) -> list[m.Node]:
    if isinstance(e, m.Compare | m.Arith):
        return [e.left, e.right]
    if isinstance(e, m.In):
        return [e.item, e.collection]
    if isinstance(e, m.InCidr | m.Matches | m.Neg):
        return [e.operand]
    if isinstance(e, m.Default):
        return [e.operand, e.fallback]
    if isinstance(e, m.Call):
        return list(e.args)
    if isinstance(e, m.ListExpr):
        return list(e.items)
    return []


def _with_values(e: m.Node, inp: dict[str, Any], risk: Decimal) -> str:
    """`3 > 5` for `context.failed_logins > 5`: the comparison with the actual values."""

    def val(c: m.Node) -> str:
        return show(evaluate(c, inp, risk)) if _interesting(c) else unparse(c)

    if isinstance(e, m.Compare):
        return f"{val(e.left)} {e.op} {val(e.right)}"
    if isinstance(e, m.In):
        return f"{val(e.item)}{' not in ' if e.negated else ' in '}{val(e.collection)}"
    if isinstance(e, m.InCidr):
        return f"{val(e.operand)} in cidr {json.dumps(e.cidr)}"
    if isinstance(e, m.Matches):
        return f"{val(e.operand)} matches {json.dumps(e.pattern)}"
    return unparse(e)


def _error_cause(e: m.Node, values: list[Any]) -> str:
    if isinstance(e, m.Compare):
        return f"`{e.op}` compares numbers, found {' and '.join(type_name(v) for v in values)}"
    if isinstance(e, m.In):
        return f"`in` needs a list on its right, found {type_name(values[1])}"
    if isinstance(e, m.InCidr | m.Matches):
        word = "`in cidr`" if isinstance(e, m.InCidr) else "`matches`"
        return f"{word} needs a string, found {type_name(values[0])}"
    if isinstance(e, m.Arith):
        if e.op == "/" and is_number(values[1]) and values[1] == 0:
            return "division by zero"
        return f"`{e.op}` cannot combine {' and '.join(type_name(v) for v in values)}"
    if isinstance(e, m.Neg):
        return f"cannot negate {type_name(values[0])}"
    if isinstance(e, m.Call):
        return f"`{e.function}` cannot take {', '.join(type_name(v) for v in values)}"
    return "a type error"
