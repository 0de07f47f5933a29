"""`Encoder`: the theory layers stacked, over the attributes of one or more projects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import z3

from mcpdsl.analysis.encode.core import (
    BOOL,
    DEFAULT_RLIMIT,
    DEFAULT_TIMEOUT_MS,
    KIND_NAMES,
    MAX_CHAR,
    NULL,
    NUM,
    OCTET,
    OTHER,
    STR,
    Stats,
    Sym,
    children_of,
    project_exprs,
)
from mcpdsl.analysis.encode.solving import Solving
from mcpdsl.ir import model as m
from mcpdsl.ir.reads import attrs


class Encoder(Solving):
    """Encodes the conditions, matches and decisions of one or more projects over ONE request.

    Attribute variables are shared by path, so the old and new trees of a diff
    talk about the same request.  Results are cached by expression identity
    (and by risk context for expressions that read `risk`).
    """

    def __init__(
        self,
        projects: Sequence[m.Project],
        *,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        rlimit: int = DEFAULT_RLIMIT,
    ) -> None:
        self.ctx = z3.Context()
        self.timeout_ms = timeout_ms
        self.rlimit = rlimit
        self.stats = Stats()
        self._side: dict[Any, list[Any]] = {}
        self._side_deps: dict[Any, frozenset[Any]] = {}
        self._attr: dict[tuple[str, ...], Sym] = {}
        self._attr_vars: dict[tuple[str, ...], dict[str, Any]] = {}
        self._cache: dict[tuple[int, Any], Sym] = {}
        self._risk_reads: dict[int, bool] = {}
        self._fresh: dict[Any, Any] = {}
        self._ip6: list[tuple[tuple[str, ...], Any, Any]] = []
        self._regex: dict[str, Any] = {}
        self.approximate = False
        self._now_done = False
        self._kind_ids: dict[int, int] = {}
        _, kinds = z3.EnumSort("Kind", KIND_NAMES[:7], ctx=self.ctx)
        self.K = list(kinds)
        _, ekinds = z3.EnumSort(
            "ElementKind", ("null", "bool", "number", "string", "other"), ctx=self.ctx
        )
        self.EK = {
            NULL: ekinds[0],
            BOOL: ekinds[1],
            NUM: ekinds[2],
            STR: ekinds[3],
            OTHER: ekinds[4],
        }
        self.list_slots: dict[tuple[str, ...], int] = {}
        self.reads_now = False
        for project in projects:
            for e in project_exprs(project):
                self._scan(e)
        ctx = self.ctx
        top = chr(MAX_CHAR)
        # a path character: anything but `/`, `?`, `#` (and a line feed, see the docstring)
        self.seg_char = z3.Union(
            z3.Range("\x00", "\x09", ctx=ctx),
            z3.Range("\x0b", '"', ctx=ctx),
            z3.Range("$", ".", ctx=ctx),
            z3.Range("0", ">", ctx=ctx),
            z3.Range("@", top, ctx=ctx),
        )
        self.any_string = z3.Full(z3.ReSort(z3.StringSort(ctx)))
        self.ascii = z3.Star(z3.Range("\x00", "\x7f", ctx=ctx))
        self.query_tail = z3.Option(
            z3.Concat(z3.Union(z3.Re("?", ctx=ctx), z3.Re("#", ctx=ctx)), self.any_string)
        )
        self._quad = self._regex_of(".".join([OCTET] * 4))  # what `ipaddress` accepts
        if self.reads_now:
            self.attr(("now", "hour"))

    def _scan(self, e: m.Node) -> None:
        if isinstance(e, m.Attr) and e.root == "now":
            self.reads_now = True
        if isinstance(e, m.In) or (isinstance(e, m.Call) and e.function == "contains"):
            coll = e.collection if isinstance(e, m.In) else (e.args[0] if e.args else None)
            if coll is not None:
                for a in attrs(coll):
                    key = (a.root, *a.path)
                    self.list_slots[key] = self.list_slots.get(key, 0) + 1
        for child in children_of(e):
            self._scan(child)
