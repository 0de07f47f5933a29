"""A rule index: which rules can match a common request, decided from patterns alone.

Analyses never send all n² rule pairs to the solver.  Two rules can only
interact when their principal patterns, resource patterns, action lists and
path globs can all match one request; `RuleIndex.overlapping(rule)` returns
exactly the rules for which that is possible (a sound over-approximation:
it never leaves out a rule that could match together with `rule`), using
buckets by principal and by resource (type, id) — whichever side is more
selective — and cheap syntactic tests for the rest; answers are memoised.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mcpdsl.ir import model as m
from mcpdsl.ir.globs import glob_error


@dataclass(frozen=True, slots=True)
class Entry:
    """One rule of one policy: `policy` and `position` are 0-based indexes."""

    policy: int
    position: int
    rule: m.Rule

    @property
    def order(self) -> tuple[int, int]:
        return (self.policy, self.position)


def entity_overlap(a: m.EntityPattern, b: m.EntityPattern) -> bool:
    if a.type is None or b.type is None:
        return True
    if a.type != b.type:
        return False
    if a.ids is None or b.ids is None:
        return True
    return not set(a.ids).isdisjoint(b.ids)


def entity_covers(outer: m.EntityPattern, inner: m.EntityPattern) -> bool:
    """Every entity `inner` matches, `outer` matches too (decided exactly)."""
    if outer.type is None:
        return True
    if inner.type != outer.type:
        return False
    if outer.ids is None:
        return True
    return inner.ids is not None and set(inner.ids) <= set(outer.ids)


def actions_overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return not a or not b or not set(a).isdisjoint(b)


def actions_cover(outer: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    return not outer or (bool(inner) and set(inner) <= set(outer))


def globs_may_overlap(a: str | None, b: str | None) -> bool:
    """False only when no path can match both globs (segment by segment)."""
    if a is None or b is None or glob_error(a) or glob_error(b):
        return True
    sa, sb = a.split("/")[1:], b.split("/")[1:]
    for x, y in zip(sa, sb, strict=False):
        if x == "**" or y == "**":
            return True
        if x != y and "*" not in (x, y):
            return False
        if (x == "*" and y == "") or (y == "*" and x == ""):
            return False
    if len(sa) == len(sb):
        return True
    longer = sa if len(sa) > len(sb) else sb
    return longer[min(len(sa), len(sb))] == "**"


def rules_overlap(a: m.Rule, b: m.Rule) -> bool:
    return (
        entity_overlap(a.principal, b.principal)
        and entity_overlap(a.resource, b.resource)
        and actions_overlap(a.actions, b.actions)
        and globs_may_overlap(a.path, b.path)
    )


def rule_covers(outer: m.Rule, inner: m.Rule) -> bool:
    """`outer`'s patterns (not its condition) match everything `inner`'s match, or may."""
    return (
        entity_covers(outer.principal, inner.principal)
        and entity_covers(outer.resource, inner.resource)
        and actions_cover(outer.actions, inner.actions)
        and (
            outer.path is None
            or (inner.path is not None and globs_may_overlap(outer.path, inner.path))
        )
    )


_ANY = ("*",)


class RuleIndex:
    """Rules bucketed by principal (type, id), with wildcard buckets."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self.entries = list(entries)
        self._sides = (_Buckets(self.entries, "principal"), _Buckets(self.entries, "resource"))
        self._memo: dict[int, tuple[m.Rule, list[Entry]]] = {}

    def overlapping(self, rule: m.Rule) -> list[Entry]:
        """Every indexed rule that may match a request together with `rule`, in order."""
        found = self._memo.get(id(rule))
        if found is not None and found[0] is rule:
            return found[1]
        # candidates from the more selective side: by principal or by resource
        by_p = self._sides[0].candidates(rule.principal)
        by_r = self._sides[1].candidates(rule.resource)
        pool = by_p if by_p is not None and (by_r is None or len(by_p) <= len(by_r)) else by_r
        candidates = self.entries if pool is None else pool
        seen: set[tuple[int, int]] = set()
        out = []
        for e in candidates:
            if e.order in seen:
                continue
            seen.add(e.order)
            if rules_overlap(rule, e.rule):
                out.append(e)
        out.sort(key=lambda e: e.order)
        self._memo[id(rule)] = (rule, out)
        return out


class _Buckets:
    """Entries by the (type, id) keys of one side of their rules, with wildcard buckets."""

    def __init__(self, entries: list[Entry], side: str) -> None:
        self.side = side
        self.buckets: dict[tuple[str, ...], list[Entry]] = {}
        self.by_type: dict[str, list[Entry]] = {}
        for e in entries:
            pattern = getattr(e.rule, side)
            for key in _keys(pattern):
                self.buckets.setdefault(key, []).append(e)
            if pattern.type is not None:
                self.by_type.setdefault(pattern.type, []).append(e)

    def candidates(self, pattern: m.EntityPattern) -> list[Entry] | None:
        """Entries whose pattern may share an entity with `pattern`; None means all."""
        if pattern.type is None:
            return None
        out = list(self.buckets.get(_ANY, ()))
        if pattern.ids is None:
            out += self.by_type.get(pattern.type, ())
            return out
        out += self.buckets.get((pattern.type, "*"), ())
        for i in pattern.ids:
            out += self.buckets.get((pattern.type, "=", i), ())
        return out


def _keys(pattern: m.EntityPattern) -> list[tuple[str, ...]]:
    if pattern.type is None:
        return [_ANY]
    if pattern.ids is None:
        return [(pattern.type, "*")]
    return [(pattern.type, "=", i) for i in pattern.ids]
