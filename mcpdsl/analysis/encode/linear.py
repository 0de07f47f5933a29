"""`Linear`: linear arithmetic over exact rationals for capacity and carbon."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import z3

from mcpdsl.analysis import Tally
from mcpdsl.analysis.encode.core import DEFAULT_TIMEOUT_MS


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
    tally: Tally = field(default_factory=Tally)  # shared by copies: checks that gave up

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
            self.tally.gave_up += 1
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
        r = o.check()
        if r == z3.unknown:
            self.tally.gave_up += 1
        if r != z3.sat:
            return None
        v = o.lower(h)
        try:
            return Fraction(int(v.numerator_as_long()), int(v.denominator_as_long()))
        except AttributeError:
            return None
