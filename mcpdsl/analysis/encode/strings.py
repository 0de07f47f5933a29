"""Strings and globs: the regex subset, glob patterns as z3 regexes, case mapping."""

from __future__ import annotations

from typing import Any

import z3

from mcpdsl.analysis.encode.core import glob_parts, z3_text
from mcpdsl.analysis.encode.state import State


class Strings(State):
    """String theory: globs (with the query-string tail) and `lower`/`upper`."""

    def _regex_of(self, text: str) -> Any:
        """A z3 regex for the tiny regex subset used here (alternation, groups, classes, `?`)."""
        pos = 0

        def alt() -> Any:
            nonlocal pos
            options = [seq()]
            while pos < len(text) and text[pos] == "|":
                pos += 1
                options.append(seq())
            return z3.Union(*options) if len(options) > 1 else options[0]

        def seq() -> Any:
            nonlocal pos
            items = []
            while pos < len(text) and text[pos] not in "|)":
                items.append(atom())
            if not items:
                return z3.Re("", ctx=self.ctx)
            return z3.Concat(*items) if len(items) > 1 else items[0]

        def atom() -> Any:
            nonlocal pos
            c = text[pos]
            if c == "(":
                pos += 1
                inner = alt()
                pos += 1  # ")"
                r = inner
            elif c == "[":
                end = text.index("]", pos)
                lo, hi = text[pos + 1], text[end - 1]
                r = z3.Range(lo, hi, ctx=self.ctx)
                pos = end + 1
            else:
                r = z3.Re(c, ctx=self.ctx)
                pos += 1
            if pos < len(text) and text[pos] == "?":
                pos += 1
                r = z3.Option(r)
            return r

        return alt()

    def glob_re(self, pattern: str) -> Any:
        """The glob of `mcpdsl.ir.globs` followed by an optional query string."""
        found = self._regex.get(pattern)
        if found is not None:
            return found
        parts = []
        for seg in glob_parts(pattern):
            if seg == "**":
                parts.append(
                    z3.Option(
                        z3.Concat(z3.Re("/", ctx=self.ctx), z3.Star(self._path_char_or_slash()))
                    )
                )
            elif seg == "*":
                parts.append(z3.Concat(z3.Re("/", ctx=self.ctx), z3.Plus(self.seg_char)))
            else:
                parts.append(z3.Re(z3_text("/" + seg), ctx=self.ctx))
        parts.append(self.query_tail)
        found = z3.Concat(*parts) if len(parts) > 1 else parts[0]
        self._regex[pattern] = found
        return found

    def _path_char_or_slash(self) -> Any:
        return z3.Union(self.seg_char, z3.Re("/", ctx=self.ctx))

    def case_map(self, s: Any, f: str) -> tuple[Any, Any]:
        """`lower`/`upper`: exact on ASCII strings, an abstract string otherwise."""
        c = z3.Const("c", z3.CharSort(self.ctx))
        bv = c.to_bv()
        if f == "lower":
            fn = z3.If(z3.And(z3.UGE(bv, 65), z3.ULE(bv, 90)), z3.CharFromBv(bv + 32), c)
        else:
            fn = z3.If(z3.And(z3.UGE(bv, 97), z3.ULE(bv, 122)), z3.CharFromBv(bv - 32), c)
        mapped = z3.SeqMap(z3.Lambda([c], fn), s)
        other = self.fresh_str(("case", f, s.get_id()))
        # what is known of Python's mapping of any string: `lower` leaves no A-Z, `upper` no a-z
        lo, hi = ("A", "Z") if f == "lower" else ("a", "z")
        letter = z3.Concat(self.any_string, z3.Range(lo, hi, ctx=self.ctx), self.any_string)
        self._side[("case", f, s.get_id())] = [z3.Not(z3.InRe(other, letter))]
        return z3.If(z3.InRe(s, self.ascii), mapped, other), ("case", f, s.get_id())
