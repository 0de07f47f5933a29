"""Typecheck: the static types of conditions, risk terms and mappings.

Attribute values are dynamic (they come with the request), so an attribute
has type `any`; literals, operators and built-ins have static types.  A type
error is reported only when both sides are known to disagree — a duration
compared with a string, `and` over a number — never for an attribute.
"""

from __future__ import annotations

import ipaddress

from mcpdsl.diagnostics import Diagnostic, make
from mcpdsl.diagnostics.wording import closest
from mcpdsl.ir import args, stats
from mcpdsl.ir import model as m
from mcpdsl.ir.globs import glob_error
from mcpdsl.ir.lints import missing_attribute_lints
from mcpdsl.ir.reads import reads_risk

CONDITION_ROOTS = (
    "principal", "resource", "source", "request", "context", "now", "risk", "action", "stats",
    "args",
)  # fmt: skip
MAPPING_ROOTS = ("$",)
NOW_FIELDS = ("hour", "minute", "weekday", "time", "date")

ANY = "any"
BOOL = "bool"
NUMBER = "number"
STRING = "string"
LIST = "list"
#: A server counter (`stats.principal.*`): a non-negative integer, comparable with plain
#: numbers and other counts only (a count of calls is not a duration or a size).
COUNT = "count"
#: An argument's static type by its `input` type (an `object`'s fields are untyped).
_INPUT = {"string": STRING, "number": NUMBER, "boolean": BOOL, "array": LIST, "object": ANY}
_INPUT_WORDS = {
    "string": "a string",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
}
_NUMERIC_UNITS = {
    "duration",
    "percent",
    "bytes",
    "energy",
    "power",
    "mass",
    "intensity",
    "money",
    "rate",
    "time",
}


def _describe(t: str) -> str:
    return {
        BOOL: "a boolean",
        NUMBER: "a number",
        STRING: "a string",
        LIST: "a list",
        COUNT: "a count",
        "time": "a time of day",
    }.get(t, f"a {t}")


class _Checker:
    def __init__(self, roots: tuple[str, ...], where: str, diags: list[Diagnostic]) -> None:
        self.roots = roots
        self.where = where
        self.diags = diags
        # which tool arguments `args.*` may name here (set per rule by `typecheck`)
        self.scope: args.Scope | None = None

    def error(self, code: str, message: str, node: m.Node, **kw: object) -> None:
        self.diags.append(make(code, message, node.span, **kw))  # type: ignore[arg-type]

    def numeric(self, t: str) -> bool:
        return t in (NUMBER, ANY, COUNT) or t in _NUMERIC_UNITS

    def type_of(self, e: m.Node) -> str:
        if isinstance(e, m.Literal_):
            if isinstance(e.value, bool):
                return BOOL
            if isinstance(e.value, str):
                return STRING
            return e.unit or NUMBER
        if isinstance(e, m.Attr):
            return self.attr(e)
        if isinstance(e, m.ListExpr):
            for item in e.items:
                self.type_of(item)
            return LIST
        if isinstance(e, m.Not):
            self.boolean(e.operand, "`not`")
            return BOOL
        if isinstance(e, (m.And, m.Or)):
            word = "`and`" if isinstance(e, m.And) else "`or`"
            for operand in e.operands:
                self.boolean(operand, word)
            return BOOL
        if isinstance(e, m.Compare):
            return self.compare(e)
        if isinstance(e, m.In):
            self.type_of(e.item)
            ct = self.type_of(e.collection)
            if ct not in (LIST, ANY, STRING):
                self.error(
                    "E0305",
                    f"`in` needs a list on its right, found {_describe(ct)}",
                    e.collection,
                    label="not a list",
                )
            return BOOL
        if isinstance(e, m.InCidr):
            self.stringish(e.operand, "`in cidr`")
            try:
                ipaddress.ip_network(e.cidr, strict=False)
            except ValueError:
                self.error("E0308", f"`{e.cidr}` is not a CIDR network", e, label="invalid CIDR")
            return BOOL
        if isinstance(e, m.Matches):
            self.stringish(e.operand, "`matches`")
            problem = glob_error(e.pattern)
            if problem:
                self.error("E0309", problem, e)
            return BOOL
        if isinstance(e, m.Arith):
            return self.arith(e)
        if isinstance(e, m.Default):
            t1, t2 = self.type_of(e.operand), self.type_of(e.fallback)
            return t1 if t1 == t2 else ANY
        if isinstance(e, m.Neg):
            t = self.type_of(e.operand)
            if not self.numeric(t):
                self.error("E0305", f"cannot negate {_describe(t)}", e)
            return t
        if isinstance(e, m.Call):
            return self.call(e)
        raise AssertionError(type(e))

    def attr(self, e: m.Attr) -> str:
        if e.root not in self.roots:
            allowed = ", ".join(f"`{r}`" for r in self.roots)
            hint = None
            if e.root == "$":
                hint = "`$` is the payload of an integration mapping; conditions read request attributes"
            elif "$" in self.roots:
                hint = "mappings read the upstream response through `$`, as in `$.id`"
            self.error(
                "E0306",
                f"unknown attribute root `{e.root}` in {self.where}",
                e,
                label="not an attribute root here",
                help=hint or f"attribute paths start with {allowed}",
            )
            return ANY
        if e.root == "risk":
            if e.path:
                self.error("E0306", "`risk` is a number and has no attributes", e)
            return NUMBER
        if e.root == "now":
            if len(e.path) != 1 or e.path[0] not in NOW_FIELDS:
                self.error(
                    "E0306",
                    f"`{e.dotted()}` is not a clock attribute",
                    e,
                    help="use " + ", ".join(f"`now.{f}`" for f in NOW_FIELDS),
                )
                return ANY
            return {"weekday": STRING, "date": STRING, "time": "time"}.get(e.path[0], NUMBER)
        if e.root == "action" and e.path:
            self.error("E0306", "`action` is a string and has no attributes", e)
        if e.root == stats.ROOT:
            return self.counter(e)
        if e.root == args.ROOT:
            return self.argument(e)
        return ANY

    def argument(self, e: m.Attr) -> str:
        """`args.FIELD`: an argument of every tool the expression can be about (E0330-E0333)."""
        scope = self.scope
        if scope is None:  # pragma: no cover - `typecheck` sets it wherever `args` is a root
            return ANY
        if scope.unknown:  # a tool no integration exposes: E0402 says so already
            return ANY
        if scope.problem is not None:
            code, message, hint = scope.problem
            self.error(code, message, e, label=f"`{e.dotted()}` read here", help=hint)
            return ANY
        if not e.path:
            self.error(
                "E0333",
                "`args` is the object of a tool call's arguments, not a value",
                e,
                help="read one argument: `args.NAME`",
            )
            return ANY
        name = e.path[0]
        if scope.federated:
            # Some tool of the scope is discovered at run time (a federated MCP server):
            # its arguments have no build-time types, so the read is untyped.  The
            # statically declared tools of a named list must still declare it.
            missing = scope.lacking(name) if scope.every else []
            if missing:
                near = closest(name, scope.fields())
                self.error(
                    "E0330",
                    f"tool `{missing[0]}` has no argument `{name}`",
                    e,
                    label="unknown argument",
                    help=f"did you mean `args.{near}`?" if near else "write one rule per tool",
                )
            return ANY
        types = scope.types(name)
        lacking = scope.lacking(name) if scope.every else ([] if types else ["*"])
        if lacking:
            if types:  # declared by some of the listed tools, not by all
                message = f"tool `{lacking[0]}` has no argument `{name}`"
                hint = f"only {', '.join(f'`{t}`' for t in types)} {'declares' if len(types) == 1 else 'declare'} it: write one rule per tool"
            else:
                near = closest(name, scope.fields())
                known = ", ".join(f"`{f}`" for f in scope.fields()) or "none"
                message = (
                    f"{scope.what} has no argument `{name}`"
                    if scope.every
                    else f"no exposed tool has an argument `{name}`"
                )
                hint = f"did you mean `args.{near}`?" if near else f"the arguments: {known}"
            self.error("E0330", message, e, label="unknown argument", help=hint)
            return ANY
        declared = set(types.values())
        if len(declared) > 1:
            if not scope.every:  # `any tool`: the tools declaring it disagree; untyped
                return ANY
            listed = ", ".join(f"{_INPUT_WORDS[t]} in `{tool}`" for tool, t in types.items())
            self.error(
                "E0332",
                f"`args.{name}` has different types in {scope.what}: {listed}",
                e,
                help="write one rule per tool",
            )
            return ANY
        (kind,) = declared
        if len(e.path) > 1 and kind != "object":
            self.error(
                "E0333",
                f"`args.{name}` is {_INPUT_WORDS[kind]} and has no attributes",
                e,
                help=f"compare `args.{name}` itself",
            )
            return ANY
        return ANY if len(e.path) > 1 else _INPUT[kind]

    def counter(self, e: m.Attr) -> str:
        """`stats.principal.FIELD`: one of the server's counters (mcpdsl.ir.stats), else E0320."""
        path = e.path
        if len(path) == 2 and path[0] == stats.SCOPE and path[1] in stats.FIELDS:
            return COUNT
        known = ", ".join(f"`{stats.ROOT}.{stats.SCOPE}.{f}`" for f in stats.FIELDS)
        hint = f"the server counts {known}"
        label = "not a server statistic"
        if len(path) > 2 and path[0] == stats.SCOPE and path[1] in stats.FIELDS:
            name = f"{stats.ROOT}.{stats.SCOPE}.{path[1]}"
            message, label, guess = f"`{name}` is a count and has no attributes", "", None
            hint = f"compare `{name}` itself with a number"
        elif len(path) < 2 and (not path or path[0] == stats.SCOPE):
            message = f"`{e.dotted()}` is an object of counters, not a value"
            guess = None
        elif path[0] != stats.SCOPE and path[0] in stats.FIELDS:
            message = f"unknown server statistic `{e.dotted()}`"
            guess = f"{stats.ROOT}.{stats.SCOPE}.{path[0]}"
        elif path[0] != stats.SCOPE:
            message = f"unknown server statistic `{e.dotted()}`"
            near = closest(path[0], (stats.SCOPE,))
            guess = f"{stats.ROOT}.{near}.{'.'.join(path[1:])}" if near and len(path) > 1 else None
            if guess and path[1] not in stats.FIELDS:
                guess = None
        else:
            message = f"unknown server statistic `{e.dotted()}`"
            near = closest(path[1], stats.FIELDS)
            guess = f"{stats.ROOT}.{stats.SCOPE}.{near}" if near else None
        self.error(
            "E0320",
            message,
            e,
            label=label,
            help=f"did you mean `{guess}`?" if guess else hint,
        )
        return ANY

    def boolean(self, e: m.Node, word: str) -> None:
        t = self.type_of(e)
        if t not in (BOOL, ANY):
            self.error(
                "E0305", f"{word} needs a boolean, found {_describe(t)}", e, label="not a boolean"
            )

    def stringish(self, e: m.Node, word: str) -> None:
        t = self.type_of(e)
        if t not in (STRING, ANY):
            self.error("E0305", f"{word} needs a string, found {_describe(t)}", e)

    def compare(self, e: m.Compare) -> str:
        lt, rt = self.type_of(e.left), self.type_of(e.right)
        if ANY in (lt, rt):
            if e.op not in ("==", "!=") and (not self.numeric(lt) or not self.numeric(rt)):
                bad = e.left if not self.numeric(lt) else e.right
                self.error(
                    "E0305",
                    f"`{e.op}` compares numbers, found {_describe(lt if bad is e.left else rt)}",
                    bad,
                )
            return BOOL
        if e.op in ("==", "!="):
            if lt != rt and not (self.numeric(lt) and self.numeric(rt) and NUMBER in (lt, rt)):
                self.error(
                    "E0305",
                    f"cannot compare {_describe(lt)} with {_describe(rt)}",
                    e,
                    label="these never compare equal",
                )
            return BOOL
        if not self.numeric(lt) or not self.numeric(rt) or (lt != rt and NUMBER not in (lt, rt)):
            self.error(
                "E0305",
                f"cannot order {_describe(lt)} and {_describe(rt)} with `{e.op}`",
                e,
                label="incompatible operands",
            )
        return BOOL

    def arith(self, e: m.Arith) -> str:
        lt, rt = self.type_of(e.left), self.type_of(e.right)
        if e.op == "+" and STRING in (lt, rt):
            other = rt if lt == STRING else lt
            if other not in (STRING, ANY):
                self.error("E0305", f"cannot add a string and {_describe(other)}", e)
            return STRING
        for t, node in ((lt, e.left), (rt, e.right)):
            if not self.numeric(t):
                self.error("E0305", f"`{e.op}` needs numbers, found {_describe(t)}", node)
                return ANY
        if ANY in (lt, rt):
            return ANY
        if lt != rt and e.op in ("+", "-") and NUMBER not in (lt, rt):
            self.error("E0305", f"cannot combine {_describe(lt)} and {_describe(rt)}", e)
        return lt if lt != NUMBER else rt

    def call(self, e: m.Call) -> str:
        arity = {"lower": 1, "upper": 1, "len": 1, "startswith": 2, "endswith": 2, "contains": 2}
        if len(e.args) != arity[e.function]:
            self.error(
                "E0307",
                f"`{e.function}` takes {arity[e.function]} argument(s), found {len(e.args)}",
                e,
            )
            return ANY
        types = [self.type_of(a) for a in e.args]
        if e.function == "len":
            if types[0] not in (STRING, LIST, ANY):
                self.error("E0305", f"`len` needs a string or list, found {_describe(types[0])}", e)
            return NUMBER
        if e.function == "contains" and types[0] == LIST:
            return BOOL
        for t, a in zip(types, e.args, strict=True):
            if t not in (STRING, ANY):
                self.error("E0305", f"`{e.function}` needs strings, found {_describe(t)}", a)
        return STRING if e.function in ("lower", "upper") else BOOL


def typecheck(project: m.Project) -> list[Diagnostic]:
    """Check every expression of the project; returns diagnostics only."""
    diags: list[Diagnostic] = []
    condition = _Checker(CONDITION_ROOTS, "a condition", diags)
    risk_checker = _Checker(tuple(r for r in CONDITION_ROOTS if r != "risk"), "a risk term", diags)
    tools = args.tool_inputs(project.integrations)
    federated = args.federated_prefixes(project.integrations)
    everywhere = args.scope_of(None, tools, federated)
    risk_checker.scope = everywhere
    for policy in project.policies:
        for rule in policy.rules:
            if rule.condition is not None:
                condition.scope = args.scope_of(rule.resource, tools, federated)
                condition.boolean(rule.condition, "a condition")
        condition.scope = everywhere
        for term in policy.risk:
            if reads_risk(term.condition):
                diags.append(
                    make(
                        "E0310",
                        "a risk term cannot read `risk`",
                        term.span,
                        label="risk defined in terms of itself",
                        help="risk terms read request attributes only",
                    )
                )
                continue
            risk_checker.boolean(term.condition, "a risk term")
        for req in policy.requires:
            if req.condition is not None:
                condition.boolean(req.condition, "a `require` condition")
    mapping = _Checker(MAPPING_ROOTS, "a mapping", diags)
    for integration in project.integrations:
        for mp in integration.mappings:
            mapping.type_of(mp.expr)
    diags.extend(missing_attribute_lints(project))
    return diags
