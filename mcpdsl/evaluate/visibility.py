"""Which tools a caller may see: `tools/list` of the MCP gateway (docs/mcp.md).

A tool is listed for a principal iff *some* call of it by that principal could
be allowed.  At listing time the gateway knows the principal and `request.auth`
(from the verified token), the resource (`tool NAME`) and the action
(`invoke`); it does not know the arguments, the context, the server's counters,
the risk, the time or the caller's address.  So a rule condition is evaluated
over the known part of the request, with every attribute under an unknown root
standing for *any* value.

Abstract values: the set of outcomes an expression may have, among `T` (True),
`F` (False), `M` (MISSING) and `E` (an evaluation error or a value that is not
a boolean).  A sub-expression that reads no unknown attribute is evaluated by
the evaluator itself (`closures.prepare_expr`), so it has exactly one outcome;
one that reads an unknown attribute may have any; `not`, `and` and `or` combine
outcome sets by the evaluator's own tables (`closures._not`, `_bool_op`), which
are associative, so the sets are folded pairwise.  Then, per policy (every
policy must allow, as in `PreparedPolicies._evaluate`):

* a deny rule *certainly* fires when every outcome of its condition fires a deny
  (`T` or `E`: an error fails closed) — the policy certainly denies;
* an allow rule *may* fire when `T` is among the outcomes of its condition;
* the policy may allow when no deny certainly fires and an allow rule may fire
  or the policy is `default allow`.

This over-approximates "some call could be allowed" (listing is sound: a tool
that a call could be allowed for is never hidden); it is exact for conditions
that read only the principal and `request.auth`.  Why not z3: listing runs per
`tools/list`, per caller, and must stay in the evaluator's layer and speed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from mcpdsl.evaluate.closures import prepare_expr
from mcpdsl.evaluate.policy import CompiledRule, PreparedPolicies
from mcpdsl.evaluate.values import MISSING, Refused
from mcpdsl.ir import model as m

#: Attribute roots a `tools/list` cannot know: decided per call.
UNKNOWN_ROOTS = frozenset({"args", "context", "stats", "now", "source"})
#: The action of every tool call.
INVOKE = "invoke"

T, F, M_, E = "T", "F", "M", "E"
ANY = frozenset({T, F, M_, E})
Outcomes = frozenset[str]
Abstract = Callable[[dict[str, Any], Decimal | None], Outcomes]


def _classify(value: Any) -> str:
    if value is True:
        return T
    if value is False:
        return F
    if value is MISSING:
        return M_
    return E


def _not(x: str) -> str:
    if x == T:
        return F
    if x in (F, M_):
        return T
    return E


def _and(x: str, y: str) -> str:
    if E in (x, y):
        return E
    return T if x == T and y == T else F


def _or(x: str, y: str) -> str:
    if E in (x, y):
        return E
    return T if T in (x, y) else F


def reads_unknown(e: m.Node, risk_known: bool) -> bool:
    """Whether `e` reads an attribute whose value `tools/list` cannot know."""
    if isinstance(e, m.Attr):
        if e.root == "risk":
            return not risk_known
        return e.root in UNKNOWN_ROOTS
    return any(reads_unknown(child, risk_known) for child in _children(e))


def _children(e: m.Node) -> Iterable[m.Node]:
    if isinstance(e, m.ListExpr):
        return e.items
    if isinstance(e, (m.Not, m.Neg)):
        return (e.operand,)
    if isinstance(e, (m.And, m.Or)):
        return e.operands
    if isinstance(e, (m.Compare, m.Arith)):
        return (e.left, e.right)
    if isinstance(e, m.In):
        return (e.item, e.collection)
    if isinstance(e, (m.InCidr, m.Matches)):
        return (e.operand,)
    if isinstance(e, m.Default):
        return (e.operand, e.fallback)
    if isinstance(e, m.Call):
        return e.args
    return ()


def abstract(e: m.Node, risk_known: bool) -> Abstract:
    """The outcome set of `e` over the known part of a request (module doc)."""
    if not reads_unknown(e, risk_known):
        fn = prepare_expr(e).fn

        def exact(inp: dict[str, Any], risk: Decimal | None) -> Outcomes:
            try:
                value = fn(inp, risk if risk is not None else Decimal(0))
            except Refused:
                return frozenset({E})
            return frozenset({_classify(value)})

        return exact
    if isinstance(e, m.Not):
        inner = abstract(e.operand, risk_known)
        return lambda inp, risk: frozenset(_not(x) for x in inner(inp, risk))
    if isinstance(e, (m.And, m.Or)):
        op = _and if isinstance(e, m.And) else _or
        parts = [abstract(o, risk_known) for o in e.operands]

        def fold(inp: dict[str, Any], risk: Decimal | None) -> Outcomes:
            acc: Outcomes | None = None
            for part in parts:
                got = part(inp, risk)
                acc = got if acc is None else frozenset(op(x, y) for x in acc for y in got)
            return acc if acc is not None else frozenset({T if op is _and else F})

        return fold
    return lambda inp, risk: ANY


@dataclass(frozen=True)
class _Rule:
    rule: CompiledRule
    cond: Abstract | None


@dataclass(frozen=True)
class Visibility:
    """The listing rule of one prepared policy set (built once per policy in force)."""

    policies: PreparedPolicies
    _rules: dict[int, _Rule] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for pol in self.policies.policies:
            risk_known = not pol.risk
            for rule in pol.rules:
                cond = rule.ir.condition
                self._rules[rule.order] = _Rule(
                    rule, None if cond is None else abstract(cond, risk_known)
                )

    def may_allow(self, principal: dict[str, Any], auth: dict[str, Any], tool: str) -> bool:
        """Whether some call of `tool` by this principal could be allowed (module doc)."""
        known = {
            "principal": principal,
            "action": INVOKE,
            "resource": {"type": "tool", "id": tool},
            "request": {"auth": auth},
        }
        ptype, pid = principal.get("type"), principal.get("id")
        try:
            cands = self.policies.candidates(ptype, pid, "tool", tool, INVOKE)
        except Refused:
            return False
        n = len(self.policies.policies)
        certain_deny = [False] * n
        may_allow = [False] * n
        for rule in cands:
            if rule.path is not None:  # a tool call has no request.path: never matches
                continue
            entry = self._rules[rule.order]
            pol = self.policies.policies[rule.policy]
            risk = None if pol.risk else Decimal(0)
            outcomes = frozenset({T}) if entry.cond is None else entry.cond(known, risk)
            if rule.deny:
                if outcomes <= {T, E}:
                    certain_deny[rule.policy] = True
            elif T in outcomes:
                may_allow[rule.policy] = True
        if n == 0:
            return False
        return all(
            not certain_deny[i] and (may_allow[i] or pol.default_allow)
            for i, pol in enumerate(self.policies.policies)
        )

    def visible(
        self, principal: dict[str, Any], auth: dict[str, Any], tools: Iterable[str]
    ) -> list[str]:
        """The tools of `tools` this principal may see, in the given order."""
        return [t for t in tools if self.may_allow(principal, auth, t)]


__all__ = ["INVOKE", "UNKNOWN_ROOTS", "Visibility", "abstract", "reads_unknown"]
