"""The encoding's vocabulary: JSON kinds, symbolic values (`Sym`), formulas (`F`).

Folding boolean helpers (`AND`/`OR`/`NOT`) keep Python constants out of z3
where possible; the module-level helpers read z3 models and IR expressions.
Shared by every theory module of `mcpdsl.analysis.encode`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import z3

from mcpdsl.ir import model as m

if TYPE_CHECKING:
    from mcpdsl.analysis.encode.state import State


# kinds of a JSON value
MISSING, NULL, BOOL, NUM, STR, LIST, OBJ, OTHER = range(8)
KIND_NAMES = ("missing", "null", "bool", "number", "string", "list", "object", "other")

DEFAULT_TIMEOUT_MS = 2000
MAX_CHAR = 0x2FFFF  # z3's largest character (unicode mode)
DEFAULT_RLIMIT = 20_000_000
NOW_FIELDS = ("hour", "minute", "weekday", "time", "date")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

OCTET = r"(0|[1-9][0-9]?|1[0-9][0-9]|2[0-4][0-9]|25[0-5])"

Bool = Any  # a z3 BoolRef or a Python bool (folded constants)


# ----------------------------------------------------------------- booleans


def AND(*xs: Bool) -> Bool:
    out = []
    for x in xs:
        if x is True:
            continue
        if x is False:
            return False
        out.append(x)
    if not out:
        return True
    if len(out) == 1:
        return out[0]
    return z3.And(*out)


def OR(*xs: Bool) -> Bool:
    out = []
    for x in xs:
        if x is False:
            continue
        if x is True:
            return True
        out.append(x)
    if not out:
        return False
    if len(out) == 1:
        return out[0]
    return z3.Or(*out)


def NOT(x: Bool) -> Bool:
    if x is True:
        return False
    if x is False:
        return True
    return z3.Not(x)


def IMPLIES(a: Bool, b: Bool) -> Bool:
    return OR(NOT(a), b)


# ------------------------------------------------------------ symbolic values


@dataclass(slots=True)
class ListVal:
    """A list: its length and its known elements (slots), each with a presence guard."""

    length: Any  # z3 ArithRef (Int) or a Python int
    slots: list[tuple[Bool, Sym]]
    exact: bool  # every element is a slot (a literal list)


@dataclass(slots=True)
class Sym:
    """The symbolic result of an expression: one guard per outcome, one value per kind."""

    missing: Bool = False
    error: Bool = False
    null: Bool = False
    isb: Bool = False
    b: Any = None
    isn: Bool = False
    n: Any = None
    iss: Bool = False
    s: Any = None
    isl: Bool = False
    lst: ListVal | None = None
    iso: Bool = False
    other: Bool = False  # a nested list/object list element (compared abstractly)
    deps: frozenset[Any] = frozenset()

    @property
    def present(self) -> Bool:
        return NOT(OR(self.missing, self.error))


@dataclass(frozen=True, slots=True)
class F:
    """A formula and the model variables it depends on (attributes, side conditions)."""

    e: Bool
    deps: frozenset[Any] = frozenset()

    def __and__(self, other: F) -> F:
        return F(AND(self.e, other.e), self.deps | other.deps)

    def __or__(self, other: F) -> F:
        return F(OR(self.e, other.e), self.deps | other.deps)

    def __invert__(self) -> F:
        return F(NOT(self.e), self.deps)


TRUE = F(True)
FALSE = F(False)


def all_of(fs: Iterable[F]) -> F:
    fs = list(fs)
    return F(AND(*(f.e for f in fs)), frozenset().union(*(f.deps for f in fs)))


def any_of(fs: Iterable[F]) -> F:
    fs = list(fs)
    return F(OR(*(f.e for f in fs)), frozenset().union(*(f.deps for f in fs)))


# --------------------------------------------------------------- glob regex


def glob_parts(pattern: str) -> list[str]:
    return pattern.split("/")[1:]


@dataclass
class Env:
    """What an expression is evaluated against besides the request: the policy's risk."""

    key: Any
    risk: Sym | None = None
    nice: F | None = None  # every risk term well typed (for natural witnesses)


@dataclass
class Outcome:
    """A solver answer: `sat` with a witness request, `unsat` (with a core), or `unknown`."""

    status: str  # "sat" | "unsat" | "unknown"
    witness: dict[str, Any] | None = None
    core: tuple[Any, ...] = ()
    reason: str = ""


@dataclass
class Stats:
    queries: int = 0
    sat: int = 0
    unsat: int = 0
    unknown: int = 0
    gave_up: int = 0  # checks answered `unknown`, a first try with `prefer` included
    seconds: float = 0.0


# ------------------------------------------------------------------ helpers


def json_key(v: Any) -> str:
    import json

    return json.dumps(v, sort_keys=True, default=str)


def lookup(request: Any, path: tuple[str, ...]) -> Any:
    node = request
    for step in path:
        if not isinstance(node, dict) or step not in node:
            return _ABSENT
        node = node[step]
    return node


_ABSENT = object()


def kind_of_value(v: Any) -> int:
    if v is _ABSENT:
        return MISSING
    if v is None:
        return NULL
    if isinstance(v, bool):
        return BOOL
    if isinstance(v, int | float | Decimal):
        return NUM
    if isinstance(v, str):
        return STR
    if isinstance(v, list | tuple):
        return LIST
    if isinstance(v, dict):
        return OBJ
    return OTHER


def int_of(v: Any) -> int:
    try:
        return int(v.as_long())
    except (AttributeError, ValueError):
        return 0


def kind_of_element(model: Any, el: Sym) -> int:
    for kind, guard in ((NULL, el.null), (BOOL, el.isb), (NUM, el.isn), (STR, el.iss)):
        if z3.is_true(model.eval(guard, model_completion=True)):
            return kind
    return OTHER


def scalar_of(model: Any, kind: int, b: Any, n: Any, s: Any) -> Any:
    if kind == NULL:
        return None
    if kind == BOOL:
        return z3.is_true(model.eval(b, model_completion=True))
    if kind == NUM:
        return number_of(model.eval(n, model_completion=True))
    if kind == STR:
        return string_of(model.eval(s, model_completion=True))
    return {}


def z3_text(s: str) -> str:
    """A Python string as z3 reads a string literal (z3 decodes `\\u{...}` escapes)."""
    return s.replace("\\", "\\u{5c}")


def string_of(v: Any) -> str:
    """A z3 string value as the Python string of its code points (no escapes)."""
    import ctypes

    from z3 import z3core

    n = z3core.Z3_get_string_length(v.ctx_ref(), v.as_ast())
    codes = (ctypes.c_uint * n)()
    z3core.Z3_get_string_contents(v.ctx_ref(), v.as_ast(), n, codes)
    return "".join(map(chr, codes))


def number_of(v: Any) -> int | float | Decimal:
    """A model's rational as the JSON number that means it (exactly when possible)."""
    if z3.is_int_value(v):
        return int(v.as_long())
    try:
        frac = Fraction(int(v.numerator_as_long()), int(v.denominator_as_long()))
    except AttributeError:  # an algebraic number: approximate
        return float(v.approx(12).as_fraction())
    if frac.denominator == 1:
        return int(frac.numerator)
    d = Decimal(frac.numerator) / Decimal(frac.denominator)
    if Fraction(d) == frac:
        f = float(d)
        return f if Decimal(repr(f)) == d else d
    return d


def container_of(request: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = request
    for step in path:
        if not isinstance(node, dict):
            return None
        nxt = node.get(step)
        if not isinstance(nxt, dict):
            return None
        node = nxt
    return node if isinstance(node, dict) else None


def bool_of(x: Sym) -> Any:
    return x.b if x.b is not None else False


def num_of(enc: State, x: Sym) -> Any:
    return x.n if x.n is not None else enc.real_val(0)


def str_of(enc: State, x: Sym) -> Any:
    return x.s if x.s is not None else enc.str_val("")


def int_term(enc: State, v: Any) -> Any:
    return z3.IntVal(v, enc.ctx) if isinstance(v, int) else v


def deps_of(syms: Iterable[Sym]) -> frozenset[Any]:
    return frozenset().union(*(s.deps for s in syms))


def sym_key(x: Sym) -> Any:
    for v in (x.s, x.n, x.b):
        if v is not None and hasattr(v, "get_id"):
            return v.get_id()
    return id(x)


def children_of(e: m.Node) -> Iterator[m.Node]:
    for value in e.__dict__.values():
        if isinstance(value, m.Node):
            yield value
        elif isinstance(value, tuple):
            for v in value:
                if isinstance(v, m.Node):
                    yield v


def project_exprs(project: m.Project) -> Iterator[m.Node]:
    for p in project.policies:
        yield from p.conditions()
