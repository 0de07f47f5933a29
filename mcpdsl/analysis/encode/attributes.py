"""Request attributes: one symbolic JSON value per path, list slots, the clock."""

from __future__ import annotations

from typing import Any

import z3

from mcpdsl.analysis.encode.cidr import Cidr
from mcpdsl.analysis.encode.core import (
    BOOL,
    LIST,
    MISSING,
    NOW_FIELDS,
    NULL,
    NUM,
    OBJ,
    OTHER,
    STR,
    WEEKDAYS,
    Bool,
    ListVal,
    Sym,
)
from mcpdsl.ir import stats


class Attributes(Cidr):
    """The symbolic request: attribute paths, list elements and `now`."""

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
        if path[0] == stats.ROOT:
            side += self._counter(path, k, n)
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

    def _counter(self, path: tuple[str, ...], k: Any, n: Any) -> list[Any]:
        """`stats`: what the decision server sends, and all the evaluator accepts.

        `stats` and `stats.principal` are objects, each counter an integer in
        0..stats.MAX -- or missing, at every level (a request nobody counted).
        The engine refuses a request whose counters are anything else when a
        policy reads them (`mcpdsl.ir.stats.stats_problem`), so this is exact.
        """
        K = self.K
        if len(path) < 3:
            return [z3.Or(k == K[MISSING], k == K[OBJ])]
        if len(path) == 3 and path[1] == stats.SCOPE and path[2] in stats.FIELDS:
            present = k == K[NUM]
            bounded = z3.And(z3.IsInt(n), n >= 0, n <= self.real_val(stats.MAX))
            return [z3.Or(k == K[MISSING], present), z3.Implies(present, bounded)]
        return []  # an unknown counter (E0320) is never encoded

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
