"""Decisions: conditions firing or erroring, rule and route matching, policy risk."""

from __future__ import annotations

from typing import Any

import z3

from mcpdsl.analysis.encode.core import AND, FALSE, NOT, OR, TRUE, Env, F, Sym, all_of, bool_of
from mcpdsl.analysis.encode.expressions import Expressions
from mcpdsl.ir import model as m


class Decisions(Expressions):
    """What rules, routes and risk terms do, as formulas."""

    def fires(self, e: m.Node | None, env: Env) -> F:
        """The condition's result is `true` (an allow fires, a `when` holds)."""
        if e is None:
            return TRUE
        x = self.expr(e, env)
        return F(AND(x.isb, bool_of(x)), x.deps)

    def fires_or_errors(self, e: m.Node | None, env: Env) -> F:
        """Anything but `false`/MISSING: a deny fires, a risk term counts (fail closed)."""
        if e is None:
            return TRUE
        x = self.expr(e, env)
        return F(NOT(OR(x.missing, AND(x.isb, NOT(bool_of(x))))), x.deps)

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
        """A gateway route takes `(action, request.path)` as (method, path).

        The analyses route requests without headers or query (as their witnesses
        are confirmed: `Engine.route(method, path)`), so a route with `header` or
        `query` conditions takes none of them; a `prefix` route takes the paths
        that start with its text.
        """
        if route.headers or route.query:
            return FALSE
        if route.prefix:
            p = self.attr(("request", "path"))
            taken = F(AND(p.iss, z3.PrefixOf(self.str_val(route.path), p.s)), p.deps)
            return self.action(route.methods) & taken
        return self.action(route.methods) & self.path(route.path)

    def rule_fires(self, rule: m.Rule, env: Env) -> F:
        if rule.effect == "deny":
            return self.match(rule) & self.fires_or_errors(rule.condition, env)
        return self.match(rule) & self.fires(rule.condition, env)

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
