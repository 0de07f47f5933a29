"""Solving: one query per fresh solver, witnesses read from models, pinning requests."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

import z3

from mcpdsl.analysis.encode.core import (
    AND,
    BOOL,
    LIST,
    MISSING,
    NOW_FIELDS,
    NULL,
    NUM,
    OBJ,
    OTHER,
    STR,
    F,
    Outcome,
    container_of,
    int_of,
    json_key,
    kind_of_element,
    kind_of_value,
    lookup,
    scalar_of,
)
from mcpdsl.analysis.encode.decisions import Decisions


class Solving(Decisions):
    """Queries and their answers (`Outcome`), with witnesses as JSON requests."""

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
            value = lookup(request, path)
            kind = kind_of_value(value)
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
                    ek = kind_of_value(value[i])
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
                if r == z3.unknown:  # the plain query below may still answer
                    self.stats.gave_up += 1
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
            self.stats.gave_up += 1
            return Outcome("unknown", reason=s.reason_unknown())
        finally:
            self.stats.seconds += time.perf_counter() - start

    def _solver(self) -> Any:
        s = z3.Solver(ctx=self.ctx)
        s.set("timeout", self.timeout_ms)
        s.set("rlimit", self.rlimit)
        s.set("random_seed", 0)
        return s

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
            parent = container_of(request, path[:-1])
            if parent is None:
                continue
            if kind == OBJ:
                value: Any = parent.get(path[-1]) if isinstance(parent.get(path[-1]), dict) else {}
            elif kind == LIST:
                value = self._list_value(model, v)
            else:
                value = scalar_of(model, kind, v["bool"], v["num"], v["str"])
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
        length = int_of(model.eval(v["len"], model_completion=True))
        items: list[Any] = []
        for present, el in v["slots"]:
            if not z3.is_true(model.eval(present, model_completion=True)):
                continue
            k = kind_of_element(model, el)
            items.append(scalar_of(model, k, el.b, el.n, el.s) if k != OTHER else {})
        taken = {json_key(i) for i in items}
        n = 0
        while len(items) < length:
            filler = f"item-{n}"
            n += 1
            if json_key(filler) not in taken:
                items.append(filler)
        return items
