"""Front-end lints on access rules (warnings; the rules still mean what they say).

W0106: a `deny` whose condition, at a positive position (through `and`/`or`,
not under `not`), is `X != v` or `X not in [...]` with `X` an attribute a
request may lack.  Both are *false* when `X` is MISSING (docs/semantics.md),
so the deny does not fire for a request without the attribute: a request
that omits `context.tier` walks past `deny ... when context.tier != "gold"`.
`unless X == v` (`unless X in [...]`) fires when `X` is missing, which is
nearly always what was meant.

The server's counters (`stats.principal.*`, mcpdsl.ir.stats) are the one
case where the *positive* tests are the surprise: they are always there when
`mcpdsl serve` decides, and always missing where nobody counts (the embedded
engine unless its caller passes them, the Rego, Envoy), so `deny ... when
stats.principal.calls_1m > 600` walks past every uncounted request.  For them
every comparison and `in` at a positive position is reported, with the
`unless` of the opposite comparison (exact on integers: `> 600` is `unless <= 600`).
"""

from __future__ import annotations

from collections.abc import Iterator

from mcpdsl.diagnostics import Diagnostic, make
from mcpdsl.ir import model as m
from mcpdsl.ir.stats import FIELDS, SCOPE
from mcpdsl.ir.stats import ROOT as STATS_ROOT

#: Roots that are never missing: the action, the evaluator's clock, the computed risk.
ALWAYS_PRESENT = frozenset({"action", "now", "risk"})


def _positive(e: m.Node) -> Iterator[m.Node]:
    """The sub-expressions whose truth makes `e` true (through `and` and `or`)."""
    if isinstance(e, (m.And, m.Or)):
        for operand in e.operands:
            yield from _positive(operand)
    else:
        yield e


def _missable(e: m.Node) -> m.Attr | None:
    return e if isinstance(e, m.Attr) and e.root not in ALWAYS_PRESENT else None


def _negative_test(e: m.Node) -> tuple[m.Attr, str] | None:
    """`(X, the positive test to suggest)` for `X != v` / `X not in [...]`, else None."""
    if isinstance(e, m.Compare) and e.op == "!=":
        attr = _missable(e.left) or _missable(e.right)
        if attr is not None and not (_missable(e.left) and _missable(e.right)):
            return attr, f"unless {attr.dotted()} == ..."
    if isinstance(e, m.In) and e.negated:
        attr = _missable(e.item)
        if attr is not None:
            return attr, f"unless {attr.dotted()} in [...]"
    return _stats_test(e)


#: The comparison that holds exactly when `op` does not, on two present numbers.
_OPPOSITE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!="}


def _stats_test(e: m.Node) -> tuple[m.Attr, str] | None:
    """`(stats attribute, the unless to suggest)` for a positive test on a server counter."""
    if isinstance(e, m.Compare) and e.op in _OPPOSITE:
        for attr in (e.left, e.right):
            if isinstance(attr, m.Attr) and _counter(attr):
                flipped = m.Compare(op=_OPPOSITE[e.op], left=e.left, right=e.right)
                return attr, f"unless {_text(flipped)}"
    if isinstance(e, m.In) and not e.negated and isinstance(e.item, m.Attr) and _counter(e.item):
        return e.item, f"unless {e.item.dotted()} not in [...]"
    return None


def _counter(attr: m.Attr) -> bool:
    """A known counter (an unknown path under `stats` is E0320, not worth a second warning)."""
    path = attr.path
    return attr.root == STATS_ROOT and len(path) == 2 and path[0] == SCOPE and path[1] in FIELDS


def _text(e: m.Compare) -> str:
    """A comparison as source text (literals and attributes; anything else as `...`)."""

    def side(x: m.Node) -> str:
        if isinstance(x, m.Attr):
            return x.dotted()
        if (
            isinstance(x, m.Literal_)
            and not isinstance(x.value, (bool, str))
            and x.unit in (None, "number")
        ):
            return f"{x.value.normalize():f}"
        return "..."

    return f"{side(e.left)} {e.op} {side(e.right)}"


def missing_attribute_lints(project: m.Project) -> list[Diagnostic]:
    """W0106 for every deny that a request lacking the attribute walks past."""
    out: list[Diagnostic] = []
    for policy in project.policies:
        for rule in policy.rules:
            if rule.effect != "deny" or rule.condition is None:
                continue
            for part in _positive(rule.condition):
                found = _negative_test(part)
                if found is None:
                    continue
                attr, suggestion = found
                name = attr.dotted()
                out.append(
                    make(
                        "W0106",
                        f"deny `{policy.name}/{rule.id}` does not fire when `{name}` is missing",
                        part.span or rule.span,
                        label=f"false when `{name}` is missing",
                        help=f"to deny requests without `{name}` too, write `{suggestion}`",
                    )
                )
    return out
