"""The encoder's state and its value builders (constants, fresh symbols, if-then-else).

`State` declares every attribute `Encoder.__init__` sets, so that each theory
layer (strings, CIDR, attributes, expressions, decisions, solving) is typed
against it; the layers stack by inheritance, each using only those below it.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import z3

from mcpdsl.analysis.encode.core import Bool, Stats, Sym, z3_text


class State:
    """The solver context, caches and side conditions shared by every layer."""

    ctx: Any
    timeout_ms: int
    rlimit: int
    stats: Stats
    _side: dict[Any, list[Any]]
    _side_deps: dict[Any, frozenset[Any]]
    _attr: dict[tuple[str, ...], Sym]
    _attr_vars: dict[tuple[str, ...], dict[str, Any]]
    _cache: dict[tuple[int, Any], Sym]
    _risk_reads: dict[int, bool]
    _fresh: dict[Any, Any]
    _ip6: list[tuple[tuple[str, ...], Any, Any]]
    _regex: dict[str, Any]
    approximate: bool
    _now_done: bool
    _kind_ids: dict[int, int]
    K: list[Any]
    EK: dict[int, Any]
    list_slots: dict[tuple[str, ...], int]
    reads_now: bool
    seg_char: Any
    any_string: Any
    ascii: Any
    query_tail: Any
    _quad: Any

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
