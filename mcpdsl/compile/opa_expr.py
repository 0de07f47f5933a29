"""Expressions to Rego: each IR operator becomes one call of a `data.mcp.lib` helper.

A sub-expression's result is a Rego object: `{"v": x}` (a value), `{"m": true}`
(MISSING) or `{"e": true}` (ERROR); the helpers in `targets/opa/lib.rego.j2`
implement the table of docs/semantics.md on those, so a condition compiles to
a nested call expression and never to Rego's own (two-valued, undefined-
propagating, cross-type-ordering) operators.

    >>> from decimal import Decimal
    >>> from mcpdsl.ir import model as m
    >>> e = m.Compare(op="<", left=m.Attr(root="context", path=("n",)),
    ...               right=m.Literal_(value=Decimal("0.7")))
    >>> render(compile_expr(e))
    'lib.cmp_lt(lib.attr(input, ["context", "n"]), {"v": 0.7})'

Every user string goes through `rego_string` (JSON with `ensure_ascii`, which
is a valid Rego string literal), so no input can end a literal early.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from mcpdsl.compile.serialize import decimal_str
from mcpdsl.ir import model as m
from mcpdsl.ir.args import ROOT as ARGS_ROOT
from mcpdsl.ir.globs import glob_regex
from mcpdsl.ir.reads import reads_risk
from mcpdsl.ir.stats import ROOT as STATS_ROOT

#: The Rego rule holding the policy's clamped risk (a number in 0..1).
RISK_RULE = "_risk"

WIDTH = 96  # a call is broken over lines when its one-line form is longer
TAB = 4  # the width a tab counts for when measuring


def rego_string(text: str) -> str:
    """A Rego string literal with exactly the value `text`.

    >>> rego_string('a"\\n}')
    '"a\\\\"\\\\n}"'
    """
    return json.dumps(text, ensure_ascii=True)


def rego_number(value: Decimal) -> str:
    """A Rego number literal: plain decimal digits, no exponent."""
    if not value.is_finite():  # pragma: no cover - the front end never produces these
        raise ValueError(f"not a finite number: {value}")
    return decimal_str(value)


def rego_array(items: list[str] | tuple[str, ...]) -> str:
    """A Rego array of string literals."""
    return "[" + ", ".join(rego_string(i) for i in items) + "]"


T = TypeVar("T")


def _each(
    operands: Sequence[m.Expr], var: str, build: Callable[[m.Expr, str], list[T] | None]
) -> list[T] | None:
    """`build` of every operand (variables prefixed `var0`, `var1`, ...), concatenated.

    None when one operand has no plain form: the whole expression then keeps
    the `lib` helper, as a partial plain form would change its meaning.
    """
    out: list[T] = []
    for i, operand in enumerate(operands):
        sub = build(operand, f"{var}{i}")
        if sub is None:
            return None
        out += sub
    return out


@dataclass(frozen=True)
class Call:
    """A call or array whose arguments may be laid out one per line."""

    open: str  # "lib.cmp_eq(" or "["
    args: tuple[Code, ...]
    close: str  # ")" or "]"


Code = str | Call


def _flat(code: Code) -> str:
    if isinstance(code, str):
        return code
    return code.open + ", ".join(_flat(a) for a in code.args) + code.close


def render(code: Code, indent: int = 0) -> str:
    """The Rego text of `code`; calls too long for one line get one argument per line.

    `indent` is the number of tabs before the line the code starts on.
    """
    flat = _flat(code)
    if isinstance(code, str) or indent * TAB + len(flat) <= WIDTH or not code.args:
        return flat
    only = code.args[0]
    if len(code.args) == 1 and isinstance(only, Call) and only.open == "[" and only.args:
        return code.open + _broken(only, indent) + code.close  # `f([` ... `])`
    return _broken(code, indent)


def _broken(code: Call, indent: int) -> str:
    inner = "\t" * (indent + 1)
    lines = [code.open]
    for i, arg in enumerate(code.args):
        comma = "," if i < len(code.args) - 1 else ""
        lines.append(inner + render(arg, indent + 1) + comma)
    lines.append("\t" * indent + code.close)
    return "\n".join(lines)


def lib_call(name: str, *args: Code) -> Call:
    """A call of the `data.mcp.lib` helper `name` (imported as `lib`)."""
    return Call(f"lib.{name}(", args, ")")


def _array(items: list[Code]) -> Call:
    return Call("[", tuple(items), "]")


def literal(value: bool | str | Decimal) -> str:
    """A literal as a value result `{"v": ...}`."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = rego_string(value)
    else:
        text = rego_number(value)
    return '{"v": ' + text + "}"


_COMPARE = {
    "==": "cmp_eq",
    "!=": "cmp_ne",
    "<": "cmp_lt",
    "<=": "cmp_le",
    ">": "cmp_gt",
    ">=": "cmp_ge",
}
_ARITH = {"+": "op_add", "-": "op_sub", "*": "op_mul", "/": "op_div"}
_FUNCTIONS = {
    "lower": "fn_lower",
    "upper": "fn_upper",
    "len": "fn_len",
    "startswith": "fn_startswith",
    "endswith": "fn_endswith",
    "contains": "fn_contains",
}


def compile_expr(e: m.Expr) -> Code:
    """The Rego code of one IR expression (a result object, never undefined)."""
    if isinstance(e, m.Literal_):
        return literal(e.value)
    if isinstance(e, m.Attr):
        return attribute(e)
    if isinstance(e, m.ListExpr):
        return lib_call("list_of", _array([compile_expr(i) for i in e.items]))
    if isinstance(e, m.Not):
        return lib_call("bool_not", compile_expr(e.operand))
    if isinstance(e, m.And):
        return lib_call("bool_and", _array([compile_expr(o) for o in e.operands]))
    if isinstance(e, m.Or):
        return lib_call("bool_or", _array([compile_expr(o) for o in e.operands]))
    if isinstance(e, m.Compare):
        return lib_call(_COMPARE[e.op], compile_expr(e.left), compile_expr(e.right))
    if isinstance(e, m.In):
        name = "not_in_list" if e.negated else "in_list"
        return lib_call(name, compile_expr(e.item), compile_expr(e.collection))
    if isinstance(e, m.InCidr):
        return lib_call("in_cidr", compile_expr(e.operand), rego_string(e.cidr))
    if isinstance(e, m.Matches):
        return lib_call("glob_match", compile_expr(e.operand), rego_string(glob_regex(e.pattern)))
    if isinstance(e, m.Arith):
        return lib_call(_ARITH[e.op], compile_expr(e.left), compile_expr(e.right))
    if isinstance(e, m.Default):
        return lib_call("op_default", compile_expr(e.operand), compile_expr(e.fallback))
    if isinstance(e, m.Neg):
        return lib_call("op_neg", compile_expr(e.operand))
    if isinstance(e, m.Call):
        return lib_call(_FUNCTIONS[e.function], *(compile_expr(a) for a in e.args))
    raise AssertionError(f"unexpected expression {type(e).__name__}")  # pragma: no cover


def attribute(e: m.Attr) -> str:
    """`risk`, `now.FIELD`, `action` or `root.a.b` as a result object."""
    if e.root == "risk":
        return '{"v": ' + RISK_RULE + "}"
    if e.root == STATS_ROOT:
        # only the decision server counts; `input.stats` is whatever the caller wrote, so
        # it is never read: unknown, an ERROR (a risk term counts, a `require` applies)
        return "lib.error"
    if e.root == "now":
        return f"lib.now(input, {rego_string(e.path[0])})"
    if e.root == ARGS_ROOT:
        # ERROR on a tool call without an `args` object (mcpdsl.ir.args), else the attribute
        return f"lib.arg(input, {rego_array(e.path)})"
    if e.root == "request" and (not e.path or e.path[0] in ("path", "query")):
        # request.path without its query, request.query its map (lib.canonical)
        return f"lib.attr(lib.canonical(input), {rego_array((e.root, *e.path))})"
    return f"lib.attr(input, {rego_array((e.root, *e.path))})"


def uses_cidr(e: m.Node | None) -> bool:
    """Whether an expression contains `in cidr` (the lib then needs `net.cidr_*`)."""
    if e is None:
        return False
    if isinstance(e, m.InCidr):
        return True
    for value in e.__dict__.values():
        if isinstance(value, m.Node) and uses_cidr(value):
            return True
        if isinstance(value, tuple) and any(isinstance(v, m.Node) and uses_cidr(v) for v in value):
            return True
    return False


# ------------------------------------------------------------------ plain fast path


def _plain_ref(e: m.Attr) -> str | None:
    """`input["root"]["a"]`: the attribute as a Rego reference (undefined when MISSING).

    A string key reads a value only out of an object (an array, a string or a
    number indexed by a string is undefined), which is exactly when `lib.attr`
    gives a value.  `risk` is the policy's risk rule; `now` has no plain form.
    """
    if e.root == "risk":
        return RISK_RULE
    if e.root in ("now", STATS_ROOT):
        return None
    if e.root == "request" and (not e.path or e.path[0] in ("path", "query")):
        return None  # read through lib.canonical (the path without its query)
    return "input" + "".join(
        f".{p}" if _IDENT.fullmatch(p) and p not in _KEYWORDS else f"[{rego_string(p)}]"
        for p in (e.root, *e.path)
    )


def _plain_literal(e: m.Expr) -> str | None:
    if not isinstance(e, m.Literal_):
        return None
    value = e.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return rego_string(value)
    return rego_number(value)


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Rego v1 keywords: never written as `.name` in a reference.
_KEYWORDS = frozenset(
    {
        "as", "contains", "data", "default", "else", "every", "false", "if", "import", "in",
        "input", "not", "null", "package", "some", "true", "with",
    }
)  # fmt: skip

_MIRROR = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def fires_lines(e: m.Expr, var: str = "v") -> list[str] | None:
    """Plain Rego body lines that hold exactly when `e`'s result is the value true.

    The three-valued helpers of `lib` cost a function call per operator; for
    the common shapes of an allow condition the "result is true" test needs
    none: `and` is true iff every operand is true; `x == lit` iff x is a value
    equal to lit; `x < n` iff x is a number below n (any other type is ERROR,
    not true); `x` iff x is true; `not x` iff x is false or MISSING; `x in
    [lits]` iff x equals one of them.  Anything else (`or`, which an error in
    any operand makes ERROR, arithmetic, functions, `now`) gives None and the
    caller uses `lib.fires(...)`.  `var` prefixes the local variables, so
    several conditions can share a body.  Equality lines on a request
    attribute are ones OPA's rule index can key the rule on.
    """
    if isinstance(e, m.And):
        return _each(e.operands, var, fires_lines)
    if isinstance(e, m.Attr):
        ref = _plain_ref(e)
        return None if ref is None or e.root == "risk" else [f"{ref} == true"]
    if isinstance(e, m.Not) and isinstance(e.operand, m.Attr):
        attr = e.operand
        if attr.root in ("risk", "now", STATS_ROOT, ARGS_ROOT):
            return None  # (`not args.x` is ERROR, never true, on a call without `args`)
        path = rego_array((attr.root, *attr.path))
        return ["is_object(input)", f"object.get(input, {path}, false) == false"]
    if isinstance(e, m.Compare):
        oriented = _attr_op_literal(e)
        if oriented is None:
            return None
        attr, op, right = oriented
        ref, literal = _plain_ref(attr), _plain_literal(right)
        if ref is None or literal is None:
            return None
        if op in ("==", "!="):
            return [f"{ref} {op} {literal}"]
        if not isinstance(right.value, Decimal):
            return None  # ordering a non-number is ERROR, never true: keep the helper
        return [f"{var} := {ref}", f"is_number({var})", f"{var} {op} {literal}"]
    if isinstance(e, m.In) and not e.negated and isinstance(e.item, m.Attr):
        ref = _plain_ref(e.item)
        items = _literal_list(e.collection)
        if ref is None or items is None:
            return None
        return [f"some {var} in {items}", f"{ref} == {var}"]
    return None


def _attr_op_literal(e: m.Compare) -> tuple[m.Attr, str, m.Literal_] | None:
    """`attr OP literal`, with `literal OP attr` turned around (`_MIRROR`); else None."""
    left, right = e.left, e.right
    op: str = e.op
    if isinstance(left, m.Literal_) and isinstance(right, m.Attr):
        left, right, op = right, left, _MIRROR[op]
    if not isinstance(left, m.Attr) or not isinstance(right, m.Literal_):
        return None
    return left, op, right


def _literal_list(collection: m.Expr) -> str | None:
    """`[lit, ...]` of a non-empty list of plain literals, or None."""
    if not isinstance(collection, m.ListExpr):
        return None
    items = [_plain_literal(i) for i in collection.items]
    if not items or any(i is None for i in items):
        return None
    return "[" + ", ".join(i for i in items if i is not None) + "]"


def _leaf_ref(e: m.Expr) -> str | None:
    """The plain reference of an attribute a fail-closed test may read, or None.

    `args` is left out: on a tool call without an `args` object its attributes
    are ERROR (which fires a deny rule), where the plain reference is only
    undefined.  `risk` is handled by the comparisons (always a number).
    """
    if not isinstance(e, m.Attr) or e.root in ("risk", ARGS_ROOT):
        return None
    return _plain_ref(e)


def _boolean_attr(e: m.Expr) -> m.Attr | None:
    """The attribute of `x` or `not x` (both ERROR exactly when x is present and not a boolean)."""
    if isinstance(e, m.Attr):
        return e
    if isinstance(e, m.Not) and isinstance(e.operand, m.Attr):
        return e.operand
    return None


def _ordering(e: m.Compare) -> tuple[str, str, str] | None:
    """(reference, operator, number literal) of `attr OP number` (either side), or None."""
    oriented = _attr_op_literal(e)
    if oriented is None:
        return None
    left, op, right = oriented
    literal = _plain_literal(right)
    ref = RISK_RULE if left.root == "risk" else _leaf_ref(left)
    if ref is None or literal is None:
        return None
    if op not in ("==", "!=") and not isinstance(right.value, Decimal):
        return None  # ordering with a string: ERROR whenever present (kept on the helper)
    return ref, op, literal


def _errs_bodies(e: m.Expr, var: str) -> list[list[str]] | None:
    """Alternatives of plain lines, one of which holds exactly when `e`'s result is ERROR.

    An attribute or `not attribute` errs when it is present and not a boolean;
    an ordering with a number when its attribute is present and not a number;
    `==`, `!=` and `in [literals]` on an attribute never err; `and` and `or`
    err when one operand errs (an erring operand is not true, so `and` is not
    all true).  None: no plain form.
    """
    if isinstance(e, (m.And, m.Or)):
        return _each(e.operands, var, _errs_bodies)
    flag = _boolean_attr(e)
    if flag is not None:
        ref = _leaf_ref(flag)
        return None if ref is None else [[f"{var} := {ref}", f"not is_boolean({var})"]]
    if isinstance(e, m.Compare):
        found = _ordering(e)
        if found is None:
            return None
        ref, op, _ = found
        if op in ("==", "!=") or ref == RISK_RULE:
            return []
        return [[f"{var} := {ref}", f"not is_number({var})"]]
    if isinstance(e, m.In) and not e.negated and _in_literals(e) is not None:
        return []
    return None


def _in_literals(e: m.In) -> tuple[str, str] | None:
    """(reference, `[literals]`) of `attr in [literals]`, or None."""
    ref = _leaf_ref(e.item)
    items = _literal_list(e.collection)
    if ref is None or items is None:
        return None
    return ref, items


def fires_or_errs_bodies(e: m.Expr, var: str = "v") -> list[list[str]] | None:
    """Alternatives of plain Rego body lines: one holds iff `e` fires or errs.

    A deny rule, a risk term and a `require` count an ERROR as fired (fail
    closed): their test is "the result is neither false nor MISSING".  For the
    common shapes that test needs no helper, but may need several bodies (a
    rule with several bodies fires when one does): `x` holds unless x is false
    or absent (`x != false`); `not x` unless x is true (`not x == true`); `x <
    n` when x is a number below n or present and not a number; `x == lit`,
    `x != lit` and `x in [lits]` exactly when they are true (they never err);
    `a and b` when all fire or one errs; `a or b` when one fires or errs.
    None: no plain form (the caller uses `lib.fires_or_errs(...)`).
    """
    if isinstance(e, m.Or):
        return _each(e.operands, var, fires_or_errs_bodies)
    if isinstance(e, m.And):
        fired = fires_lines(e, var)
        errs = _each(e.operands, var, _errs_bodies)
        return None if fired is None or errs is None else [fired, *errs]
    if isinstance(e, m.Attr):
        ref = _leaf_ref(e)
        return None if ref is None else [[f"{ref} != false"]]
    if isinstance(e, m.Not) and isinstance(e.operand, m.Attr):
        ref = _leaf_ref(e.operand)
        return None if ref is None else [[f"not {ref} == true"]]
    if isinstance(e, m.Compare):
        found = _ordering(e)
        if found is None:
            return None
        ref, op, literal = found
        if op in ("==", "!=") or ref == RISK_RULE:
            return [[f"{ref} {op} {literal}"]]
        return [
            [f"{var} := {ref}", f"is_number({var})", f"{var} {op} {literal}"],
            [f"{var} := {ref}", f"not is_number({var})"],
        ]
    if isinstance(e, m.In) and isinstance(e.item, m.Attr):
        found_in = _in_literals(e)
        if found_in is None:
            return None
        ref, items = found_in
        if e.negated:
            return [[f"{var} := {ref}", f"not {var} in {items}"]]
        return [[f"some {var} in {items}", f"{ref} == {var}"]]
    return None


def _not_errs_lines(e: m.Expr) -> list[str] | None:
    """Plain lines that hold when `e` does not err, for an input that is an object.

    `object.get` with a default of the right type reads an absent attribute
    (MISSING, not an error) as that default, and a present one as it is.
    """
    flag = _boolean_attr(e)
    if flag is not None:
        if _leaf_ref(flag) is None:
            return None
        path = rego_array((flag.root, *flag.path))
        return ["is_object(input)", f"is_boolean(object.get(input, {path}, false))"]
    if isinstance(e, m.Compare):
        found = _ordering(e)
        if found is None or found[0] == RISK_RULE:
            return None
        if found[1] in ("==", "!="):
            return []
        attr = e.left if isinstance(e.left, m.Attr) else e.right
        assert isinstance(attr, m.Attr)
        path = rego_array((attr.root, *attr.path))
        return ["is_object(input)", f"is_number(object.get(input, {path}, 0))"]
    if isinstance(e, m.In) and not e.negated and _in_literals(e) is not None:
        return []
    return None


def fires_bodies(e: m.Expr, var: str = "v") -> list[list[str]] | None:
    """Alternatives of plain Rego body lines: one holds iff `e`'s result is the value true.

    `fires_lines` when it has a plain form; for `a or b` (true when one operand
    is true and none errs) one body per operand: that operand fires, and every
    other does not err.  An operand that reads `risk` gives None: the risk is
    defined for any input, and the `is_object(input)` of the "does not err"
    lines would then differ from the helpers on an input that is no object.
    """
    lines = fires_lines(e, var)
    if lines is not None:
        return [lines]
    if not isinstance(e, m.Or):
        return None
    bodies = []
    for j, operand in enumerate(e.operands):
        fired = fires_lines(operand, f"{var}{j}")
        if fired is None or reads_risk(operand):
            return None
        body = list(fired)
        for i, other in enumerate(e.operands):
            if i == j:
                continue
            quiet = _not_errs_lines(other)
            if quiet is None:
                return None
            body += [line for line in quiet if line not in body]
        bodies.append(body)
    return bodies
