"""`mcpdsl diff OLD NEW`: the semantic change of access, and of scaling, capacity and carbon.

Access.  Both trees are encoded over ONE request (`encode.Encoder` shares the
attribute variables by path), so `allowed_old(x) != allowed_new(x)` is one
formula.  It is split by cause: every rule that differs between the trees
(added, removed, or changed — rules are paired by content first, so
renumbered unlabelled rules are not changes, then by id), every rule that
reads `risk` in a policy whose risk terms changed, and a residual group for
policy-level changes (a `default` flipped, a policy added or removed).  A
request whose decision changed is matched by one of those rules or falls in
the residual group, because a policy whose matching rules, risk and default
are unchanged decides the same.  For each group and direction (widened:
denied before, allowed now; narrowed: the reverse) one query, restricted by
the rule index to the rules that can match together with the group's rule,
gives a witness; the witness is re-run through both engines and reported
only when they confirm the change.

Obligations.  For a policy whose `require` clauses (or risk terms) changed,
requests allowed by both trees on which an obligation appears or goes away,
confirmed with both engines.

Routing.  For each gateway, from the first position where the route lists
differ, every route of either tree is a group: requests it takes (its match
and no earlier route's) that the other tree routes elsewhere (another
target or rewrite, or nowhere).  Witnesses are confirmed with `PreparedProject.route`
(what `Engine.route` runs) on both trees; a request that had no route and now has one is *widened*.

Parameters.  Scaling, pool, carbon, job and service settings are flattened to
dotted fields and compared: one row per changed field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from mcpdsl.analysis.encode import FALSE, TRUE, Encoder, F, all_of, any_of
from mcpdsl.analysis.index import Entry, RuleIndex
from mcpdsl.analysis.witness import authorize, minimise
from mcpdsl.evaluate.project import PreparedProject, prepare_project
from mcpdsl.ir import model as m
from mcpdsl.source import Span


@dataclass
class AccessChange:
    """Requests of one group whose decision changed, with one confirmed witness."""

    direction: str  # "widened" | "narrowed"
    group: str  # "POLICY/RULE" or "POLICY"
    cause: str  # added | removed | changed | risk | default | policy added | policy removed
    side: str  # "old" | "new": which tree `span` is in
    span: Span | None
    witness: dict[str, Any]
    before: dict[str, Any]
    after: dict[str, Any]


@dataclass
class ParamChange:
    kind: str
    name: str
    field: str
    old: str
    new: str


@dataclass
class RouteChange:
    """Requests a route takes in one tree that the other tree routes elsewhere."""

    direction: str  # "widened" (no route before) | "narrowed" (no route now) | "changed"
    gateway: str
    route: str  # the route's glob
    cause: str  # "added" | "removed" | "existing"
    side: str
    span: Span | None
    method: str
    path: str
    before: str
    after: str


@dataclass
class ObligationChange:
    """Allowed requests (in both trees) whose obligation `obligation` appeared or went away."""

    direction: str  # "added" | "removed"
    policy: str
    obligation: str
    witness: dict[str, Any]
    before: list[str]
    after: list[str]


@dataclass
class DiffResult:
    access: list[AccessChange] = field(default_factory=list)
    obligations: list[ObligationChange] = field(default_factory=list)
    routes: list[RouteChange] = field(default_factory=list)
    parameters: list[ParamChange] = field(default_factory=list)
    inconclusive: list[str] = field(default_factory=list)
    unconfirmed: list[str] = field(default_factory=list)

    @property
    def widened(self) -> list[AccessChange]:
        return [c for c in self.access if c.direction == "widened"]

    @property
    def gains(self) -> bool:
        """Some request gains access: allowed now and denied before, or routed now and not before."""
        return bool(self.widened) or any(r.direction == "widened" for r in self.routes)

    @property
    def narrowed(self) -> list[AccessChange]:
        return [c for c in self.access if c.direction == "narrowed"]


@dataclass
class _Group:
    name: str
    cause: str
    side: str
    span: Span | None
    old_rules: list[Entry]  # versions of the rule in the old tree
    new_rules: list[Entry]
    region: F | None = None  # None: the residual group


class _Side:
    def __init__(self, tag: str, project: m.Project, enc: Encoder) -> None:
        self.tag = tag
        self.project = project
        self.enc = enc
        self.entries = [
            Entry(pi, ri, r)
            for pi, p in enumerate(project.policies)
            for ri, r in enumerate(p.rules)
        ]
        self.index = RuleIndex(self.entries)
        self.envs = [enc.risk_env((tag, pi), p) for pi, p in enumerate(project.policies)]
        self.engine = prepare_project(project)

    def fires(self, e: Entry) -> F:
        return self.enc.rule_fires(e.rule, self.envs[e.policy])

    def allowed(self, near: Iterable[m.Rule] | None) -> F:
        """The tree allows the request; with `near`, only rules that can match with them."""
        if near is None:
            chosen = self.entries
        else:
            seen: dict[tuple[int, int], Entry] = {}
            for rule in near:
                for e in self.index.overlapping(rule):
                    seen[e.order] = e
            chosen = [seen[k] for k in sorted(seen)]
        if not self.project.policies:
            return FALSE
        parts = []
        for pi, policy in enumerate(self.project.policies):
            mine = [e for e in chosen if e.policy == pi]
            denied = any_of(self.fires(e) for e in mine if e.rule.effect == "deny")
            allows = any_of(self.fires(e) for e in mine if e.rule.effect == "allow")
            default = TRUE if policy.default == "allow" else FALSE
            parts.append(~denied & (allows | default))
        return all_of(parts)

    def decide(self, request: dict[str, Any]) -> dict[str, Any]:
        d = self.engine.authorize(request)
        return {"allowed": d.allowed, "rules": list(d.rules), "default": d.default_applied}


def diff(old: m.Project, new: m.Project, *, timeout_ms: int = 2000) -> DiffResult:
    result = DiffResult()
    result.parameters = parameter_changes(old, new)
    enc = Encoder([old, new], timeout_ms=timeout_ms)
    a, b = _Side("old", old, enc), _Side("new", new, enc)
    groups, residual = _groups(a, b)
    for g in groups:
        near = [e.rule for e in g.old_rules + g.new_rules]
        g.region = any_of(enc.match(r) for r in near)
        _query(result, enc, a, b, g, a.allowed(near), b.allowed(near))
    if residual:
        covered = any_of(g.region for g in groups if g.region is not None)
        for g in residual:
            g.region = ~covered
            _query(result, enc, a, b, g, a.allowed(None), b.allowed(None))
    result.access.sort(key=lambda c: (c.direction != "widened", c.group, c.cause))
    _obligations(result, enc, a, b)
    _routes(result, enc, old, new, a.engine, b.engine)
    return result


def _obligations(result: DiffResult, enc: Encoder, a: _Side, b: _Side) -> None:
    """For policies whose `require` clauses (or risk) changed: requests allowed in both trees
    on which an obligation appears or goes away."""
    olds = {p.qualified: (i, p) for i, p in enumerate(a.project.policies)}
    news = {p.qualified: (i, p) for i, p in enumerate(b.project.policies)}
    both_ok: F | None = None
    for q in sorted(set(olds) & set(news)):
        (oi, op), (ni, np_) = olds[q], news[q]
        if _dump(op.requires) == _dump(np_.requires) and _dump(op.risk) == _dump(np_.risk):
            continue
        if both_ok is None:
            both_ok = a.allowed(None) & b.allowed(None)
        names = sorted({r.obligation for r in op.requires} | {r.obligation for r in np_.requires})
        for name in names:
            before = _owes(a, oi, name)
            after = _owes(b, ni, name)
            for direction, formula in (("added", ~before & after), ("removed", before & ~after)):
                out = enc.solve(both_ok & formula)
                if out.status == "unknown":
                    result.inconclusive.append(f"obligation {name} of {np_.name}: {out.reason}")
                if out.status != "sat" or out.witness is None:
                    continue
                want = direction == "added"

                def keep(
                    w: dict[str, Any], name: str = name, want: bool = want, how: str = direction
                ) -> bool:
                    what = f"obligation `{name}` {how}"
                    x, y = authorize(a.engine, w, what), authorize(b.engine, w, what)
                    return (
                        x.allowed
                        and y.allowed
                        and (name in x.obligations) is not want
                        and (name in y.obligations) is want
                    )

                if not keep(out.witness):
                    result.unconfirmed.append(f"obligation {name} {direction}: {out.witness}")
                    continue
                w = minimise(out.witness, keep)
                result.obligations.append(
                    ObligationChange(
                        direction,
                        np_.name,
                        name,
                        w,
                        list(a.engine.authorize(w).obligations),
                        list(b.engine.authorize(w).obligations),
                    )
                )


def _owes(side: _Side, pi: int, name: str) -> F:
    """Policy `pi` adds obligation `name`: one of its `require name` clauses fires or errors."""
    env = side.envs[pi]
    clauses = [r for r in side.project.policies[pi].requires if r.obligation == name]
    return any_of(side.enc.fires_or_errors(r.condition, env) for r in clauses)


def _routes(
    result: DiffResult,
    enc: Encoder,
    old: m.Project,
    new: m.Project,
    e_old: PreparedProject,
    e_new: PreparedProject,
) -> None:
    """Routing changes, each attributed once: to the new route that takes the request now, or
    (for requests no route takes now) to the old route that took it before."""
    olds = {g.qualified: g for g in old.gateways}
    news = {g.qualified: g for g in new.gateways}
    for name in sorted(set(olds) | set(news)):
        go, gn = olds.get(name), news.get(name)
        ro = list(go.routes) if go else []
        rn = list(gn.routes) if gn else []
        ko, kn = [_dump([r]) for r in ro], [_dump([r]) for r in rn]
        if ko == kn:
            continue
        first = next(
            (i for i, (x, y) in enumerate(zip(ko, kn, strict=False)) if x != y),
            min(len(ko), len(kn)),
        )
        unrouted_now = all_of([~enc.route_match(r) for r in rn])
        jobs: list[tuple[str, list[m.Route], int, F]] = []
        for j in range(first, len(rn)):
            same = any_of(_taken(enc, ro, i) for i, k in enumerate(ko) if k == kn[j])
            jobs.append(("new", rn, j, _taken(enc, rn, j) & ~same))
        for i in range(first, len(ro)):
            jobs.append(("old", ro, i, _taken(enc, ro, i) & unrouted_now))
        for side, routes, j, formula in jobs:
            route = routes[j]
            method = route.methods[0] if route.methods else "GET"
            out = enc.solve(formula, prefer=(enc.equals(("action",), method),))
            if out.status == "unknown":
                result.inconclusive.append(f"route {route.path} of {name}: {out.reason}")
                continue
            if out.status != "sat" or out.witness is None:
                continue
            verb = out.witness.get("action")
            req = out.witness.get("request")
            path = req.get("path") if isinstance(req, dict) else None
            if not isinstance(verb, str) or not isinstance(path, str):
                continue
            before = _route_of(e_old, go, verb, path)
            after = _route_of(e_new, gn, verb, path)
            if before == after:
                result.unconfirmed.append(f"route {route.path}: {verb} {path}")
                continue
            if before == "no route":
                direction = "widened"
            elif after == "no route":
                direction = "narrowed"
            else:
                direction = "changed"
            keys, other = (kn, ko) if side == "new" else (ko, kn)
            cause = "existing" if keys[j] in other else ("added" if side == "new" else "removed")
            gw = gn if side == "new" else go
            assert gw is not None
            result.routes.append(
                RouteChange(
                    direction,
                    gw.name,
                    route.path,
                    cause,
                    side,
                    route.span,
                    verb,
                    path,
                    before,
                    after,
                )
            )
    result.routes.sort(key=lambda r: (r.direction != "widened", r.gateway, r.side, r.route))


def _taken(enc: Encoder, routes: list[m.Route], j: int) -> F:
    """Route `j` takes the request: it matches and no earlier route does."""
    return all_of([enc.route_match(routes[j]), *(~enc.route_match(r) for r in routes[:j])])


def _route_of(engine: PreparedProject, gateway: m.Gateway | None, method: str, path: str) -> str:
    if gateway is None:
        return "no route"
    d = engine.route(gateway.qualified, method, path)
    if d is None:
        return "no route"
    return f"{d.target_kind} {d.target} {d.path}"


def _query(
    result: DiffResult, enc: Encoder, a: _Side, b: _Side, g: _Group, old_ok: F, new_ok: F
) -> None:
    assert g.region is not None
    for direction, formula in (("widened", ~old_ok & new_ok), ("narrowed", old_ok & ~new_ok)):
        out = enc.solve(g.region & formula)
        if out.status == "unknown":
            result.inconclusive.append(f"{direction} {g.name}: {out.reason or 'unknown'}")
            continue
        if out.status != "sat" or out.witness is None:
            continue
        want = direction == "widened"

        def keep(q: dict[str, Any], want: bool = want, what: str = direction) -> bool:
            return (
                authorize(a.engine, q, f"access {what}").allowed is not want
                and authorize(b.engine, q, f"access {what}").allowed is want
            )

        if not keep(out.witness):
            result.unconfirmed.append(
                f"{direction} {g.name}: {json.dumps(out.witness, default=str)}"
            )
            continue
        w = minimise(out.witness, keep)
        result.access.append(
            AccessChange(direction, g.name, g.cause, g.side, g.span, w, a.decide(w), b.decide(w))
        )


def _content(rule: m.Rule) -> str:
    return json.dumps(
        rule.model_dump(mode="json", exclude={"id", "labelled"}), sort_keys=True, default=str
    )


def _groups(a: _Side, b: _Side) -> tuple[list[_Group], list[_Group]]:
    groups: list[_Group] = []
    residual: list[_Group] = []
    old_p = {p.qualified: (i, p) for i, p in enumerate(a.project.policies)}
    new_p = {p.qualified: (i, p) for i, p in enumerate(b.project.policies)}
    for q in sorted(set(old_p) | set(new_p)):
        if q not in new_p:
            pi, p = old_p[q]
            residual.append(_Group(p.name, "policy removed", "old", p.span, [], []))
            groups += [
                _Group(f"{p.name}/{e.rule.id}", "removed", "old", e.rule.span, [e], [])
                for e in a.entries
                if e.policy == pi
            ]
            continue
        if q not in old_p:
            pi, p = new_p[q]
            residual.append(_Group(p.name, "policy added", "new", p.span, [], []))
            groups += [
                _Group(f"{p.name}/{e.rule.id}", "added", "new", e.rule.span, [], [e])
                for e in b.entries
                if e.policy == pi
            ]
            continue
        (oi, op), (ni, np_) = old_p[q], new_p[q]
        olds = [e for e in a.entries if e.policy == oi]
        news = [e for e in b.entries if e.policy == ni]
        pool: dict[str, list[Entry]] = {}
        for e in news:
            pool.setdefault(_content(e.rule), []).append(e)
        gone = []
        for e in olds:
            same = pool.get(_content(e.rule))
            if same:
                same.pop(0)
            else:
                gone.append(e)
        fresh = [e for lst in pool.values() for e in lst]
        fresh.sort(key=lambda e: e.order)
        by_id = {e.rule.id: e for e in fresh}
        paired = set()
        for e in gone:
            twin = by_id.get(e.rule.id)
            if twin is not None:
                paired.add(twin.order)
                groups.append(
                    _Group(f"{np_.name}/{e.rule.id}", "changed", "new", twin.rule.span, [e], [twin])
                )
            else:
                groups.append(
                    _Group(f"{op.name}/{e.rule.id}", "removed", "old", e.rule.span, [e], [])
                )
        for e in fresh:
            if e.order not in paired:
                groups.append(
                    _Group(f"{np_.name}/{e.rule.id}", "added", "new", e.rule.span, [], [e])
                )
        if _dump(op.risk) != _dump(np_.risk):
            touched = {g.name for g in groups}
            for side, entries in (("old", olds), ("new", news)):
                for e in entries:
                    name = f"{np_.name}/{e.rule.id}"
                    reads = e.rule.condition is not None and a.enc.reads_risk(e.rule.condition)
                    if reads and name not in touched:
                        touched.add(name)
                        o = [x for x in olds if x.rule.id == e.rule.id]
                        n = [x for x in news if x.rule.id == e.rule.id]
                        groups.append(_Group(name, "risk", side, e.rule.span, o, n))
        if op.default != np_.default:
            residual.append(
                _Group(np_.name, f"default {op.default} -> {np_.default}", "new", np_.span, [], [])
            )
    return groups, residual


def _dump(items: Iterable[m.Node]) -> str:
    return json.dumps([i.model_dump(mode="json") for i in items], sort_keys=True, default=str)


# ------------------------------------------------------------------ parameters

_KINDS = ("services", "scales", "pools", "jobs", "carbons")
_SKIP = {
    "package",
    "name",
    "kind",
    "image",
    "identity",
    "labels",
    "env",
    "namespace",
    "tier",
    "span",
}
_KEYS = ("team", "region", "metric", "service")


def parameter_changes(old: m.Project, new: m.Project) -> list[ParamChange]:
    rows: list[ParamChange] = []
    for kind in _KINDS:
        before = {d.qualified: _flat(d) for d in getattr(old, kind)}
        after = {d.qualified: _flat(d) for d in getattr(new, kind)}
        label = kind[:-1] if kind != "carbons" else "carbon"
        for name in sorted(set(before) | set(after)):
            x, y = before.get(name), after.get(name)
            if x is None or y is None:
                rows.append(
                    ParamChange(
                        label,
                        name,
                        "(declaration)",
                        "absent" if x is None else "present",
                        "absent" if y is None else "present",
                    )
                )
                continue
            for key in sorted(set(x) | set(y)):
                if x.get(key) != y.get(key):
                    rows.append(ParamChange(label, name, key, x.get(key, "-"), y.get(key, "-")))
    return rows


def _flat(decl: m.Decl) -> dict[str, str]:
    data = decl.model_dump(mode="json")
    out: dict[str, str] = {}
    if isinstance(decl, m.Scale):
        data["replicas"] = f"{data.pop('min_replicas')}..{data.pop('max_replicas')}"
    if isinstance(decl, m.Pool):
        data["nodes"] = f"{data.pop('min_nodes')}..{data.pop('max_nodes')}"
    _walk(data, "", out)
    return out


def _walk(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k in _SKIP:
                continue
            _walk(v, f"{prefix}.{k}" if prefix else k, out)
        return
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            key = next((_label(v[k]) for k in _KEYS if k in v and v[k] is not None), str(i))
            if "name" in v and v.get("metric") == "pods":
                key = str(v["name"])
            _walk(v, f"{prefix}[{key}]", out)
        return
    out[prefix] = _show(prefix, value)


def _label(v: Any) -> str:
    if isinstance(v, dict):
        return ".".join(str(x) for x in (v.get("package"), v.get("name")) if x)
    return str(v)


def _show(key: str, value: Any) -> str:
    if value is None:
        return "-"
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "memory" and isinstance(value, int | str) and str(value).isdigit():
        n = int(value)
        for unit, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
            if n >= size and n % size == 0:
                return f"{n // size}{unit}"
        return str(n)
    if isinstance(value, list):
        return "[" + ", ".join(_show(key, v) for v in value) + "]"
    if isinstance(value, str):
        try:
            d = Decimal(value)
        except ArithmeticError:
            return value
        return f"{d.normalize():f}" if d.is_finite() else value
    return json.dumps(value)


__all__ = [
    "AccessChange",
    "DiffResult",
    "ObligationChange",
    "ParamChange",
    "RouteChange",
    "diff",
    "parameter_changes",
]
