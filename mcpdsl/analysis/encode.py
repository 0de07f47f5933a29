"""The one bridge to z3: IR conditions, rule matching and decisions as SMT formulas.

This is the ONLY module of mcpdsl that imports z3; every analysis builds its
queries through it.  It is imported lazily (by `mcpdsl.analysis`) only when a
tree has something to analyse, so `mcpdsl check` of a tree without policies,
gateways or pools never pays for z3.

The request model (docs/semantics.md, exactly):

- every attribute path `root.a.b` the conditions read (plus the implicit ones:
  `principal.type/id`, `resource.type/id`, `action`, `request.path`) is one
  symbolic JSON value: a **kind** (missing, null, bool, number, string, list,
  object) and one value per kind (Bool, Real, String, a list of slots).  A path
  that is present makes its parent an object; a parent that is not an object
  makes its children missing.  MISSING and ERROR are therefore exact: `x < 1`
  on a string is ERROR, on a missing `x` false, as the semantics table says;
- an expression evaluates to a `Sym`: guards for MISSING, ERROR and each kind,
  and the value of each kind.  Conditions fire on `true`, a deny fires on
  anything but `false`/MISSING (fail closed), risk terms count when they fire
  or error, risk is the clamped exact sum;
- numbers (with units, in base units) are exact rationals; strings use z3's
  string theory: equality, prefix, suffix, contains, `lower`/`upper` (ASCII
  case mapping via `seq.map`), `len`, and globs as regular expressions that
  include the query-string stripping of `mcpdsl.ir.globs`; `in cidr` decides
  the address's bits under the network's mask: per octet the mask admits one
  interval of values, so the dotted quads inside a network are a regular
  language (IPv4 exactly; IPv6 as an abstraction over a 128-bit vector);
  lists are slots: a list attribute gets one slot per membership test in
  scope, which is enough for any satisfiable combination.

What cannot be encoded exactly (equality of two objects or of two list
attributes, IPv6 address syntax, case mapping of non-ASCII strings) becomes a
fresh unconstrained symbol: an over-approximation, so an `unsat` answer ("this
rule can never fire") stays sound, and a `sat` answer is only reported after
its witness is re-run through the engine (`mcpdsl.analysis.witness`).  One
assumption narrows the model: a path matched against a glob contains no line
feed (HTTP paths cannot, and Python's `re` treats one inconsistently at the
end of a string).

Each query runs in a fresh solver with a seed, a resource limit (deterministic)
and a wall-clock timeout; `unknown` is reported, never waited for.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import z3

from mcpdsl.ir import model as m

# kinds of a JSON value
MISSING, NULL, BOOL, NUM, STR, LIST, OBJ, OTHER = range(8)
KIND_NAMES = ("missing", "null", "bool", "number", "string", "list", "object", "other")

DEFAULT_TIMEOUT_MS = 2000
MAX_CHAR = 0x2FFFF  # z3's largest character (unicode mode)
DEFAULT_RLIMIT = 20_000_000
NOW_FIELDS = ("hour", "minute", "weekday", "time", "date")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_OCTET = r"(0|[1-9][0-9]?|1[0-9][0-9]|2[0-4][0-9]|25[0-5])"

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
    seconds: float = 0.0


class Encoder:
    """Encodes the conditions, matches and decisions of one or more projects over ONE request.

    Attribute variables are shared by path, so the old and new trees of a diff
    talk about the same request.  Results are cached by expression identity
    (and by risk context for expressions that read `risk`).
    """

    def __init__(
        self,
        projects: Sequence[m.Project],
        *,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        rlimit: int = DEFAULT_RLIMIT,
    ) -> None:
        self.ctx = z3.Context()
        self.timeout_ms = timeout_ms
        self.rlimit = rlimit
        self.stats = Stats()
        self._side: dict[Any, list[Any]] = {}
        self._side_deps: dict[Any, frozenset[Any]] = {}
        self._attr: dict[tuple[str, ...], Sym] = {}
        self._attr_vars: dict[tuple[str, ...], dict[str, Any]] = {}
        self._cache: dict[tuple[int, Any], Sym] = {}
        self._risk_reads: dict[int, bool] = {}
        self._fresh: dict[Any, Any] = {}
        self._ip6: list[tuple[tuple[str, ...], Any, Any]] = []
        self._regex: dict[str, Any] = {}
        self.approximate = False
        self._now_done = False
        self._kind_ids: dict[int, int] = {}
        _, kinds = z3.EnumSort("Kind", KIND_NAMES[:7], ctx=self.ctx)
        self.K = list(kinds)
        _, ekinds = z3.EnumSort(
            "ElementKind", ("null", "bool", "number", "string", "other"), ctx=self.ctx
        )
        self.EK = {
            NULL: ekinds[0],
            BOOL: ekinds[1],
            NUM: ekinds[2],
            STR: ekinds[3],
            OTHER: ekinds[4],
        }
        self.list_slots: dict[tuple[str, ...], int] = {}
        self.reads_now = False
        for project in projects:
            for e in _project_exprs(project):
                self._scan(e)
        ctx = self.ctx
        top = chr(MAX_CHAR)
        # a path character: anything but `/`, `?`, `#` (and a line feed, see the docstring)
        self.seg_char = z3.Union(
            z3.Range("\x00", "\x09", ctx=ctx),
            z3.Range("\x0b", '"', ctx=ctx),
            z3.Range("$", ".", ctx=ctx),
            z3.Range("0", ">", ctx=ctx),
            z3.Range("@", top, ctx=ctx),
        )
        self.any_string = z3.Full(z3.ReSort(z3.StringSort(ctx)))
        self.ascii = z3.Star(z3.Range("\x00", "\x7f", ctx=ctx))
        self.query_tail = z3.Option(
            z3.Concat(z3.Union(z3.Re("?", ctx=ctx), z3.Re("#", ctx=ctx)), self.any_string)
        )
        self._quad = self._regex_of(".".join([_OCTET] * 4))  # what `ipaddress` accepts
        if self.reads_now:
            self.attr(("now", "hour"))

    # ------------------------------------------------------------ scanning

    def _scan(self, e: m.Node) -> None:
        if isinstance(e, m.Attr) and e.root == "now":
            self.reads_now = True
        if isinstance(e, m.In) or (isinstance(e, m.Call) and e.function == "contains"):
            coll = e.collection if isinstance(e, m.In) else (e.args[0] if e.args else None)
            if coll is not None:
                for a in _attrs(coll):
                    key = (a.root, *a.path)
                    self.list_slots[key] = self.list_slots.get(key, 0) + 1
        for child in _children(e):
            self._scan(child)

    # ------------------------------------------------------------- helpers

    def bool_val(self, v: Bool) -> Any:
        if v is True or v is False:
            return z3.BoolVal(v, self.ctx)
        return v

    def str_val(self, s: str) -> Any:
        return z3.StringVal(z3_text(s), self.ctx)

    def real_val(self, d: Decimal | int | Fraction) -> Any:
        f = Fraction(d)
        return z3.RealVal(f"{f.numerator}/{f.denominator}", self.ctx)

    def fresh_bool(self, key: Any) -> Any:
        """A deterministic fresh symbol standing for something not encoded exactly."""
        self.approximate = True
        found = self._fresh.get(key)
        if found is None:
            found = z3.Bool(f"abstract!{len(self._fresh)}", self.ctx)
            self._fresh[key] = found
        return found

    def fresh_str(self, key: Any) -> Any:
        self.approximate = True
        found = self._fresh.get(key)
        if found is None:
            found = z3.String(f"abstract!{len(self._fresh)}", self.ctx)
            self._fresh[key] = found
        return found

    def ite(self, c: Bool, a: Any, b: Any) -> Any:
        if c is True:
            return a
        if c is False:
            return b
        if a is None:
            return b
        if b is None:
            return a
        if (a is True or a is False) or (b is True or b is False):
            if a is b:
                return a
            return z3.If(c, self.bool_val(a), self.bool_val(b))
        return z3.If(c, a, b)

    def _regex_of(self, text: str) -> Any:
        """A z3 regex for the tiny regex subset used here (alternation, groups, classes, `?`)."""
        pos = 0

        def alt() -> Any:
            nonlocal pos
            options = [seq()]
            while pos < len(text) and text[pos] == "|":
                pos += 1
                options.append(seq())
            return z3.Union(*options) if len(options) > 1 else options[0]

        def seq() -> Any:
            nonlocal pos
            items = []
            while pos < len(text) and text[pos] not in "|)":
                items.append(atom())
            if not items:
                return z3.Re("", ctx=self.ctx)
            return z3.Concat(*items) if len(items) > 1 else items[0]

        def atom() -> Any:
            nonlocal pos
            c = text[pos]
            if c == "(":
                pos += 1
                inner = alt()
                pos += 1  # ")"
                r = inner
            elif c == "[":
                end = text.index("]", pos)
                lo, hi = text[pos + 1], text[end - 1]
                r = z3.Range(lo, hi, ctx=self.ctx)
                pos = end + 1
            else:
                r = z3.Re(c, ctx=self.ctx)
                pos += 1
            if pos < len(text) and text[pos] == "?":
                pos += 1
                r = z3.Option(r)
            return r

        return alt()

    def glob_re(self, pattern: str) -> Any:
        """The glob of `mcpdsl.ir.globs` followed by an optional query string."""
        found = self._regex.get(pattern)
        if found is not None:
            return found
        parts = []
        for seg in glob_parts(pattern):
            if seg == "**":
                parts.append(
                    z3.Option(
                        z3.Concat(z3.Re("/", ctx=self.ctx), z3.Star(self._path_char_or_slash()))
                    )
                )
            elif seg == "*":
                parts.append(z3.Concat(z3.Re("/", ctx=self.ctx), z3.Plus(self.seg_char)))
            else:
                parts.append(z3.Re(z3_text("/" + seg), ctx=self.ctx))
        parts.append(self.query_tail)
        found = z3.Concat(*parts) if len(parts) > 1 else parts[0]
        self._regex[pattern] = found
        return found

    def _path_char_or_slash(self) -> Any:
        return z3.Union(self.seg_char, z3.Re("/", ctx=self.ctx))

    # ----------------------------------------------------------- attributes

    def attr(self, path: tuple[str, ...]) -> Sym:
        """The symbolic value of an attribute path of the request."""
        found = self._attr.get(path)
        if found is not None:
            return found
        if path[0] == "now" and not self._now_done:
            self._now_done = True
            self._now()
            found = self._attr.get(path)
            if found is not None:
                return found
        name = ".".join(path)
        ctx = self.ctx
        k = z3.Const(f"{name}#kind", self.K[0].sort())
        K = self.K
        b = z3.Bool(f"{name}#bool", ctx)
        n = z3.Real(f"{name}#num", ctx)
        s = z3.String(f"{name}#str", ctx)
        length = z3.Int(f"{name}#len", ctx)
        key = ("attr", path)
        side = [length >= 0]
        deps: set[Any] = {key}
        if len(path) > 1:
            parent = self.attr(path[:-1])
            pk = self._attr_vars[path[:-1]]["kind"]
            side.append(z3.Implies(k != K[MISSING], pk == K[OBJ]))
            deps |= parent.deps
        slots: list[tuple[Bool, Sym]] = []
        count = []
        for i in range(self.list_slots.get(path, 0)):
            present = z3.Bool(f"{name}#slot{i}", ctx)
            elem = self._element(f"{name}#slot{i}", side)
            slots.append((present, elem))
            count.append(z3.If(present, z3.IntVal(1, ctx), z3.IntVal(0, ctx)))
        if count:
            side.append(z3.Sum(*count) <= length)
        self._side[key] = side
        self._side_deps[key] = frozenset(deps - {key})
        self._attr_vars[path] = {"kind": k, "bool": b, "num": n, "str": s, "len": length}
        sym = Sym(
            missing=k == K[MISSING],
            null=k == K[NULL],
            isb=k == K[BOOL],
            b=b,
            isn=k == K[NUM],
            n=n,
            iss=k == K[STR],
            s=s,
            isl=k == K[LIST],
            lst=ListVal(length, slots, exact=False),
            iso=k == K[OBJ],
            deps=frozenset(deps),
        )
        self._attr_vars[path]["slots"] = slots
        self._attr[path] = sym
        return sym

    def _element(self, name: str, side: list[Any]) -> Sym:
        ctx = self.ctx
        EK = self.EK
        k = z3.Const(f"{name}#kind", EK[NULL].sort())
        s = z3.String(f"{name}#str", ctx)
        return Sym(
            null=k == EK[NULL],
            isb=k == EK[BOOL],
            b=z3.Bool(f"{name}#bool", ctx),
            isn=k == EK[NUM],
            n=z3.Real(f"{name}#num", ctx),
            iss=k == EK[STR],
            s=s,
            other=k == EK[OTHER],
        )

    def _now(self) -> None:
        """`now.*`: a well-formed clock (the request's `now`, or the evaluator's)."""
        root = self.attr(("now",))
        syms = {f: self.attr(("now", f)) for f in NOW_FIELDS}
        v = {f: self._attr_vars[("now", f)] for f in NOW_FIELDS}
        K = self.K
        side = [self._attr_vars[("now",)]["kind"] == K[OBJ]]
        for f in ("hour", "minute", "time"):
            side += [v[f]["kind"] == K[NUM], z3.IsInt(v[f]["num"]), v[f]["num"] >= 0]
        side += [v["hour"]["num"] <= 23, v["minute"]["num"] <= 59]
        side.append(v["time"]["num"] == 60 * v["hour"]["num"] + v["minute"]["num"])
        side.append(v["weekday"]["kind"] == K[STR])
        side.append(z3.Or(*[v["weekday"]["str"] == self.str_val(d) for d in WEEKDAYS]))
        side.append(v["date"]["kind"] == K[STR])
        digit = z3.Range("0", "9", ctx=self.ctx)
        dash = z3.Re("-", ctx=self.ctx)
        date_re = z3.Concat(*([digit] * 4 + [dash] + [digit] * 2 + [dash] + [digit] * 2))
        side.append(z3.InRe(v["date"]["str"], date_re))
        key = ("now",)
        self._side[key] = side
        deps = frozenset().union(root.deps, *(s.deps for s in syms.values()))
        self._side_deps[key] = deps
        for f in NOW_FIELDS:
            sym = self._attr[("now", f)]
            sym.deps = sym.deps | {key}

    # ---------------------------------------------------------- expressions

    def reads_risk(self, e: m.Node) -> bool:
        found = self._risk_reads.get(id(e))
        if found is None:
            found = any(a.root == "risk" for a in _attrs(e))
            self._risk_reads[id(e)] = found
        return found

    def expr(self, e: m.Node, env: Env) -> Sym:
        key = (id(e), env.key if self.reads_risk(e) else None)
        found = self._cache.get(key)
        if found is None:
            found = self._expr(e, env)
            self._cache[key] = found
        return found

    def _expr(self, e: m.Node, env: Env) -> Sym:
        if isinstance(e, m.Literal_):
            return self.literal(e.value)
        if isinstance(e, m.Attr):
            if e.root == "risk":
                assert env.risk is not None, "`risk` read outside a policy"
                return env.risk
            return self.attr((e.root, *e.path))
        if isinstance(e, m.ListExpr):
            items = [self.expr(i, env) for i in e.items]
            deps = _deps(items)
            error = OR(*(i.error for i in items))
            missing = AND(NOT(error), OR(*(i.missing for i in items)))
            slots = [(True, i) for i in items]
            return Sym(
                missing=missing,
                error=error,
                isl=NOT(OR(error, missing)),
                lst=ListVal(len(items), slots, exact=True),
                deps=deps,
            )
        if isinstance(e, m.Not):
            x = self.expr(e.operand, env)
            return Sym(
                isb=OR(x.missing, x.isb),
                b=self.bool_val(OR(x.missing, AND(x.isb, NOT(_b(x))))),
                error=NOT(OR(x.missing, x.isb)),
                deps=x.deps,
            )
        if isinstance(e, (m.And, m.Or)):
            ops = [self.expr(o, env) for o in e.operands]
            error = OR(*(NOT(OR(o.missing, o.isb)) for o in ops))
            truths = [AND(o.isb, _b(o)) for o in ops]
            value = AND(*truths) if isinstance(e, m.And) else OR(*truths)
            return Sym(isb=NOT(error), b=self.bool_val(value), error=error, deps=_deps(ops))
        if isinstance(e, m.Compare):
            return self._compare(e, env)
        if isinstance(e, m.In):
            x, y = self.expr(e.item, env), self.expr(e.collection, env)
            error = OR(x.error, y.error, AND(NOT(x.missing), NOT(y.missing), NOT(y.isl)))
            member = self.member(x, y.lst) if y.lst is not None else False
            value = AND(NOT(x.missing), y.isl, NOT(member) if e.negated else member)
            return Sym(isb=NOT(error), b=self.bool_val(value), error=error, deps=x.deps | y.deps)
        if isinstance(e, m.InCidr):
            x = self.expr(e.operand, env)
            error = OR(x.error, AND(NOT(x.missing), NOT(x.iss)))
            inside, deps = self.in_cidr(x, e.cidr)
            return Sym(
                isb=NOT(error),
                b=self.bool_val(AND(x.iss, inside)),
                error=error,
                deps=x.deps | deps,
            )
        if isinstance(e, m.Matches):
            x = self.expr(e.operand, env)
            error = OR(x.error, AND(NOT(x.missing), NOT(x.iss)))
            value = AND(x.iss, z3.InRe(_s(self, x), self.glob_re(e.pattern)))
            return Sym(isb=NOT(error), b=self.bool_val(value), error=error, deps=x.deps)
        if isinstance(e, m.Arith):
            return self._arith(e, env)
        if isinstance(e, m.Default):
            x, y = self.expr(e.operand, env), self.expr(e.fallback, env)
            return self.mux(x.missing, y, x)
        if isinstance(e, m.Neg):
            x = self.expr(e.operand, env)
            return Sym(
                missing=x.missing,
                error=OR(x.error, AND(NOT(x.missing), NOT(x.isn))),
                isn=x.isn,
                n=-_n(self, x),
                deps=x.deps,
            )
        if isinstance(e, m.Call):
            return self._call(e, env)
        raise TypeError(f"not an expression: {type(e).__name__}")

    def literal(self, v: Any) -> Sym:
        if isinstance(v, bool):
            return Sym(isb=True, b=z3.BoolVal(v, self.ctx))
        if isinstance(v, str):
            return Sym(iss=True, s=self.str_val(v))
        return Sym(isn=True, n=self.real_val(v))

    def _compare(self, e: m.Compare, env: Env) -> Sym:
        a, b = self.expr(e.left, env), self.expr(e.right, env)
        deps = a.deps | b.deps
        if e.op in ("==", "!="):
            error = OR(a.error, b.error)
            missing = OR(a.missing, b.missing)
            eq = self.eq(a, b)
            value = AND(NOT(missing), eq if e.op == "==" else NOT(eq))
            return Sym(isb=NOT(error), b=self.bool_val(value), error=error, deps=deps)
        both = AND(a.isn, b.isn)
        error = OR(a.error, b.error, AND(NOT(a.missing), NOT(b.missing), NOT(both)))
        x, y = _n(self, a), _n(self, b)
        rel = {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[e.op]
        return Sym(isb=NOT(error), b=self.bool_val(AND(both, rel)), error=error, deps=deps)

    def _arith(self, e: m.Arith, env: Env) -> Sym:
        a, b = self.expr(e.left, env), self.expr(e.right, env)
        deps = a.deps | b.deps
        nums = AND(a.isn, b.isn)
        strs = AND(a.iss, b.iss) if e.op == "+" else False
        x, y = _n(self, a), _n(self, b)
        div0 = AND(nums, y == 0) if e.op == "/" else False
        error = OR(
            a.error,
            b.error,
            AND(NOT(a.missing), NOT(b.missing), NOT(OR(nums, strs))),
            div0,
        )
        missing = AND(NOT(OR(a.error, b.error)), OR(a.missing, b.missing))
        value = {"+": x + y, "-": x - y, "*": x * y, "/": x / y}[e.op]
        return Sym(
            missing=missing,
            error=error,
            isn=AND(nums, NOT(div0)),
            n=value,
            iss=strs,
            s=z3.Concat(_s(self, a), _s(self, b)) if strs is not False else None,
            deps=deps,
        )

    def _call(self, e: m.Call, env: Env) -> Sym:
        args = [self.expr(a, env) for a in e.args]
        deps = _deps(args)
        missing = OR(*(a.missing for a in args))
        error = AND(NOT(missing), OR(*(a.error for a in args)))
        ok = NOT(OR(missing, error))
        f = e.function
        if f in ("lower", "upper") and len(args) == 1:
            x = args[0]
            mapped, key = self.case_map(_s(self, x), f)
            return Sym(
                missing=missing,
                error=OR(error, AND(ok, NOT(x.iss))),
                iss=AND(ok, x.iss),
                s=mapped,
                deps=deps | {key},
            )
        if f == "len" and len(args) == 1:
            x = args[0]
            length = x.lst.length if x.lst is not None else 0
            length = self.real_val(length) if isinstance(length, int) else z3.ToReal(length)
            n = self.ite(x.iss, z3.ToReal(z3.Length(_s(self, x))), length)
            return Sym(
                missing=missing,
                error=OR(error, AND(ok, NOT(OR(x.iss, x.isl)))),
                isn=AND(ok, OR(x.iss, x.isl)),
                n=n,
                deps=deps,
            )
        if len(args) != 2:  # typecheck rejects this; never encoded
            return Sym(error=True, deps=deps)
        a, b = args
        sa, sb = _s(self, a), _s(self, b)
        test = {
            "startswith": lambda: z3.PrefixOf(sb, sa),
            "endswith": lambda: z3.SuffixOf(sb, sa),
            "contains": lambda: z3.Contains(sa, sb),
        }[f]()
        strs = AND(a.iss, b.iss)
        value = AND(strs, test)
        good = strs
        if f == "contains":
            listy = AND(a.isl, b.present)
            member = self.member(b, a.lst) if a.lst is not None else False
            value = OR(value, AND(listy, member))
            good = OR(strs, a.isl)
        return Sym(
            missing=missing,
            error=OR(error, AND(ok, NOT(good))),
            isb=AND(ok, good),
            b=self.bool_val(value),
            deps=deps,
        )

    def case_map(self, s: Any, f: str) -> tuple[Any, Any]:
        """`lower`/`upper`: exact on ASCII strings, an abstract string otherwise."""
        c = z3.Const("c", z3.CharSort(self.ctx))
        bv = c.to_bv()
        if f == "lower":
            fn = z3.If(z3.And(z3.UGE(bv, 65), z3.ULE(bv, 90)), z3.CharFromBv(bv + 32), c)
        else:
            fn = z3.If(z3.And(z3.UGE(bv, 97), z3.ULE(bv, 122)), z3.CharFromBv(bv - 32), c)
        mapped = z3.SeqMap(z3.Lambda([c], fn), s)
        other = self.fresh_str(("case", f, s.get_id()))
        # what is known of Python's mapping of any string: `lower` leaves no A-Z, `upper` no a-z
        lo, hi = ("A", "Z") if f == "lower" else ("a", "z")
        letter = z3.Concat(self.any_string, z3.Range(lo, hi, ctx=self.ctx), self.any_string)
        self._side[("case", f, s.get_id())] = [z3.Not(z3.InRe(other, letter))]
        return z3.If(z3.InRe(s, self.ascii), mapped, other), ("case", f, s.get_id())

    def mux(self, c: Bool, x: Sym, y: Sym) -> Sym:
        """`x` where `c` holds, else `y`, component by component."""
        lst = None
        if x.lst is not None or y.lst is not None:
            lx = x.lst or ListVal(0, [], True)
            ly = y.lst or ListVal(0, [], True)
            length = self.ite(c, _int(self, lx.length), _int(self, ly.length))
            slots = [(AND(c, p), el) for p, el in lx.slots]
            slots += [(AND(NOT(c), p), el) for p, el in ly.slots]
            lst = ListVal(length, slots, exact=lx.exact and ly.exact)
        return Sym(
            missing=self.ite(c, x.missing, y.missing),
            error=self.ite(c, x.error, y.error),
            null=self.ite(c, x.null, y.null),
            isb=self.ite(c, x.isb, y.isb),
            b=self.ite(c, x.b, y.b),
            isn=self.ite(c, x.isn, y.isn),
            n=self.ite(c, x.n, y.n),
            iss=self.ite(c, x.iss, y.iss),
            s=self.ite(c, x.s, y.s),
            isl=self.ite(c, x.isl, y.isl),
            lst=lst,
            iso=self.ite(c, x.iso, y.iso),
            other=self.ite(c, x.other, y.other),
            deps=x.deps | y.deps,
        )

    # ----------------------------------------------------------- equality

    def eq(self, a: Sym, b: Sym) -> Bool:
        """JSON equality of two present values (numbers by value, `true` never `1`)."""
        parts = [AND(a.null, b.null)]
        if a.isb is not False and b.isb is not False:
            parts.append(AND(a.isb, b.isb, _b(a) == _b(b)))
        if a.isn is not False and b.isn is not False:
            parts.append(AND(a.isn, b.isn, _n(self, a) == _n(self, b)))
        if a.iss is not False and b.iss is not False:
            parts.append(AND(a.iss, b.iss, _s(self, a) == _s(self, b)))
        if a.isl is not False and b.isl is not False:
            parts.append(AND(a.isl, b.isl, self.list_eq(a, b)))
        if a.iso is not False and b.iso is not False:
            parts.append(AND(a.iso, b.iso, self.fresh_bool(("objeq", _key(a), _key(b)))))
        for x, y in ((a, b), (b, a)):
            partner = OR(y.isl, y.iso, y.other)
            if x.other is not False and partner is not False:
                parts.append(AND(x.other, partner, self.fresh_bool(("oeq", _key(x), _key(y)))))
        return OR(*parts)

    def list_eq(self, a: Sym, b: Sym) -> Bool:
        la, lb = a.lst, b.lst
        assert la is not None and lb is not None
        if (
            la.exact
            and lb.exact
            and isinstance(la.length, int)
            and isinstance(lb.length, int)
            and all(p is True for p, _ in la.slots + lb.slots)
        ):
            if la.length != lb.length:
                return False
            return AND(
                *(
                    AND(x.present, y.present, self.eq(x, y))
                    for (_, x), (_, y) in zip(la.slots, lb.slots, strict=True)
                )
            )
        return self.fresh_bool(("listeq", _key(a), _key(b)))

    def member(self, x: Sym, lst: ListVal) -> Bool:
        """Is the present value `x` an element of the list `lst`?"""
        return OR(*(AND(p, el.present, self.eq(x, el)) for p, el in lst.slots))

    # ------------------------------------------------------------------ cidr

    def in_cidr(self, x: Sym, cidr: str) -> tuple[Bool, frozenset[Any]]:
        """`x in cidr N` for a string `x`: Python's `ipaddress` reading of it, exactly for IPv4.

        An IPv4 address is in `N` when its 32 bits agree with N's under N's mask;
        octet by octet the mask admits one interval of values, so the set of
        dotted quads inside N is a regular language, and membership is one regex
        test (exact, and far cheaper for z3 than channelling `str.to_int`).
        """
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return False, frozenset()
        s = _s(self, x)
        if net.version == 4:
            return z3.InRe(s, self._cidr4(net)), frozenset()
        is6 = self.fresh_bool(("ip6", s.get_id()))
        bv = z3.BitVec(f"ip6!{s.get_id()}", 128, self.ctx)
        mask = int(net.netmask)
        inside = (bv & z3.BitVecVal(mask, 128, self.ctx)) == z3.BitVecVal(
            int(net.network_address), 128, self.ctx
        )
        key = ("ip6", s.get_id())
        self._side[key] = [z3.Implies(is6, z3.Not(z3.InRe(s, self._quad)))]
        for path, vars_ in self._attr_vars.items():
            if vars_["str"].eq(s):
                self._ip6.append((path, is6, bv))
        return AND(is6, inside), frozenset({key})

    def _cidr4(self, net: ipaddress.IPv4Network) -> Any:
        key = f"cidr:{net}"
        found = self._regex.get(key)
        if found is None:
            mask = int(net.netmask).to_bytes(4, "big")
            base = int(net.network_address).to_bytes(4, "big")
            parts = []
            for i in range(4):
                if i:
                    parts.append(z3.Re(".", ctx=self.ctx))
                low, high = base[i], base[i] | (~mask[i] & 0xFF)
                parts.append(self._octets(low, high))
            found = z3.Concat(*parts)
            self._regex[key] = found
        return found

    def _octets(self, low: int, high: int) -> Any:
        """Canonical decimal spellings (no leading zeros) of the octets `low..high`."""
        if (low, high) == (0, 255):
            return self._regex_of(_OCTET)
        groups: dict[str, list[str]] = {}
        for v in range(low, high + 1):
            text = str(v)
            groups.setdefault(text[:-1], []).append(text[-1])
        options = []
        for prefix, last in groups.items():
            digit = z3.Range(last[0], last[-1], ctx=self.ctx)
            options.append(z3.Concat(z3.Re(prefix, ctx=self.ctx), digit) if prefix else digit)
        return z3.Union(*options) if len(options) > 1 else options[0]

    # --------------------------------------------------------- conditions

    def fires(self, e: m.Node | None, env: Env) -> F:
        """The condition's result is `true` (an allow fires, a `when` holds)."""
        if e is None:
            return TRUE
        x = self.expr(e, env)
        return F(AND(x.isb, _b(x)), x.deps)

    def fires_or_errors(self, e: m.Node | None, env: Env) -> F:
        """Anything but `false`/MISSING: a deny fires, a risk term counts (fail closed)."""
        if e is None:
            return TRUE
        x = self.expr(e, env)
        return F(NOT(OR(x.missing, AND(x.isb, NOT(_b(x))))), x.deps)

    def well_typed(self, e: m.Node | None, env: Env) -> F:
        """The condition gives a boolean or MISSING: no evaluation error (a "natural" witness)."""
        if e is None:
            return TRUE
        x = self.expr(e, env)
        own = F(OR(x.missing, x.isb), x.deps)
        if env.nice is not None and self.reads_risk(e):
            return own & env.nice
        return own

    def errors(self, e: m.Node | None, env: Env) -> F:
        if e is None:
            return FALSE
        x = self.expr(e, env)
        return F(NOT(OR(x.missing, x.isb)), x.deps)

    # ------------------------------------------------------------- matching

    def entity(self, root: str, pattern: m.EntityPattern) -> F:
        if pattern.type is None:
            return TRUE
        t = self.attr((root, "type"))
        parts = [t.iss, t.s == self.str_val(pattern.type)]
        deps = t.deps
        if pattern.ids is not None:
            i = self.attr((root, "id"))
            parts += [i.iss, OR(*(i.s == self.str_val(x) for x in pattern.ids))]
            deps = deps | i.deps
        return F(AND(*parts), deps)

    def equals(self, path: tuple[str, ...], value: str) -> F:
        """The attribute at `path` is the string `value` (witness preferences)."""
        a = self.attr(path)
        return F(AND(a.iss, a.s == self.str_val(value)), a.deps)

    def action(self, actions: tuple[str, ...]) -> F:
        if not actions:
            return TRUE
        a = self.attr(("action",))
        return F(AND(a.iss, OR(*(a.s == self.str_val(x) for x in actions))), a.deps)

    def path(self, pattern: str | None) -> F:
        if pattern is None:
            return TRUE
        p = self.attr(("request", "path"))
        return F(AND(p.iss, z3.InRe(p.s, self.glob_re(pattern))), p.deps)

    def match(self, rule: m.Rule) -> F:
        """The rule's principal, resource, action and path patterns match (no condition)."""
        return (
            self.entity("principal", rule.principal)
            & self.entity("resource", rule.resource)
            & self.action(rule.actions)
            & self.path(rule.path)
        )

    def route_match(self, route: m.Route) -> F:
        """A gateway route takes `(action, request.path)` as (method, path)."""
        return self.action(route.methods) & self.path(route.path)

    def rule_fires(self, rule: m.Rule, env: Env) -> F:
        if rule.effect == "deny":
            return self.match(rule) & self.fires_or_errors(rule.condition, env)
        return self.match(rule) & self.fires(rule.condition, env)

    # ------------------------------------------------------------------ risk

    def risk_env(self, key: Any, policy: m.Policy) -> Env:
        """The policy's risk: the weights of the terms that fire or error, clamped to 0..1."""
        env = Env(key)
        if not policy.risk:
            env.risk = Sym(isn=True, n=self.real_val(0))
            return env
        total: Any = self.real_val(0)
        deps: frozenset[Any] = frozenset()
        env.nice = all_of(self.well_typed(term.condition, Env(key)) for term in policy.risk)
        for term in policy.risk:
            counted = self.fires_or_errors(term.condition, Env(key))
            deps |= counted.deps
            w = self.real_val(term.weight)
            if counted.e is True:
                total = total + w
            elif counted.e is not False:
                total = total + z3.If(counted.e, w, self.real_val(0))
        one, zero = self.real_val(1), self.real_val(0)
        clamped = z3.If(total > one, one, z3.If(total < zero, zero, total))
        env.risk = Sym(isn=True, n=clamped, deps=deps)
        return env

    def approximate_in(self, *formulas: F) -> bool:
        """Does any of the formulas contain an abstraction (a fresh symbol)?"""
        stack = [f.e for f in formulas if f.e is not True and f.e is not False]
        seen: set[int] = set()
        while stack:
            e = stack.pop()
            i = e.get_id()
            if i in seen:
                continue
            seen.add(i)
            if z3.is_const(e) and e.decl().name().startswith(("abstract!", "ip6!")):
                return True
            stack.extend(e.children())
        return False

    # ------------------------------------------------------------- pinning

    def pin(self, request: dict[str, Any]) -> F:
        """The attributes encoded so far equal those of a concrete request.

        With this, `solve(fires(c) & pin(r))` is sat exactly when the engine
        fires `c` on `r` — the encoding's exactness, testable value by value.
        A list longer than its attribute's slots cannot be pinned (ValueError).
        """
        K = self.K
        parts: list[Any] = []
        deps: set[Any] = set()
        for path, v in sorted(self._attr_vars.items()):
            deps.add(("attr", path))
            value = _lookup(request, path)
            kind = _kind_of_value(value)
            parts.append(v["kind"] == K[kind])
            if kind in (BOOL, NUM, STR):
                parts.append(self._pin_scalar(kind, value, v["bool"], v["num"], v["str"]))
            elif kind == LIST:
                slots = v["slots"]
                if len(value) > len(slots):
                    raise ValueError(f"list at {'.'.join(path)} is longer than its slots")
                parts.append(v["len"] == len(value))
                for i, (present, el) in enumerate(slots):
                    if i >= len(value):
                        parts.append(z3.Not(present))
                        continue
                    parts.append(present)
                    ek = _kind_of_value(value[i])
                    ek = ek if ek in (NULL, BOOL, NUM, STR) else OTHER
                    parts.append(
                        el.null
                        if ek == NULL
                        else el.isb
                        if ek == BOOL
                        else el.isn
                        if ek == NUM
                        else el.iss
                        if ek == STR
                        else el.other
                    )
                    if ek in (BOOL, NUM, STR):
                        parts.append(self._pin_scalar(ek, value[i], el.b, el.n, el.s))
        return F(AND(*parts), frozenset(deps))

    def _pin_scalar(self, kind: int, value: Any, b: Any, n: Any, s: Any) -> Any:
        if kind == BOOL:
            return b == z3.BoolVal(bool(value), self.ctx)
        if kind == NUM:
            return n == self.real_val(
                Fraction(Decimal(repr(value)) if isinstance(value, float) else value)
            )
        return s == self.str_val(value)

    # --------------------------------------------------------------- queries

    def closure(self, deps: Iterable[Any]) -> list[Any]:
        """Every side condition the dependencies need, in a deterministic order."""
        seen: set[Any] = set()
        stack = list(deps)
        while stack:
            d = stack.pop()
            if d in seen:
                continue
            seen.add(d)
            stack.extend(self._side_deps.get(d, ()))
        return sorted(seen, key=repr)

    def solve(
        self,
        *formulas: F,
        prefer: Sequence[F] = (),
        tracked: Sequence[tuple[Any, F]] = (),
        witness: bool = True,
    ) -> Outcome:
        """Check the conjunction; with `prefer`, first try with those too (nicer witnesses)."""
        import time

        start = time.perf_counter()
        self.stats.queries += 1
        try:
            deps: frozenset[Any] = frozenset().union(
                *(f.deps for f in formulas), *(f.deps for _, f in tracked)
            )
            if self.reads_now:
                deps = deps | {("now",)}
            conj = AND(*(f.e for f in formulas))
            if conj is False:
                self.stats.unsat += 1
                return Outcome("unsat")
            s = self._solver()
            side = [c for d in self.closure(deps) for c in self._side.get(d, ())]
            if conj is not True:
                side.append(conj)
            if side:
                s.add(z3.And(*side) if len(side) > 1 else side[0])
            labels = {}
            for i, (tag, f) in enumerate(tracked):
                lit = z3.Bool(f"track!{i}", self.ctx)
                labels[lit.get_id()] = tag
                s.add(z3.Implies(lit, self.bool_val(f.e)))
            assumptions = [z3.Bool(f"track!{i}", self.ctx) for i in range(len(tracked))]
            if prefer:
                pdeps = frozenset().union(*(f.deps for f in prefer)) - deps
                extra = [c for d in self.closure(pdeps) for c in self._side.get(d, ())]
                if extra:
                    s.add(*extra)
                nice = z3.Bool("prefer!", self.ctx)
                s.add(z3.Implies(nice, self.bool_val(AND(*(f.e for f in prefer)))))
                r = s.check(nice, *assumptions)
                if r == z3.sat:
                    self.stats.sat += 1
                    both = deps | pdeps
                    return Outcome("sat", self._witness(s.model(), both) if witness else None)
            r = s.check(*assumptions)
            if r == z3.sat:
                self.stats.sat += 1
                return Outcome("sat", self._witness(s.model(), deps) if witness else None)
            if r == z3.unsat:
                self.stats.unsat += 1
                core = tuple(labels[c.get_id()] for c in s.unsat_core() if c.get_id() in labels)
                return Outcome("unsat", core=core)
            self.stats.unknown += 1
            return Outcome("unknown", reason=s.reason_unknown())
        finally:
            self.stats.seconds += time.perf_counter() - start

    def _solver(self) -> Any:
        s = z3.Solver(ctx=self.ctx)
        s.set("timeout", self.timeout_ms)
        s.set("rlimit", self.rlimit)
        s.set("random_seed", 0)
        return s

    # -------------------------------------------------------------- witnesses

    def _witness(self, model: Any, deps: frozenset[Any]) -> dict[str, Any]:
        """The request a model describes (every attribute of the query, nested)."""
        paths = sorted(
            {d[1] for d in self.closure(deps) if isinstance(d, tuple) and d and d[0] == "attr"},
            key=lambda p: (len(p), p),
        )
        if self.reads_now:
            for f in NOW_FIELDS:
                self.attr(("now", f))
            paths = sorted(
                set(paths) | {("now",)} | {("now", f) for f in NOW_FIELDS},
                key=lambda p: (len(p), p),
            )
        request: dict[str, Any] = {}
        ip6 = {p: (is6, bv) for p, is6, bv in self._ip6}
        for path in paths:
            v = self._attr_vars[path]
            kind = self._kind(model, v["kind"], self.K)
            if kind == MISSING:
                continue
            parent = _container(request, path[:-1])
            if parent is None:
                continue
            if kind == OBJ:
                value: Any = parent.get(path[-1]) if isinstance(parent.get(path[-1]), dict) else {}
            elif kind == LIST:
                value = self._list_value(model, v)
            else:
                value = _scalar(model, kind, v["bool"], v["num"], v["str"])
            if path in ip6 and kind == STR:
                is6, bv = ip6[path]
                if z3.is_true(model.eval(is6, model_completion=True)):
                    n = model.eval(bv, model_completion=True).as_long()
                    value = str(ipaddress.IPv6Address(n))
            parent[path[-1]] = value
        return request

    def _kind(self, model: Any, var: Any, consts: list[Any]) -> int:
        ids = self._kind_ids
        if not ids:
            ids.update({c.get_id(): i for i, c in enumerate(consts)})
        return ids.get(model.eval(var, model_completion=True).get_id(), MISSING)

    def _list_value(self, model: Any, v: dict[str, Any]) -> list[Any]:
        length = _int_of(model.eval(v["len"], model_completion=True))
        items: list[Any] = []
        for present, el in v["slots"]:
            if not z3.is_true(model.eval(present, model_completion=True)):
                continue
            k = _kind_of_element(model, el)
            items.append(_scalar(model, k, el.b, el.n, el.s) if k != OTHER else {})
        taken = {json_key(i) for i in items}
        n = 0
        while len(items) < length:
            filler = f"item-{n}"
            n += 1
            if json_key(filler) not in taken:
                items.append(filler)
        return items


# ------------------------------------------------------------------ helpers


def json_key(v: Any) -> str:
    import json

    return json.dumps(v, sort_keys=True, default=str)


def _lookup(request: Any, path: tuple[str, ...]) -> Any:
    node = request
    for step in path:
        if not isinstance(node, dict) or step not in node:
            return _ABSENT
        node = node[step]
    return node


_ABSENT = object()


def _kind_of_value(v: Any) -> int:
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


def _int_of(v: Any) -> int:
    try:
        return int(v.as_long())
    except (AttributeError, ValueError):
        return 0


def _kind_of_element(model: Any, el: Sym) -> int:
    for kind, guard in ((NULL, el.null), (BOOL, el.isb), (NUM, el.isn), (STR, el.iss)):
        if z3.is_true(model.eval(guard, model_completion=True)):
            return kind
    return OTHER


def _scalar(model: Any, kind: int, b: Any, n: Any, s: Any) -> Any:
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


def _container(request: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = request
    for step in path:
        if not isinstance(node, dict):
            return None
        nxt = node.get(step)
        if not isinstance(nxt, dict):
            return None
        node = nxt
    return node if isinstance(node, dict) else None


def _b(x: Sym) -> Any:
    return x.b if x.b is not None else False


def _n(enc: Encoder, x: Sym) -> Any:
    return x.n if x.n is not None else enc.real_val(0)


def _s(enc: Encoder, x: Sym) -> Any:
    return x.s if x.s is not None else enc.str_val("")


def _int(enc: Encoder, v: Any) -> Any:
    return z3.IntVal(v, enc.ctx) if isinstance(v, int) else v


def _deps(syms: Iterable[Sym]) -> frozenset[Any]:
    return frozenset().union(*(s.deps for s in syms))


def _key(x: Sym) -> Any:
    for v in (x.s, x.n, x.b):
        if v is not None and hasattr(v, "get_id"):
            return v.get_id()
    return id(x)


def _children(e: m.Node) -> Iterator[m.Node]:
    for value in e.__dict__.values():
        if isinstance(value, m.Node):
            yield value
        elif isinstance(value, tuple):
            for v in value:
                if isinstance(v, m.Node):
                    yield v


def _attrs(e: m.Node) -> Iterator[m.Attr]:
    if isinstance(e, m.Attr):
        yield e
        return
    for c in _children(e):
        yield from _attrs(c)


def _project_exprs(project: m.Project) -> Iterator[m.Node]:
    for p in project.policies:
        for r in p.rules:
            if r.condition is not None:
                yield r.condition
        for t in p.risk:
            yield t.condition
        for q in p.requires:
            if q.condition is not None:
                yield q.condition


# ------------------------------------------------------------ small solvers


@dataclass
class Linear:
    """Linear arithmetic over named reals with tracked clauses (capacity, carbon).

    Callers build constraints with the operators of the returned terms, so that
    they need not import z3; `check()` answers with the tags of an unsatisfiable
    core, `minimal_core()` shrinks it by deletion in the given order, and
    `minimize()` finds the optimum of a linear objective.
    """

    timeout_ms: int = DEFAULT_TIMEOUT_MS
    ctx: Any = field(default_factory=z3.Context)
    hard: list[Any] = field(default_factory=list)
    soft: list[tuple[Any, Any]] = field(default_factory=list)

    def real(self, name: str) -> Any:
        return z3.Real(name, self.ctx)

    def const(self, value: Decimal | int | Fraction) -> Any:
        f = Fraction(value)
        return z3.RealVal(f"{f.numerator}/{f.denominator}", self.ctx)

    def sum(self, terms: Sequence[Any]) -> Any:
        return z3.Sum(*terms) if terms else self.const(0)

    def require(self, constraint: Any) -> None:
        self.hard.append(constraint)

    def clause(self, tag: Any, constraint: Any) -> None:
        """A constraint that stands for a source clause; it can appear in a core."""
        self.soft.append((tag, constraint))

    def check(self, tags: Sequence[Any] | None = None) -> tuple[str, tuple[Any, ...]]:
        s = z3.Solver(ctx=self.ctx)
        s.set("timeout", self.timeout_ms)
        s.set("random_seed", 0)
        for c in self.hard:
            s.add(c)
        lits = []
        chosen = [(t, c) for t, c in self.soft if tags is None or t in tags]
        for i, (_, c) in enumerate(chosen):
            lit = z3.Bool(f"clause!{i}", self.ctx)
            s.add(z3.Implies(lit, c))
            lits.append(lit)
        r = s.check(*lits)
        if r == z3.sat:
            return "sat", ()
        if r == z3.unknown:
            return "unknown", ()
        names = {lit.get_id(): chosen[i][0] for i, lit in enumerate(lits)}
        core = tuple(names[c.get_id()] for c in s.unsat_core())
        return "unsat", core

    def minimal_core(self, order: Sequence[Any]) -> tuple[Any, ...] | None:
        """A minimal set of clause tags that is still unsatisfiable (deletion, in `order`)."""
        status, core = self.check()
        if status != "unsat":
            return None
        current = [t for t in order if t in set(core)]
        for t in list(current):
            trial = [x for x in current if x != t]
            if self.check(trial)[0] == "unsat":
                current = trial
        return tuple(current)

    def minimize(self, objective: Any, tags: Sequence[Any] | None = None) -> Fraction | None:
        """The least value of `objective` under the hard and chosen clauses, or None."""
        o = z3.Optimize(ctx=self.ctx)
        o.set("timeout", self.timeout_ms)
        for c in self.hard:
            o.add(c)
        for t, c in self.soft:
            if tags is None or t in tags:
                o.add(c)
        h = o.minimize(objective)
        if o.check() != z3.sat:
            return None
        v = o.lower(h)
        try:
            return Fraction(int(v.numerator_as_long()), int(v.denominator_as_long()))
        except AttributeError:
            return None
