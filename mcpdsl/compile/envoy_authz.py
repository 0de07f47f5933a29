"""Zero-trust on a gateway route: RBAC where Envoy sees everything, else ext_authz -> OPA.

Envoy RBAC sees the verified peer identity (mTLS URI SAN), the method, the
path, request headers and the connection's source address.  A rule is
*expressible* when its principal and its condition only read those; then its
RBAC policy is exactly the rule (docs/semantics.md: the atoms below are
boolean for every request Envoy sees, so MISSING and ERROR cannot arise and
`and`/`or`/`not` are plain boolean algebra).

Per route and mcpdsl policy, the relevant rules are those whose resource
pattern matches the route's target and whose path and methods can overlap
the route's.  If every relevant rule of every policy is expressible (and no
obligation can attach to an allow), the route is decided by RBAC alone:
one DENY filter (every deny rule) and one ALLOW filter per `default deny`
policy (its allow rules; none = deny all).  Otherwise the route goes through
ext_authz to OPA, and RBAC keeps only the expressible deny rules (safe:
deny overrides allow).  Allow rules are never encoded partially.

What ext_authz hands OPA is what the gateway's door provides
(`mcpdsl.ir.door.DoorMapping.provides`, the table both the evaluator's and
the Rego's CheckRequest mapping read): the peer's service identity always;
principal claims and `request.auth.mfa` only from an accepted provider;
`context` only from its trusted headers.  A delegated rule reading anything
else is recorded as `not-enforced` (a deny that cannot fire: fails open) or
`narrowed` (an allow that cannot fire, or whose obligations the door cannot
prove: fails closed); `mcpdsl build` reports both.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from mcpdsl.compile.server import SERVER
from mcpdsl.compile.tool_args import GATEWAY
from mcpdsl.diagnostics import Status
from mcpdsl.ir import model as m
from mcpdsl.ir.args import ROOT as ARGS_ROOT
from mcpdsl.ir.args import TOOL
from mcpdsl.ir.door import DoorMapping
from mcpdsl.ir.globs import glob_regex, is_literal
from mcpdsl.ir.paths import globs_overlap
from mcpdsl.ir.reads import attrs, reads_risk
from mcpdsl.ir.stats import ROOT as STATS_ROOT
from mcpdsl.source import Span

#: Headers Envoy itself sets, rewrites or strips before RBAC runs.
_REWRITTEN_HEADERS = re.compile(
    r"^(host|connection|keep-alive|proxy-connection|transfer-encoding|upgrade|te|"
    r"x-request-id|x-forwarded-.*|x-envoy-.*)$"
)
_HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")

Formula = bool | dict[str, Any]


class Inexpressible(Exception):
    """A rule part Envoy RBAC cannot evaluate; the message says why."""


@dataclass(frozen=True)
class Resource:
    """What a route's requests are about: `service api`, `tool "crm.lookup"`, or unknown."""

    type: str | None
    id: str | None


@dataclass
class RouteAuthz:
    """The access-control configuration of one route."""

    resource: Resource
    deny: dict[str, dict[str, Any]] = field(default_factory=dict)  # RBAC policy per rule key
    allow: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # per mcpdsl policy
    delegated: bool = False
    reason: str = ""
    records: list[Record] = field(default_factory=list)


@dataclass(frozen=True)
class Record:
    """How one access rule is carried on one route: where, status, and why not fully."""

    rule: str  # rule key, POLICY/ID
    where: str
    span: Span | None
    status: Status = Status.ENFORCED
    why: tuple[str, ...] = ()
    site: str = ""  # "gateway public, route /v1/**"
    effect: str = "allow"
    server: bool = False  # it reads the decision server's counters (compile/server.py)
    gateway: bool = False  # it reads tool arguments on a tool route (compile/tool_args.py)


def _unprovided(attr: m.Attr, door: DoorMapping) -> bool:
    """Whether the door never fills `attr` (so a request through it always lacks it)."""
    return not door.provides(attr)


# ---------------------------------------------------------------- formulas


def _and(parts: list[Formula]) -> Formula:
    kept: list[dict[str, Any]] = []
    for part in parts:
        if part is False:
            return False
        if part is not True:
            assert isinstance(part, dict)
            kept.extend(part["and_ids"]["ids"] if "and_ids" in part else [part])
    if not kept:
        return True
    return kept[0] if len(kept) == 1 else {"and_ids": {"ids": kept}}


def _or(parts: list[Formula]) -> Formula:
    kept: list[dict[str, Any]] = []
    for part in parts:
        if part is True:
            return True
        if part is not False:
            assert isinstance(part, dict)
            kept.extend(part["or_ids"]["ids"] if "or_ids" in part else [part])
    if not kept:
        return False
    return kept[0] if len(kept) == 1 else {"or_ids": {"ids": kept}}


def _not(part: Formula) -> Formula:
    if isinstance(part, bool):
        return not part
    if set(part) == {"not_id"}:
        inner: dict[str, Any] = part["not_id"]
        return inner
    return {"not_id": part}


def principal_json(formula: Formula) -> dict[str, Any]:
    if formula is True:
        return {"any": True}
    if formula is False:
        return {"not_id": {"any": True}}
    assert isinstance(formula, dict)
    return formula


def _to_permission(formula: Formula) -> dict[str, Any]:
    """The same tree with Permission field names (and_rules/or_rules/not_rule)."""
    if formula is True:
        return {"any": True}
    if formula is False:
        return {"not_rule": {"any": True}}
    assert isinstance(formula, dict)
    if "and_ids" in formula:
        return {"and_rules": {"rules": [_to_permission(x) for x in formula["and_ids"]["ids"]]}}
    if "or_ids" in formula:
        return {"or_rules": {"rules": [_to_permission(x) for x in formula["or_ids"]["ids"]]}}
    if "not_id" in formula:
        return {"not_rule": _to_permission(formula["not_id"])}
    return formula


# ------------------------------------------------------------ the atoms


def _header(name: str, exact: str) -> dict[str, Any]:
    return {"header": {"name": name, "string_match": {"exact": exact}}}


def _present(name: str) -> dict[str, Any]:
    return {"header": {"name": name, "present_match": True}}


def _path_glob(pattern: str) -> dict[str, Any]:
    if is_literal(pattern):
        return {"url_path": {"path": {"exact": pattern}}}
    return {"url_path": {"path": {"safe_regex": {"regex": glob_regex(pattern)}}}}


@dataclass(frozen=True)
class _Visible:
    """An attribute Envoy sees as a header (`always` = present on every request)."""

    header: str
    always: bool


def _const(value: object) -> bool:
    return isinstance(value, (str, bool, Decimal))


class _Translator:
    def __init__(self, resource: Resource) -> None:
        self.resource = resource

    def visible(self, attr: m.Attr) -> _Visible | str | None:
        """A header, a constant string (resource.*), None (MISSING), or raise."""
        dotted = attr.dotted()
        if attr.root == "action" and not attr.path:
            return _Visible(":method", True)
        if attr.root == "request" and attr.path == ("path",):
            return _Visible(":path", True)
        if attr.root == "request" and len(attr.path) == 2 and attr.path[0] == "headers":
            name = attr.path[1]
            if not _HEADER_NAME.match(name):
                raise Inexpressible(f"reads `{dotted}` (Envoy matches lower-case header names)")
            if _REWRITTEN_HEADERS.match(name):
                raise Inexpressible(f"reads `{dotted}`, which Envoy sets or rewrites itself")
            return _Visible(name, False)
        if attr.root == "resource" and attr.path in (("type",), ("id",)):
            return getattr(self.resource, attr.path[0])  # type: ignore[no-any-return]
        raise Inexpressible(f"reads `{dotted}`")

    def condition(self, e: m.Node) -> Formula:
        if isinstance(e, m.Literal_):
            if isinstance(e.value, bool):
                return e.value
            raise Inexpressible("uses a non-boolean value as a condition")
        if isinstance(e, m.And):
            return _and([self.condition(x) for x in e.operands])
        if isinstance(e, m.Or):
            return _or([self.condition(x) for x in e.operands])
        if isinstance(e, m.Not):
            return _not(self.condition(e.operand))
        if isinstance(e, m.Compare):
            return self.compare(e)
        if isinstance(e, m.In):
            return self.member(e)
        if isinstance(e, m.InCidr):
            return self.cidr(e)
        if isinstance(e, m.Matches):
            if isinstance(e.operand, m.Attr) and e.operand.dotted() == "request.path":
                return _path_glob(e.pattern)
            raise Inexpressible("uses `matches` on something other than `request.path`")
        if isinstance(e, m.Attr):
            self.visible(e)
            raise Inexpressible(f"uses `{e.dotted()}` as a boolean")
        if isinstance(e, m.Call):
            raise Inexpressible(f"uses `{e.function}()`")
        what = {m.Arith: "arithmetic", m.Default: "`??`", m.Neg: "negation"}.get(type(e))
        raise Inexpressible(f"uses {what or 'a non-boolean value as a condition'}")

    def _side(self, e: m.Node) -> tuple[str, object]:
        if isinstance(e, m.Literal_) and e.unit is None:
            return "const", e.value
        if isinstance(e, m.Attr):
            seen = self.visible(e)
            if isinstance(seen, _Visible):
                return "header", seen
            return ("missing", None) if seen is None else ("const", seen)
        raise Inexpressible("compares a computed value")

    def equals(self, seen: _Visible, value: object) -> Formula:
        """`attr == value` for a header attribute (MISSING = absent header -> false)."""
        if not isinstance(value, str):
            return False  # a header value is a string; JSON equality with a non-string fails
        if seen.header == ":path":
            # `request.path` is the path without the query (evaluate/target.py); the
            # `:path` header carries the query, `url_path` does not.
            return {"url_path": {"path": {"exact": value}}}
        return _header(seen.header, value)

    def present(self, seen: _Visible) -> Formula:
        return True if seen.always else _present(seen.header)

    def compare(self, e: m.Compare) -> Formula:
        if e.op not in ("==", "!="):
            for side in (e.left, e.right):
                if isinstance(side, m.Attr):
                    self.visible(side)
            raise Inexpressible(f"orders values with `{e.op}`")
        (kl, vl), (kr, vr) = self._side(e.left), self._side(e.right)
        if "missing" in (kl, kr):
            return False  # a MISSING side makes both == and != false
        if kl == "header" and kr == "header":
            raise Inexpressible("compares two request attributes")
        if kl == "const" and kr == "const":
            same = _json_eq(vl, vr)
            return same if e.op == "==" else not same
        seen, value = (vl, vr) if kl == "header" else (vr, vl)
        assert isinstance(seen, _Visible)
        eq = self.equals(seen, value)
        return eq if e.op == "==" else _and([self.present(seen), _not(eq)])

    def member(self, e: m.In) -> Formula:
        if not isinstance(e.collection, m.ListExpr):
            raise Inexpressible("tests membership in a value Envoy cannot see")
        values = []
        for item in e.collection.items:
            if not (isinstance(item, m.Literal_) and item.unit is None):
                raise Inexpressible("tests membership in a computed list")
            values.append(item.value)
        kind, seen = self._side(e.item)
        if kind == "missing":
            return False
        if kind == "const":
            inside = any(_json_eq(seen, v) for v in values)
            return inside is not e.negated
        assert isinstance(seen, _Visible)
        inside_f = _or([self.equals(seen, v) for v in values])
        return _and([self.present(seen), _not(inside_f)]) if e.negated else inside_f

    def cidr(self, e: m.InCidr) -> Formula:
        if not (isinstance(e.operand, m.Attr) and e.operand.dotted() == "source.ip"):
            if isinstance(e.operand, m.Attr):
                self.visible(e.operand)
            raise Inexpressible("tests `in cidr` on something other than `source.ip`")
        net = ipaddress.ip_network(e.cidr, strict=False)
        return {
            "direct_remote_ip": {
                "address_prefix": str(net.network_address),
                "prefix_len": net.prefixlen,
            }
        }


def _json_eq(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, Decimal) and isinstance(b, Decimal):
        return a == b
    return type(a) is type(b) and a == b


def _is_visible(attr: m.Attr) -> bool:
    if attr.root == "action":
        return not attr.path
    if attr.root == "request":
        return attr.path == ("path",) or (len(attr.path) == 2 and attr.path[0] == "headers")
    if attr.root == "resource":
        return attr.path in (("type",), ("id",))
    return attr.dotted() == "source.ip"


def _invisible_reads(e: m.Node | None) -> list[str]:
    """The attributes of an expression Envoy cannot see, in source order (for messages)."""
    return list(dict.fromkeys(a.dotted() for a in attrs(e) if not _is_visible(a)))


def unprovided_reads(expr: m.Node | None, door: DoorMapping) -> list[str]:
    """The attributes `expr` reads that the door never provides, in source order."""
    return list(dict.fromkeys(a.dotted() for a in attrs(expr) if _unprovided(a, door)))


def delegated_status(
    rule: m.Rule, policy: m.Policy, obligations: list[str], door: DoorMapping
) -> tuple[Status, tuple[str, ...]]:
    """How ext_authz -> OPA carries a rule (module docstring), and why when not fully.

    The facts are the door's (`DoorMapping.provides`, `auth_fields`): what its
    CheckRequest mapping can fill, given the gateway's providers and trusted
    headers.  `risk` is the policy's risk terms, so a rule reading it reads
    what they read.
    """
    reads = unprovided_reads(rule.condition, door)
    if reads_risk(rule.condition):
        for term in policy.risk:
            reads.extend(r for r in unprovided_reads(term.condition, door) if r not in reads)
    # the server's counters are said separately (compile/server.py, B0171), and so are
    # tool arguments on a tool route (compile/tool_args.py, B0180); elsewhere `args.*`
    # is missing in every evaluator alike (mcpdsl.ir.args)
    reads = [r for r in reads if r.split(".", 1)[0] not in (STATS_ROOT, ARGS_ROOT)]
    why: list[str] = []
    if reads:
        names = ", ".join(f"`{r}`" for r in reads)
        why.append(f"it reads {names}, which the ext_authz request does not carry")
    unproven = [o for o in obligations if o not in door.auth_fields]
    if rule.effect == "allow" and unproven:
        names = ", ".join(f"`{o}`" for o in unproven)
        why.append(f"its policy may require {names}, which nothing proves at ext_authz")
    if not why:
        return Status.ENFORCED, ()
    status = Status.NOT_ENFORCED if rule.effect == "deny" else Status.NARROWED
    return status, tuple(why)


def condition_formula(expr: m.Node | None, resource: Resource) -> Formula:
    """The RBAC principal formula of a condition; raises Inexpressible with the reason."""
    if expr is None:
        return True
    try:
        return _Translator(resource).condition(expr)
    except Inexpressible as exc:
        reads = _invisible_reads(expr)
        if reads:
            raise Inexpressible("reads " + ", ".join(reads)) from exc
        raise


# -------------------------------------------------------------- rules


def resource_matches(pattern: m.EntityPattern, resource: Resource) -> bool:
    if pattern.type is None:
        return True
    if resource.type is None or pattern.type != resource.type:
        return False
    return pattern.ids is None or resource.id in pattern.ids


def relevant(rule: m.Rule, resource: Resource, route: m.Route) -> bool:
    """Whether some request of `route` can match `rule` (resource, methods, path)."""
    if not resource_matches(rule.resource, resource):
        return False
    if rule.actions and route.methods and not set(rule.actions) & set(route.methods):
        return False
    return rule.path is None or globs_overlap(rule.path, route.path)


def principal_formula(pattern: m.EntityPattern, identities: dict[str, list[str | None]]) -> Formula:
    """`any`, or services that all have a SPIFFE identity (mTLS URI SAN, exact)."""
    if pattern.type is None:
        return True
    if pattern.type != "service" or pattern.ids is None:
        raise Inexpressible(
            f"names principal `{pattern.describe()}`, which has no verifiable identity"
        )
    parts: list[Formula] = []
    for ident in pattern.ids:
        known = identities.get(ident, [None])
        if not known or any(x is None for x in known):
            raise Inexpressible(f"names service `{ident}`, which has no `identity`")
        for spiffe in known:
            parts.append({"authenticated": {"principal_name": {"exact": spiffe}}})
    return _or(parts)


def rule_policy(
    rule: m.Rule, resource: Resource, identities: dict[str, list[str | None]]
) -> dict[str, Any]:
    """The RBAC policy that matches exactly the requests on which `rule` fires."""
    parts: list[Formula] = []
    reasons: list[str] = []
    for build in (
        lambda: principal_formula(rule.principal, identities),
        lambda: condition_formula(rule.condition, resource),
    ):
        try:
            parts.append(build())
        except Inexpressible as exc:
            reasons.append(str(exc))
    if reasons:
        raise Inexpressible("; ".join(reasons))
    who = _and(parts)
    what: list[Formula] = []
    if rule.actions:
        what.append(_or([_header(":method", a) for a in rule.actions]))
    if rule.path is not None:
        what.append(_path_glob(rule.path))
    return {
        "permissions": [_to_permission(_and(what))],
        "principals": [principal_json(who)],
    }


def _require_applies(req: m.Requirement, resource: Resource) -> bool:
    if req.condition is None:
        return True
    try:
        return condition_formula(req.condition, resource) is not False
    except Inexpressible:
        return True


_Row = tuple[str, m.Rule, dict[str, Any] | None, str]  # rule key, rule, RBAC policy, why not


def route_authz(
    policies: list[tuple[str, m.Policy]],
    resource: Resource,
    route: m.Route,
    identities: dict[str, list[str | None]],
    where: str,
    door: DoorMapping,
    authz: str = "opa",
) -> RouteAuthz:
    """Split the route's access control between RBAC and ext_authz (module docstring).

    `authz` names what answers ext_authz in the records: `opa`, or the tree's
    decision server (`mcpdsl serve NAME`).
    """
    out = RouteAuthz(resource)
    compiled: list[tuple[str, m.Policy, list[_Row], list[str]]] = []
    reasons: list[str] = []
    for label, policy in policies:
        rows: list[_Row] = []
        for rule in policy.rules:
            if not relevant(rule, resource, route):
                continue
            key = f"{label}/{rule.id}"
            try:
                rows.append((key, rule, rule_policy(rule, resource, identities), ""))
            except Inexpressible as exc:
                rows.append((key, rule, None, str(exc)))
                reasons.append(f"{key} {exc}")
        can_allow = policy.default == "allow" or any(r.effect == "allow" for _, r, _, _ in rows)
        obligations = sorted(
            {q.obligation for q in policy.requires if _require_applies(q, resource)}
        )
        if can_allow and obligations:
            reasons.append(
                f"{label} may require {', '.join(obligations)}, which Envoy cannot verify"
            )
        compiled.append((label, policy, rows, obligations))
    out.delegated = bool(reasons)
    out.reason = reasons[0] if reasons else ""
    for label, policy, rows, obligations in compiled:
        for key, rule, rbac, why in rows:
            span = rule.span or policy.span
            if rule.effect == "deny" and rbac is not None:
                out.deny[key] = rbac
                out.records.append(Record(key, f"rbac deny, {where}", span))
            elif out.delegated:
                because = why or f"route delegated: {out.reason}"
                status, missing = delegated_status(rule, policy, obligations, door)
                text = f"ext_authz -> {authz}, {where} ({because})"
                server = SERVER.needs(rule, policy)
                # on a route whose resource may be a tool, `args.*` is an ERROR there
                gateway = resource.type in (None, TOOL) and GATEWAY.needs(rule, policy)
                out.records.append(
                    Record(key, text, span, status, missing, where, rule.effect, server, gateway)
                )
            elif policy.default == "allow":
                text = f"default allow (no rbac needed), {where}"
                out.records.append(Record(key, text, span))
            elif rbac is not None:
                out.allow.setdefault(label, {})[key] = rbac
                out.records.append(Record(key, f"rbac allow, {where}", span))
        if not out.delegated and policy.default == "deny":
            out.allow.setdefault(label, {})
    return out
