"""Compile IR expressions ONCE into Python closures (the engine's fast path).

Every compiled expression is a function `f(input, risk) -> value` returning a
JSON value, `MISSING` or `ERROR` with exactly the meaning of the expression
table in docs/semantics.md.  Common shapes are fused into one closure (an
attribute compared with a literal, membership in a literal list, a literal
path glob), attribute paths become `dict.get` chains, and `and`/`or` stop
early only when the remaining operands provably cannot produce an ERROR (the
semantics forbid a short-circuit that hides an error).  Nothing here walks the
tree at request time; `mcpdsl.evaluate.interp` is the tree-walking twin used by
`explain()` and by the tests as an independent oracle.
"""

from __future__ import annotations

import ipaddress
import operator
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal, DivisionByZero, InvalidOperation
from functools import cache, lru_cache
from types import CodeType
from typing import Any

from mcpdsl.evaluate.values import (
    ERROR,
    INT_LIMIT,
    MISSING,
    checked,
    fast_literal,
    go_lower,
    go_upper,
    json_eq,
    json_in,
    lookup_slow,
    num_cmp,
    num_eq,
    to_decimal,
)
from mcpdsl.ir import args, globs
from mcpdsl.ir import model as m

Fn = Callable[[dict[str, Any], Decimal], Any]

_ORDER_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_CMP_TEST: dict[str, Callable[[int], bool]] = {
    "<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    ">": lambda c: c > 0,
    ">=": lambda c: c >= 0,
}


@dataclass(frozen=True, slots=True)
class Compiled:
    """A compiled expression and what is statically known about its results."""

    fn: Fn
    never_error: bool = False  # the value is never ERROR
    bool_only: bool = False  # the value is always True, False or MISSING
    reads_now: bool = False
    reads_risk: bool = False


# ----------------------------------------------------------------- helpers


@lru_cache(maxsize=65536)
def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def path_matcher(pattern: str) -> Callable[[str], bool]:
    """A fast predicate with exactly `globs.matches(pattern, path)`'s meaning.

    Cached: the rules of a tree share few patterns, and one shared matcher
    stays in the CPU's caches where a thousand equal ones would not.
    """
    segments = pattern.split("/")[1:]
    if globs.is_literal(pattern):
        return lambda path: globs.strip_query(path) == pattern
    if segments[-1] == "**" and all("*" not in s for s in segments[:-1]):
        prefix = "/" + "/".join(segments[:-1]) if len(segments) > 1 else ""
        slash = prefix + "/"

        def prefix_match(path: str) -> bool:
            if "?" in path or "#" in path:
                path = globs.strip_query(path)
            return path == prefix or path.startswith(slash)

        return prefix_match
    regex = globs.compiled(pattern)
    return lambda path: regex.fullmatch(globs.strip_query(path)) is not None


@cache
def getter(root: str, path: tuple[str, ...]) -> Fn:
    """`root.a.b` as a `dict.get` chain: MISSING when a step is absent or not an object."""
    if root == "risk":
        return lambda inp, risk: risk
    lines = ["def get(inp, risk):", f"    v = inp.get({root!r}, M)"]
    if root == args.ROOT:
        # a tool call whose arguments nobody read: every `args.*` is ERROR (mcpdsl.ir.args)
        lines.append(
            "    if type(v) is not dict and not isinstance(v, dict): return E if U(inp) else M"
        )
    for i, step in enumerate(path):
        rest = path[i:]
        lines.append(f"    if type(v) is not dict: return S(v, {rest!r}) if v is not M else M")
        lines.append(f"    v = v.get({step!r}, M)")
    # an ASCII string, boolean, null or MISSING is returned as it is; anything
    # else is checked (a number's range, a container's contents, a subclass)
    lines.append("    t = type(v)")
    # a non-ASCII string is checked for lone surrogates (OPA's JSON reads them as U+FFFD)
    lines.append("    if t is str: return v if v.isascii() else C(v)")
    lines.append("    if t is bool or v is M or v is None: return v")
    lines.append("    if t is int and -L < v < L or t is float and v - v == 0.0: return v")
    lines.append("    return C(v)")
    namespace: dict[str, Any] = {
        "M": MISSING, "E": ERROR, "S": lookup_slow, "C": checked, "L": INT_LIMIT, "U": args.unread
    }  # fmt: skip
    exec(compile("\n".join(lines), f"<attr {root}.{'.'.join(path)}>", "exec"), namespace)
    fn: Fn = namespace["get"]
    return fn


@lru_cache(maxsize=4096)
def _code(source: str, filename: str) -> CodeType:
    """The compiled generated source: the functions of one shape share it.

    Why: a tree of 10,000 rules has some 40,000 fused leaves and `and`/`or`
    nodes but few distinct shapes (the constants are passed in the namespace,
    not spelled in the source), and `compile` costs far more than `exec` of
    its result.
    """
    return compile(source, filename, "exec")


def _const(value: Any) -> Fn:
    return lambda inp, risk: value


# ---------------------------------------------------------------- compiler


def prepare_expr(e: m.Node) -> Compiled:
    """Compile one IR expression to a closure."""
    if isinstance(e, (m.Not, m.Compare, m.In, m.And, m.Or)):
        key = _leaf_key(e)
        if key is not None:
            return _shared_leaf(_Keyed(key, e))
    return _prepare(e)


def _exact(e: m.Node) -> tuple[Any, ...] | None:
    """A key of an attribute or a literal that is equal only for the same node, type for type.

    Not the node's own `==`: that one holds `true == 1` and `0.2 == 0.200`
    (Python's), which must not share a compiled leaf.
    """
    if isinstance(e, m.Attr):
        return ("attr", e.root, e.path)
    if isinstance(e, m.Literal_):
        v = e.value
        return ("literal", type(v), str(v) if isinstance(v, Decimal) else v, e.unit)
    return None


def _leaf_key(e: m.Node) -> tuple[Any, ...] | None:
    """`_exact` of a leaf (an attribute compared with, in or `not` literals), else None.

    An `and`/`or` of such leaves (or attributes) is keyed too, one level deep
    only: a key of a deeper tree would be computed again at every level.
    """
    if isinstance(e, (m.And, m.Or)):
        operands = tuple(
            _exact(o) if isinstance(o, m.Attr) else _leaf_key(o)
            for o in e.operands
            if not isinstance(o, (m.And, m.Or))
        )
        if len(operands) != len(e.operands) or None in operands:
            return None
        return ("and" if isinstance(e, m.And) else "or", operands)
    if isinstance(e, m.Not):
        operand = _exact(e.operand)
        return None if operand is None else ("not", operand)
    if isinstance(e, m.Compare):
        left, right = _exact(e.left), _exact(e.right)
        return None if left is None or right is None else ("compare", e.op, left, right)
    if isinstance(e, m.In) and isinstance(e.collection, m.ListExpr):
        item = _exact(e.item)
        items = tuple(_exact(i) for i in e.collection.items)
        if item is None or None in items:
            return None
        return ("in", e.negated, item, items)
    return None


class _Keyed:
    """A leaf with its `_leaf_key`, which alone it hashes and compares by (for `_shared_leaf`)."""

    __slots__ = ("key", "node")

    def __init__(self, key: tuple[Any, ...], node: m.Node) -> None:
        self.key = key
        self.node = node

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Keyed) and self.key == other.key


@lru_cache(maxsize=65536)
def _shared_leaf(leaf: _Keyed) -> Compiled:
    """The compiled leaf (or `and`/`or` of leaves), one per distinct one (`_leaf_key`).

    Why: a tree repeats its leaves (`request.auth.mfa`, `context.region !=
    "cn"` in hundreds of rules); a compiled leaf is a pure function of the
    leaf, and one shared closure stays in the CPU's caches where a thousand
    equal ones, each with its own namespace, would not (docs/performance.md).
    """
    return _prepare(leaf.node)


def _prepare(e: m.Node) -> Compiled:
    if isinstance(e, m.Literal_):
        return Compiled(_const(e.value), never_error=True, bool_only=isinstance(e.value, bool))
    if isinstance(e, m.Attr):
        return Compiled(
            getter(e.root, e.path),
            never_error=e.root != args.ROOT,
            reads_now=e.root == "now",
            reads_risk=e.root == "risk",
        )
    if isinstance(e, m.ListExpr):
        return _list(e)
    if isinstance(e, m.Not):
        return _fuse(e, _not(prepare_expr(e.operand)))
    if isinstance(e, (m.And, m.Or)):
        return _bool_op(isinstance(e, m.And), [prepare_expr(o) for o in e.operands])
    if isinstance(e, m.Compare):
        return _fuse(e, _compare(e))
    if isinstance(e, m.In):
        return _fuse(e, _in(e))
    if isinstance(e, m.InCidr):
        return _cidr(e)
    if isinstance(e, m.Matches):
        return _matches(e)
    if isinstance(e, m.Arith):
        return _arith(e)
    if isinstance(e, m.Default):
        return _default(e)
    if isinstance(e, m.Neg):
        return _neg(e)
    if isinstance(e, m.Call):
        return _call(e)
    raise TypeError(f"not an expression: {type(e).__name__}")


def _flags(*parts: Compiled) -> dict[str, bool]:
    return {
        "reads_now": any(p.reads_now for p in parts),
        "reads_risk": any(p.reads_risk for p in parts),
    }


def _list(e: m.ListExpr) -> Compiled:
    items = [prepare_expr(i) for i in e.items]
    if all(isinstance(i, m.Literal_) for i in e.items):
        return _const_list([i.value for i in e.items])  # type: ignore[union-attr]
    fns = [i.fn for i in items]

    def make_list(inp: dict[str, Any], risk: Decimal) -> Any:
        out = [f(inp, risk) for f in fns]
        for v in out:
            if v is ERROR:
                return ERROR
        for v in out:
            if v is MISSING:
                return MISSING
        return out

    return Compiled(make_list, never_error=all(i.never_error for i in items), **_flags(*items))


def _const_list(values: list[Any]) -> Compiled:
    value = list(values)
    return Compiled(lambda inp, risk: value, never_error=True)


def _not(x: Compiled) -> Compiled:
    f = x.fn

    def not_(inp: dict[str, Any], risk: Decimal) -> Any:
        v = f(inp, risk)
        if v is True:
            return False
        if v is False or v is MISSING:
            return True
        return ERROR

    return Compiled(not_, never_error=x.bool_only, bool_only=x.bool_only, **_flags(x))


def _bool_op(is_and: bool, operands: list[Compiled]) -> Compiled:
    """`and`/`or`: the operands in order, unrolled into one generated function.

    An operand that is not True, False or MISSING makes the result ERROR; the
    evaluation stops at a deciding operand (False for `and`, True for `or`)
    only when every later operand provably gives True, False or MISSING
    (`bool_only`), so that stopping cannot hide an ERROR.
    """
    decided = not is_and  # `and` is decided by a false operand, `or` by a true one
    lines = ["def bool_op(inp, risk):", f"    result = {is_and}"]
    namespace: dict[str, Any] = {"M": MISSING, "E": ERROR}
    for i, operand in enumerate(operands):
        namespace[f"F{i}"] = operand.fn
        safe = all(o.bool_only for o in operands[i + 1 :])
        stop = f"return {decided}" if safe else f"result = {decided}"
        lines.append(f"    v = F{i}(inp, risk)")
        if is_and:
            lines += [
                "    if v is not True:",
                "        if v is not False and v is not M: return E",
                f"        {stop}",
            ]
        else:
            lines += [
                "    if v is True:",
                f"        {stop}",
                "    elif v is not False and v is not M: return E",
            ]
    lines.append("    return result")
    exec(_code("\n".join(lines), "<and>" if is_and else "<or>"), namespace)
    bool_only = all(o.bool_only for o in operands)
    return Compiled(
        namespace["bool_op"], never_error=bool_only, bool_only=bool_only, **_flags(*operands)
    )


# ------------------------------------------------------------- comparisons


def _compare(e: m.Compare) -> Compiled:
    left, right = prepare_expr(e.left), prepare_expr(e.right)
    flags = _flags(left, right)
    safe = left.never_error and right.never_error
    eq_safe = safe and e.op in ("==", "!=")
    if isinstance(e.right, m.Literal_) and not isinstance(e.left, m.Literal_):
        fused = _compare_literal(e.op, left, e.right.value)
        if fused is not None:
            return Compiled(fused, never_error=eq_safe, bool_only=eq_safe, **flags)
    if isinstance(e.left, m.Literal_) and not isinstance(e.right, m.Literal_):
        swapped = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}[e.op]
        fused = _compare_literal(swapped, right, e.left.value)
        if fused is not None:
            return Compiled(fused, never_error=eq_safe, bool_only=eq_safe, **flags)
    fa, fb = left.fn, right.fn
    if e.op in ("==", "!="):
        negate = e.op == "!="

        def equal(inp: dict[str, Any], risk: Decimal) -> Any:
            a, b = fa(inp, risk), fb(inp, risk)
            if a is ERROR or b is ERROR:
                return ERROR
            if a is MISSING or b is MISSING:
                return False
            return json_eq(a, b) is not negate

        return Compiled(equal, never_error=safe, bool_only=safe, **flags)
    py_op = _ORDER_OPS[e.op]
    test = _CMP_TEST[e.op]

    def order(inp: dict[str, Any], risk: Decimal) -> Any:
        a, b = fa(inp, risk), fb(inp, risk)
        if a is ERROR or b is ERROR:
            return ERROR
        if a is MISSING or b is MISSING:
            return False
        ta, tb = type(a), type(b)
        if (ta is int or ta is float) and (tb is int or tb is float):
            return py_op(a, b)
        if (ta is int or ta is float or ta is Decimal) and (
            tb is int or tb is float or tb is Decimal
        ):
            return test(num_cmp(a, b))
        return ERROR

    return Compiled(order, **flags)


def _compare_literal(op: str, side: Compiled, literal: Any) -> Fn | None:
    """`expr OP literal` fused into one closure."""
    f = side.fn
    if isinstance(literal, bool):
        if op not in ("==", "!="):
            return None
        negate = op == "!="

        def eq_bool(inp: dict[str, Any], risk: Decimal) -> Any:
            v = f(inp, risk)
            if v is MISSING:
                return False
            if v is ERROR:
                return ERROR
            return (v is literal) is not negate

        return eq_bool
    if isinstance(literal, str):
        if op not in ("==", "!="):
            return None
        negate = op == "!="

        def eq_str(inp: dict[str, Any], risk: Decimal) -> Any:
            v = f(inp, risk)
            if type(v) is str:
                return (v == literal) is not negate
            if v is MISSING:
                return False
            if v is ERROR:
                return ERROR
            return negate

        return eq_str
    assert isinstance(literal, Decimal)
    exact = literal
    fast = fast_literal(literal)
    if op in ("==", "!="):
        negate = op == "!="

        def eq_num(inp: dict[str, Any], risk: Decimal) -> Any:
            v = f(inp, risk)
            t = type(v)
            if t is int or t is float:
                if fast is not None:
                    return (v == fast) is not negate
                return num_eq(v, exact) is not negate
            if t is Decimal:
                return (v == exact) is not negate
            if v is MISSING:
                return False
            if v is ERROR:
                return ERROR
            return negate

        return eq_num
    py_op = _ORDER_OPS[op]
    if fast is None:
        test = _CMP_TEST[op]

        def order_exact(inp: dict[str, Any], risk: Decimal) -> Any:
            v = f(inp, risk)
            t = type(v)
            if t is int or t is float or t is Decimal:
                return test(num_cmp(v, exact))
            if v is MISSING:
                return False
            return ERROR

        return order_exact

    def order_num(inp: dict[str, Any], risk: Decimal) -> Any:
        v = f(inp, risk)
        t = type(v)
        if t is int or t is float:
            return py_op(v, fast)
        if t is Decimal:
            return py_op(v, exact)
        if v is MISSING:
            return False
        return ERROR

    return order_num


def _in(e: m.In) -> Compiled:
    item, coll = prepare_expr(e.item), prepare_expr(e.collection)
    flags = _flags(item, coll)
    negate = e.negated
    fi = item.fn
    if isinstance(e.collection, m.ListExpr) and all(
        isinstance(i, m.Literal_) for i in e.collection.items
    ):
        values = [i.value for i in e.collection.items]  # type: ignore[union-attr]
        strings = frozenset(v for v in values if isinstance(v, str))
        others = [v for v in values if not isinstance(v, str)]
        safe = item.never_error

        if not others:

            def in_strings(inp: dict[str, Any], risk: Decimal) -> Any:
                v = fi(inp, risk)
                if type(v) is str:
                    return (v in strings) is not negate
                if v is MISSING:
                    return False
                if v is ERROR:
                    return ERROR
                return negate

            return Compiled(in_strings, never_error=safe, bool_only=safe, **flags)

        def in_literals(inp: dict[str, Any], risk: Decimal) -> Any:
            v = fi(inp, risk)
            if v is MISSING:
                return False
            if v is ERROR:
                return ERROR
            if type(v) is str:
                return (v in strings) is not negate
            return json_in(v, others) is not negate

        return Compiled(in_literals, never_error=safe, bool_only=safe, **flags)
    fc = coll.fn

    def member(inp: dict[str, Any], risk: Decimal) -> Any:
        x, y = fi(inp, risk), fc(inp, risk)
        if x is ERROR or y is ERROR:
            return ERROR
        if x is MISSING or y is MISSING:
            return False
        if type(y) is list or type(y) is tuple:
            return json_in(x, y) is not negate
        return ERROR

    return Compiled(member, **flags)


def _cidr(e: m.InCidr) -> Compiled:
    x = prepare_expr(e.operand)
    f = x.fn
    network = ipaddress.ip_network(e.cidr, strict=False)

    def in_cidr(inp: dict[str, Any], risk: Decimal) -> Any:
        v = f(inp, risk)
        if type(v) is str:
            address = parse_ip(v) if "%" not in v else None  # no IPv6 zones
            if address is None or address.version != network.version:
                return False
            return address in network
        if v is MISSING:
            return False
        return ERROR

    return Compiled(in_cidr, **_flags(x))


def _matches(e: m.Matches) -> Compiled:
    x = prepare_expr(e.operand)
    f = x.fn
    match = path_matcher(e.pattern)

    def matches(inp: dict[str, Any], risk: Decimal) -> Any:
        v = f(inp, risk)
        if type(v) is str:
            return match(v)
        if v is MISSING:
            return False
        return ERROR

    return Compiled(matches, **_flags(x))


# ------------------------------------------------------------------ fusion

_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _leaf_test(e: m.Node) -> tuple[m.Attr, list[str], Any] | None:
    """`(attribute, test lines, constant K)` of a leaf `_fuse` can inline, else None.

    The test lines see the attribute's value as `v` and return the leaf's
    result only for the plain values whose result is certain (an ASCII `str`,
    a `bool`, a finite `float`, an `int` in range, MISSING); anything else
    falls through to the leaf's own closure.
    """
    if isinstance(e, m.Not) and isinstance(e.operand, m.Attr) and e.operand.root != "risk":
        return (
            e.operand,
            ["if v is True: return False", "if v is False or v is M: return True"],
            None,
        )
    if (
        isinstance(e, m.In)
        and isinstance(e.item, m.Attr)
        and e.item.root != "risk"
        and isinstance(e.collection, m.ListExpr)
    ):
        values = [i.value if isinstance(i, m.Literal_) else None for i in e.collection.items]
        if not all(type(v) is str for v in values):
            return None
        op = "not in" if e.negated else "in"
        return e.item, [f"if type(v) is str and v.isascii(): return v {op} K"], frozenset(values)
    if not isinstance(e, m.Compare):
        return None
    op, attr, literal = e.op, e.left, e.right
    if isinstance(attr, m.Literal_):
        op, attr, literal = _FLIP[op], e.right, e.left
    if not isinstance(attr, m.Attr) or not isinstance(literal, m.Literal_):
        return None
    value = literal.value
    if attr.root == "risk":
        if not isinstance(value, Decimal):
            return None
        return attr, [f"return risk {op} K"], value  # `_fuse` checks the type of risk
    if isinstance(value, bool):
        if op not in ("==", "!="):
            return None
        same = "is" if op == "==" else "is not"
        return attr, [f"if v is True or v is False: return v {same} K"], value
    if isinstance(value, str):
        if op not in ("==", "!="):
            return None
        return attr, [f"if type(v) is str and v.isascii(): return v {op} K"], value
    fast = fast_literal(value) if isinstance(value, Decimal) else None
    if fast is None:
        return None
    return (
        attr,
        [
            "t = type(v)",
            f"if t is int and -L < v < L or t is float and v - v == 0.0: return v {op} K",
        ],
        fast,
    )


def _fuse(e: m.Node, slow: Compiled) -> Compiled:
    """`slow` with the attribute read inlined into the test, for the common leaves.

    Why: a leaf such as `context.tier == "gold"` is otherwise two calls (the
    comparison and the `getter` it calls), and conditions are mostly such
    leaves.  The generated function reads the path with `dict.get` and decides
    only the values whose result is certain; for anything else (a step that is
    not a plain dict, a subclass, a number to check, a non-ASCII string) it
    calls `slow`, the leaf's own closure, which reads the input again: the
    result is always `slow`'s.  A missing attribute gives what `slow` gives
    for MISSING (`not x` is true, every comparison false).
    """
    leaf = _leaf_test(e)
    if leaf is None:
        return slow
    attr, tests, constant = leaf
    missing = "True" if isinstance(e, m.Not) else "False"
    if attr.root == "risk":
        lines = ["def fused(inp, risk):", "    if type(risk) is not D: return SLOW(inp, risk)"]
        lines += [f"    {t}" for t in tests]
    else:
        lines = ["def fused(inp, risk):", f"    v = inp.get({attr.root!r}, M)"]
        for i, step in enumerate(attr.path):
            # no `args` object may be ERROR (mcpdsl.ir.args.unread): the leaf's own closure says
            fallback = "SLOW(inp, risk)" if i == 0 and attr.root == args.ROOT else missing
            lines.append(
                f"    if type(v) is not dict: return {fallback} if v is M else SLOW(inp, risk)"
            )
            lines.append(f"    v = v.get({step!r}, M)")
        lines += [f"    {t}" for t in tests]
        lines.append(f"    if v is M: return {missing}")
        lines.append("    return SLOW(inp, risk)")
    namespace: dict[str, Any] = {
        "M": MISSING, "D": Decimal, "L": INT_LIMIT, "K": constant, "SLOW": slow.fn
    }  # fmt: skip
    exec(_code("\n".join(lines), f"<fused {attr.root}.{'.'.join(attr.path)}>"), namespace)
    return replace(slow, fn=namespace["fused"])


# ------------------------------------------------------------- arithmetic


def arith(op: str, a: Any, b: Any) -> Any:
    """`a OP b` on two evaluated operands (shared with the interpreter)."""
    if a is ERROR or b is ERROR:
        return ERROR
    if a is MISSING or b is MISSING:
        return MISSING
    ta, tb = type(a), type(b)
    if op == "+" and ta is str and tb is str:
        return a + b
    if ta not in (int, float, Decimal) or tb not in (int, float, Decimal):
        return ERROR
    if ta is int and tb is int and op != "/":
        return a + b if op == "+" else (a - b if op == "-" else a * b)
    x, y = to_decimal(a), to_decimal(b)
    try:
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        if y == 0:
            return ERROR
        return x / y
    except (InvalidOperation, DivisionByZero, OverflowError):  # pragma: no cover - huge values
        return ERROR


def _arith(e: m.Arith) -> Compiled:
    left, right = prepare_expr(e.left), prepare_expr(e.right)
    fa, fb, op = left.fn, right.fn, e.op
    return Compiled(
        lambda inp, risk: arith(op, fa(inp, risk), fb(inp, risk)), **_flags(left, right)
    )


def _default(e: m.Default) -> Compiled:
    x, y = prepare_expr(e.operand), prepare_expr(e.fallback)
    fx, fy = x.fn, y.fn

    def default(inp: dict[str, Any], risk: Decimal) -> Any:
        v = fx(inp, risk)
        return fy(inp, risk) if v is MISSING else v

    return Compiled(
        default,
        never_error=x.never_error and y.never_error,
        bool_only=x.bool_only and y.bool_only,
        **_flags(x, y),
    )


def negate(v: Any) -> Any:
    if v is MISSING or v is ERROR:
        return v
    t = type(v)
    if t is int or t is float or t is Decimal:
        return -v
    return ERROR


def _neg(e: m.Neg) -> Compiled:
    x = prepare_expr(e.operand)
    f = x.fn
    return Compiled(lambda inp, risk: negate(f(inp, risk)), **_flags(x))


def call(function: str, args: list[Any]) -> Any:
    """A built-in function on evaluated arguments (shared with the interpreter)."""
    if any(a is MISSING for a in args):  # the table: MISSING before ERROR for functions
        return MISSING
    if any(a is ERROR for a in args):
        return ERROR
    if function in ("lower", "upper"):
        s = args[0]
        if type(s) is not str:
            return ERROR
        return go_lower(s) if function == "lower" else go_upper(s)  # OPA's (Go's) mapping
    if function == "len":
        x = args[0]
        if type(x) is str or type(x) is list or type(x) is tuple:
            return len(x)
        return ERROR
    a, b = args
    if function == "contains" and (type(a) is list or type(a) is tuple):
        return json_in(b, a)
    if type(a) is not str or type(b) is not str:
        return ERROR
    if function == "startswith":
        return a.startswith(b)
    if function == "endswith":
        return a.endswith(b)
    return b in a


def _call(e: m.Call) -> Compiled:
    args = [prepare_expr(a) for a in e.args]
    fns = tuple(a.fn for a in args)
    name = e.function
    if len(fns) == 1:
        (f,) = fns
        fn: Fn = lambda inp, risk: call(name, [f(inp, risk)])  # noqa: E731
    else:
        fn = lambda inp, risk: call(name, [g(inp, risk) for g in fns])  # noqa: E731
    return Compiled(fn, **_flags(*args))


def fires(value: Any) -> bool | None:
    """A condition's outcome: True fires, False does not, None is an evaluation error."""
    if value is True:
        return True
    if value is False or value is MISSING:
        return False
    return None
