"""The `stats` attribute root: behaviour counters that only the decision server keeps.

`mcpdsl serve` counts, per principal and over sliding windows, the calls it
decided (this one included), the calls it denied (earlier ones only) and the
distinct resources called; it puts them in every request it decides as
`stats.principal.<counter>` and replaces whatever the caller sent there.  The
language knows exactly these six counters, each a non-negative integer
(docs/semantics.md, "Server statistics").

One module owns that contract so that the typechecker (names and types), the
evaluator (which refuses a request whose counters are not such integers), the
z3 encoding (which assumes nothing else) and the targets (which cannot see the
counters and say so) read the same facts.  Pure data and functions: it is in
`ir` because all of those layers may import `ir` and none of them each other.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from mcpdsl.ir import model as m
from mcpdsl.ir.reads import (
    policies_read_root,
    reads_root,
    requires_root_reads,
    risk_root_reads,
    root_reads,
    rule_root_reads,
)

ROOT: Final = "stats"
#: The one scope the server counts for (the request's principal).
SCOPE: Final = "principal"
#: The counters under `stats.principal`, as `mcpdsl.serve.store.Stats` names them.
FIELDS: Final = (
    "calls_1m",
    "calls_1h",
    "denials_1m",
    "denials_1h",
    "resources_1m",
    "resources_1h",
)
#: The largest counter value: the largest integer every JSON reader keeps exactly
#: (2**53 - 1, RFC 8259 section 6).  No window of a real server comes near it.
MAX: Final = 2**53 - 1


def is_stats(attr: m.Attr) -> bool:
    return attr.root == ROOT


def stats_reads(e: m.Node | None) -> list[str]:
    """The `stats.*` attributes an expression reads (dotted, each once, in source order)."""
    return root_reads(e, ROOT)


def reads_stats(e: m.Node | None) -> bool:
    return reads_root(e, ROOT)


def risk_reads(policy: m.Policy) -> list[str]:
    """The `stats.*` attributes the policy's risk terms read."""
    return risk_root_reads(policy, ROOT)


def rule_stats(rule: m.Rule, policy: m.Policy) -> list[str]:
    """The `stats.*` attributes deciding `rule` reads: its condition's, and its risk's."""
    return rule_root_reads(rule, policy, ROOT)


def requires_stats(policy: m.Policy) -> list[str]:
    """The `stats.*` attributes deciding the policy's obligations reads (directly or by risk)."""
    return requires_root_reads(policy, ROOT)


def project_reads_stats(policies: tuple[m.Policy, ...]) -> bool:
    """Whether any condition, risk term or `require` of the policies reads `stats`."""
    return policies_read_root(policies, ROOT)


def _is_count(value: Any) -> bool:
    """A JSON number whose value is an integer in 0..MAX (`3.0` is 3; `true` is no number)."""
    t = type(value)
    if t is int:
        return 0 <= value <= MAX
    if t is float or t is Decimal:
        try:  # the range first: `int()` of a huge Decimal would build a huge integer
            return bool(0 <= value <= MAX and value == int(value))
        except (OverflowError, ValueError, ArithmeticError):  # NaN
            return False
    return False


def _what(value: Any) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "a boolean"
    if type(value) is str:
        return "a string"
    if type(value) in (int, float, Decimal):
        if value != value:  # a float NaN
            return "not a number"
        try:
            return str(value) if -(10**18) < value < 10**18 else "a number out of range"
        except ArithmeticError:  # a Decimal NaN
            return "not a number"
    if type(value) is list:
        return "a list"
    if type(value) is dict:
        return "an object"
    return f"a `{type(value).__name__}`"


def stats_problem(request: dict[str, Any]) -> str | None:
    """Why the request's `stats` is not what the server puts there, or None when it is.

    Absent is fine at every level (the embedded engine's callers usually send no
    counters, and a condition on an absent one is false).  Present, `stats` and
    `stats.principal` are objects and each known counter an integer in 0..MAX;
    other keys are ignored (no rule can read them).  The request is plain JSON
    data here (`values.plain_request` or the fast path's exact types).
    """
    stats = request.get(ROOT)
    if stats is None and ROOT not in request:
        return None
    if type(stats) is not dict:
        return f"`stats` is {_what(stats)}, not an object"
    scope = stats.get(SCOPE)
    if scope is None and SCOPE not in stats:
        return None
    if type(scope) is not dict:
        return f"`stats.principal` is {_what(scope)}, not an object"
    for name in FIELDS:
        if name in scope and not _is_count(scope[name]):
            return (
                f"`stats.principal.{name}` is {_what(scope[name])}, not an integer from 0 to {MAX}"
            )
    return None


__all__ = [
    "FIELDS",
    "MAX",
    "ROOT",
    "SCOPE",
    "is_stats",
    "project_reads_stats",
    "reads_stats",
    "requires_stats",
    "risk_reads",
    "rule_stats",
    "stats_problem",
    "stats_reads",
]
