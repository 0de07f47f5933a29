"""Which attributes an expression reads: one walk for every layer that asks.

The typechecker, the `stats` and `args` contracts and the targets all need to
know what a condition reads (above all whether it reads `risk`, which makes a
rule read whatever the policy's risk terms read).  Each had its own walk over
the IR's fields; this is the one they share.
"""

from __future__ import annotations

from collections.abc import Iterator

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
