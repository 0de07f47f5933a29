"""`{ key value, ... }` blocks: typed reads with unknown-key did-you-mean."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lark import Token, Tree

from mcpdsl.ir.common import Context, key_text, lower_range, trees
from mcpdsl.ir.parts import part
from mcpdsl.syntax.parser import closest


class SettingsReader:
    """Reads the keys a block accepts; `finish()` reports the keys nobody read."""

    def __init__(self, ctx: Context, node: Tree[Token] | None, block: str) -> None:
        self.ctx = ctx
        self.node = node
        self.block = block
        self.entries: dict[str, tuple[Tree[Token], Any]] = {}
        self.asked: list[str] = []
        if node is None:
            return
        for setting in trees(node):
            key = key_text(part(setting, "key"))
            if key in self.entries:
                ctx.error(
                    "E0201",
                    f"duplicate setting `{key}`",
                    setting,
                    label="second occurrence",
                    secondary=((self.entries[key][0], "first occurrence"),),
                )
                continue
            self.entries[key] = (setting, part(setting, "value"))

    def value(self, key: str, reader: Callable[[str], Any], *, required: bool = False) -> Any:
        self.asked.append(key)
        entry = self.entries.get(key)
        if entry is None:
            if required:
                self.ctx.error(
                    "E0202",
                    f"`{self.block}` block has no `{key}` setting",
                    self.node,
                    label=f"missing `{key}`",
                    help=f"add `{key} ...` inside the braces",
                )
            return None
        return self.ctx.read(entry[1], reader)

    def range(self, key: str, reader: Callable[[str], Any]) -> tuple[Any, Any] | None:
        self.asked.append(key)
        entry = self.entries.get(key)
        if entry is None:
            return None
        return lower_range(self.ctx, entry[1], reader)

    def raw(self, key: str) -> Any:
        self.asked.append(key)
        entry = self.entries.get(key)
        return None if entry is None else entry[1]

    def finish(self) -> None:
        for key, (setting, _) in self.entries.items():
            if key in self.asked:
                continue
            guess = closest(key, self.asked)
            accepted = ", ".join(f"`{k}`" for k in self.asked)
            self.ctx.error(
                "E0203",
                f"unknown setting `{key}` in `{self.block}` block",
                part(setting, "key"),
                label="not accepted here",
                help=f"did you mean `{guess}`?" if guess else f"accepted settings: {accepted}",
            )

    def unread(self) -> list[tuple[str, Tree[Token], Any]]:
        """Entries no one asked for (blocks with open-ended keys, like metrics)."""
        return [(k, s, v) for k, (s, v) in self.entries.items() if k not in self.asked]
