"""Which attributes an expression reads: one walk for every layer that asks.

The typechecker, the `stats` and `args` contracts and the targets all need to
know what a condition reads (above all whether it reads `risk`, which makes a
rule read whatever the policy's risk terms read).  Each had its own walk over
the IR's fields; this is the one they share.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from mcpdsl.ir import model as m


def attrs(e: m.Node | None) -> Iterator[m.Attr]:
    """Every attribute an expression reads, in source order."""
    if isinstance(e, m.Attr):
        yield e
    elif isinstance(e, m.Node):
        for name in type(e).model_fields:
            yield from _attrs_of(getattr(e, name))


def _attrs_of(value: object) -> Iterator[m.Attr]:
    if isinstance(value, m.Node):
        yield from attrs(value)
    elif isinstance(value, tuple):
        for item in value:
            yield from _attrs_of(item)


def reads_risk(e: m.Node | None) -> bool:
    """Whether an expression reads `risk` anywhere (so it reads the risk terms' reads too)."""
    return any(a.root == "risk" for a in attrs(e))


def root_reads(e: m.Node | None, root: str) -> list[str]:
    """The attributes under `root` an expression reads (dotted, each once, in source order)."""
    return list(dict.fromkeys(a.dotted() for a in attrs(e) if a.root == root))


def reads_root(e: m.Node | None, root: str) -> bool:
    return any(a.root == root for a in attrs(e))


def risk_root_reads(policy: m.Policy, root: str) -> list[str]:
    """The attributes under `root` the policy's risk terms read."""
    return list(dict.fromkeys(r for t in policy.risk for r in root_reads(t.condition, root)))


def rule_root_reads(rule: m.Rule, policy: m.Policy, root: str) -> list[str]:
    """The attributes under `root` deciding `rule` reads: its condition's, and its risk's."""
    reads = root_reads(rule.condition, root)
    if reads_risk(rule.condition):
        reads += [r for r in risk_root_reads(policy, root) if r not in reads]
    return reads


def requires_root_reads(policy: m.Policy, root: str) -> list[str]:
    """The attributes under `root` deciding the policy's obligations read (directly or by risk)."""
    out: list[str] = []
    for req in policy.requires:
        reads = root_reads(req.condition, root)
        if reads_risk(req.condition):
            reads += risk_root_reads(policy, root)
        out += [r for r in reads if r not in out]
    return out


def policies_read_root(policies: Iterable[m.Policy], root: str) -> bool:
    """Whether any condition, risk term or `require` of the policies reads under `root`."""
    return any(reads_root(e, root) for p in policies for e in p.conditions())
