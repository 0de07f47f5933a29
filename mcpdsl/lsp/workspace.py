"""The policy trees an editor has open, checked with unsaved buffers laid over the disk.

Each workspace folder is one policy tree (as `mcpdsl build DIR` sees it); a
file outside every folder is a tree of its own.  Checking a tree reads the
`.mcp` files on disk, replaces the bytes of every open document with the
editor's text, and runs the front end through the per-file cache of
`mcpdsl watch` (`FrontEndCache.compile_read`): a keystroke re-parses and
re-lowers only the edited file, then re-resolves and re-typechecks the tree.
The name index of each file is cached beside it under the same content digest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mcpdsl.diagnostics import Diagnostic
from mcpdsl.ir import model as m
from mcpdsl.lsp.index import FileIndex, build_index
from mcpdsl.pipeline import SUFFIX, Compilation
from mcpdsl.pipeline.cache import FrontEndCache
from mcpdsl.reader import Refused, read_source
from mcpdsl.source import SourceFile
from mcpdsl.syntax.parser import ParsedFile

#: Upper bound on the `.mcp` files of one tree the server checks as you type.
MAX_TREE_FILES = 5_000


@dataclass
class Snapshot:
    """One check of one tree: the compilation and the per-file name indexes."""

    root: Path  # the tree's directory
    compilation: Compilation
    indexes: dict[str, FileIndex] = field(default_factory=dict)  # by display path
    parsed: dict[str, ParsedFile] = field(default_factory=dict)

    def path_of(self, display: str) -> Path:
        return self.root / display

    def display_of(self, path: Path) -> str | None:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return None

    def source(self, display: str) -> SourceFile | None:
        return self.compilation.sources.get(display)

    def unit(self, display: str) -> m.FileUnit | None:
        for unit in self.compilation.units:
            if unit.path == display:
                return unit
        return None

    def diagnostics_by_file(self) -> dict[str, list[Diagnostic]]:
        out: dict[str, list[Diagnostic]] = {display: [] for display in self.compilation.raw}
        for d in self.compilation.diagnostics:
            if d.span is not None:
                out.setdefault(d.span.file, []).append(d)
        return out


class TreeChecker:
    """Checks one tree again and again, reusing the work of unchanged files."""

    def __init__(self, root: Path, *, single_file: bool = False) -> None:
        self.root = root
        self.single_file = single_file
        self.cache = FrontEndCache(keep_parsed=True)
        # Keyed by the cached parse object of the file: the front-end cache hands
        # back the same object exactly when the file's bytes did not change.
        self._indexes: dict[str, tuple[ParsedFile, FileIndex]] = {}
        self._types: dict[str, tuple[ParsedFile, list[Diagnostic]]] = {}
        self._disk: dict[Path, tuple[int, int, bytes]] = {}  # (mtime ns, size, bytes)

    def files(self) -> list[Path]:
        """The `.mcp` files of the tree on disk, sorted like `find_files` sorts them."""
        if self.single_file:
            return [self.root]
        found: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found.extend(Path(dirpath) / n for n in filenames if n.endswith(SUFFIX))
            if len(found) > MAX_TREE_FILES:
                break
        return found

    def _typecheck(self, c: Compilation) -> None:
        """The `typecheck` stage, reusing the result of every file whose bytes did not change.

        Typechecking looks at one expression at a time and never at a name's
        binding, so the diagnostics of a file's policies and integrations depend
        on that file's text alone (tests/lsp/test_workspace.py checks the result
        equals the whole-project stage).
        """
        from mcpdsl.ir.identity import check_identity
        from mcpdsl.ir.servers import check_servers
        from mcpdsl.ir.typecheck import typecheck

        if c.project is None:
            return
        c.diagnostics.extend(check_identity(c.project))  # whole-tree facts, not per file
        c.diagnostics.extend(check_servers(c.project))
        groups: dict[str, tuple[list[m.Policy], list[m.Integration]]] = {}
        for policy in c.project.policies:
            groups.setdefault(policy.span.file if policy.span else "", ([], []))[0].append(policy)
        for integration in c.project.integrations:
            file = integration.span.file if integration.span else ""
            groups.setdefault(file, ([], []))[1].append(integration)
        parses = {p.source.path: p for p in c.parsed if isinstance(p, ParsedFile)}
        fresh: dict[str, tuple[ParsedFile, list[Diagnostic]]] = {}
        for file, (policies, integrations) in sorted(groups.items()):
            parsed = parses.get(file)
            cached = self._types.get(file)
            if parsed is None or cached is None or cached[0] is not parsed:
                part = m.Project(policies=tuple(policies), integrations=tuple(integrations))
                diags = typecheck(part)
                if parsed is None:
                    c.diagnostics.extend(diags)
                    continue
                cached = (parsed, diags)
            fresh[file] = cached
            c.diagnostics.extend(cached[1])
        self._types = fresh

    @property
    def base(self) -> Path:
        return self.root.parent if self.single_file else self.root

    def check(self, overlays: Mapping[Path, str]) -> Snapshot:
        """Check the tree with `overlays` (open documents) in place of their files."""
        base = self.base
        c = Compilation(root=base)
        problems: list[Diagnostic] = []
        paths = {p: None for p in self.files()}
        for path in overlays:
            if self.single_file or base in path.parents:
                paths.setdefault(path, None)
        displays = sorted((p.relative_to(base).as_posix(), p) for p in paths)
        for display, path in displays:
            text = overlays.get(path)
            if text is not None:
                c.raw[display] = text.encode("utf-8", errors="surrogatepass")
                continue
            try:
                c.raw[display] = self._read(path)
            except Refused as exc:  # the rules of every other command (docs/sources.md)
                problems.append(exc.diagnostic)
        c.diagnostics.extend(problems)
        c, _stats = self.cache.compile_read(c, replace={"typecheck": self._typecheck})
        snapshot = Snapshot(root=base, compilation=c)
        for parsed in c.parsed:
            if isinstance(parsed, ParsedFile):
                snapshot.parsed[parsed.source.path] = parsed
        fresh: dict[str, tuple[ParsedFile, FileIndex]] = {}
        for display, parsed in snapshot.parsed.items():
            cached = self._indexes.get(display)
            if cached is None or cached[0] is not parsed:
                cached = (parsed, build_index(parsed))
            fresh[display] = cached
            snapshot.indexes[display] = cached[1]
        self._indexes = fresh
        self._disk = {p: v for p, v in self._disk.items() if p in paths}
        return snapshot

    def _read(self, path: Path) -> bytes:
        """A file's bytes, read again only when its modification time or size changed."""
        try:
            stat = path.stat()
        except OSError:
            stat = None
        known = self._disk.get(path)
        if (
            stat is not None
            and known is not None
            and known[:2]
            == (
                stat.st_mtime_ns,
                stat.st_size,
            )
        ):
            return known[2]
        # A symlink out of the tree, a FIFO, a device or a huge file: refused (Refused).
        data = read_source(self.base, path)
        if stat is None:
            return data
        self._disk[path] = (stat.st_mtime_ns, stat.st_size, data)
        return data
