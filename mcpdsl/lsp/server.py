"""`mcpdsl lsp`: the language server (pygls 2, stdio).

State is the open documents (pygls keeps them) and one `TreeChecker` per
policy tree.  Edits schedule a check of their tree after a short debounce;
a newer edit cancels the pending check.  Saves also start the z3 analyses
in a worker thread; their result is published only if no edit happened to
the tree meanwhile (a newer generation cancels it), and it is dropped as soon
as the tree is edited again, because its spans would be stale.  Requests run
a pending check first, so they always see the text the editor sent.

Every handler turns a bad request (unknown document, a position past the end)
into a JSON-RPC `InvalidParams` error; nothing a client sends stops the server.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from mcpdsl._version import __version__
from mcpdsl.diagnostics import Diagnostic, Severity
from mcpdsl.lsp.index import Symbol
from mcpdsl.lsp.positions import BadPosition, to_point, to_range
from mcpdsl.lsp.workspace import Snapshot, TreeChecker
from mcpdsl.pipeline import SUFFIX
from mcpdsl.source import SourceFile

log = logging.getLogger(__name__)

#: How long a check waits for more edits.  Human keystrokes come 80 ms or more
#: apart, so a longer pause would only add latency; what it must coalesce is a
#: burst already on the pipe (an editor's multi-part change, edits that queued
#: while a check ran), which pygls hands over within a few milliseconds.
DEBOUNCE_SECONDS = 0.005
_SEVERITY = {
    Severity.ERROR: types.DiagnosticSeverity.Error,
    Severity.WARNING: types.DiagnosticSeverity.Warning,
    Severity.INFO: types.DiagnosticSeverity.Information,
}
_SYMBOL_KINDS = {
    "service": types.SymbolKind.Class,
    "pool": types.SymbolKind.Struct,
    "carbon": types.SymbolKind.Object,
    "job": types.SymbolKind.Event,
    "policy": types.SymbolKind.Module,
    "integration": types.SymbolKind.Interface,
    "gateway": types.SymbolKind.Namespace,
    "provider": types.SymbolKind.Key,
    "mesh": types.SymbolKind.Namespace,
    "server": types.SymbolKind.Constructor,
    "test": types.SymbolKind.Method,
    "rule": types.SymbolKind.EnumMember,
    "tool": types.SymbolKind.Function,
    "package": types.SymbolKind.Package,
}
COMPLETION_KINDS = {
    "keyword": types.CompletionItemKind.Keyword,
    "attribute": types.CompletionItemKind.Field,
    "function": types.CompletionItemKind.Function,
    "unit": types.CompletionItemKind.Unit,
    "package": types.CompletionItemKind.Module,
    "tool": types.CompletionItemKind.Function,
}


@dataclass
class TreeState:
    checker: TreeChecker
    snapshot: Snapshot | None = None
    generation: int = 0
    pending: asyncio.TimerHandle | None = None
    analysis: dict[str, list[Diagnostic]] = field(default_factory=dict)
    analysis_generation: int = -1
    published: dict[str, str] = field(default_factory=dict)  # uri -> digest of what was sent


class McpdslServer(LanguageServer):
    """The mcpdsl language server; features are registered in `build_server`."""

    def __init__(self) -> None:
        super().__init__("mcpdsl", __version__)
        self.trees: dict[Path, TreeState] = {}
        self.debounce = DEBOUNCE_SECONDS
        self.analysis_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analysis")

    # ------------------------------------------------------------ documents
    @property
    def encoding(self) -> str:
        try:
            enc = self.workspace.position_encoding
        except RuntimeError:  # not initialized yet
            enc = None
        return str(getattr(enc, "value", enc) or "utf-16")

    def path_of(self, uri: str) -> Path:
        path = to_fs_path(uri) if uri.startswith("file:") else None
        if path is None:  # untitled or remote documents are single files of their own
            name = hashlib.sha256(uri.encode("utf-8", "surrogatepass")).hexdigest()[:16]
            return Path("/") / ".mcpdsl-untitled" / f"{name}{SUFFIX}"
        return Path(path)

    def uri_of(self, path: Path) -> str:
        for doc_uri in self.workspace.text_documents:
            if self.path_of(doc_uri) == path:
                return doc_uri
        return from_fs_path(str(path)) or path.as_uri()

    def folders(self) -> list[Path]:
        out = []
        for folder in self.workspace.folders.values():
            path = to_fs_path(folder.uri)
            if path:
                out.append(Path(path))
        if self.workspace.root_path:
            out.append(Path(self.workspace.root_path))
        return sorted(set(out), key=lambda p: -len(p.parts))

    def tree_of(self, path: Path) -> TreeState:
        folder = next((f for f in self.folders() if f in path.parents), None)
        root = tree_root(path, folder) if folder is not None else None
        key = root if root is not None else path
        state = self.trees.get(key)
        if state is None:
            checker = TreeChecker(key, single_file=root is None)
            state = self.trees[key] = TreeState(checker)
        return state

    def overlays(self, state: TreeState) -> dict[Path, str]:
        base = state.checker.base
        out = {}
        for uri, doc in list(self.workspace.text_documents.items()):
            path = self.path_of(uri)
            if state.checker.single_file:
                if path == state.checker.root:
                    out[path] = doc.source
            elif base in path.parents and path.suffix == SUFFIX:
                out[path] = doc.source
        return out

    # --------------------------------------------------------------- checks
    def schedule(self, uri: str, *, analyze: bool = False) -> None:
        state = self.tree_of(self.path_of(uri))
        state.generation += 1
        if state.pending is not None:
            state.pending.cancel()
        loop = asyncio.get_running_loop()
        state.pending = loop.call_later(self.debounce, self._run_check, state, analyze)

    def _run_check(self, state: TreeState, analyze: bool) -> None:
        state.pending = None
        try:
            self.check(state)
            if analyze:
                self.start_analysis(state)
        except Exception:  # never let a checker bug stop the server
            log.exception("check failed")

    def check(self, state: TreeState) -> Snapshot:
        if state.pending is not None:
            state.pending.cancel()
            state.pending = None
        first = state.snapshot is None
        snapshot = state.checker.check(self.overlays(state))
        state.snapshot = snapshot
        if state.analysis_generation != state.generation:
            state.analysis = {}
        self.publish(state)
        if first:
            settle_heap()
        return snapshot

    def start_analysis(self, state: TreeState) -> None:
        snapshot = state.snapshot
        if snapshot is None or snapshot.compilation.project is None:
            return
        generation = state.generation
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.analysis_pool, _analyze, snapshot, generation, state)

        def done(f: asyncio.Future[dict[str, list[Diagnostic]] | None]) -> None:
            if f.cancelled() or f.exception() is not None:
                if not f.cancelled():
                    log.error("analysis failed: %s", f.exception())
                return
            result = f.result()
            if result is None or state.generation != generation:
                return  # cancelled: the tree changed while z3 ran
            state.analysis = result
            state.analysis_generation = generation
            self.publish(state)

        future.add_done_callback(done)

    def publish(self, state: TreeState) -> None:
        snapshot = state.snapshot
        if snapshot is None:
            return
        by_file = snapshot.diagnostics_by_file()
        for display, extra in state.analysis.items():
            by_file.setdefault(display, []).extend(extra)
        sent: dict[str, str] = {}
        for display, diags in sorted(by_file.items()):
            uri = self.uri_of(snapshot.path_of(display))
            source = snapshot.source(display) or SourceFile(display, "")
            items = [to_lsp_diagnostic(source, d, self.encoding, uri) for d in diags]
            digest = hashlib.sha256(
                repr([(i.range, i.message, i.code, i.severity) for i in items]).encode()
            ).hexdigest()
            sent[uri] = digest
            if state.published.get(uri) == digest:
                continue
            self.text_document_publish_diagnostics(
                types.PublishDiagnosticsParams(uri=uri, diagnostics=items)
            )
        for uri in set(state.published) - set(sent):
            self.text_document_publish_diagnostics(
                types.PublishDiagnosticsParams(uri=uri, diagnostics=[])
            )
        state.published = sent

    # ------------------------------------------------------------- requests
    def resolve(self, uri: str) -> tuple[Snapshot, str, SourceFile]:
        """The fresh snapshot, display path and text of a document, or InvalidParams."""
        path = self.path_of(uri)
        known = uri in self.workspace.text_documents
        if not known and not (path.suffix == SUFFIX and path.is_file()):
            raise JsonRpcInvalidParams(f"unknown document `{uri}`: open it first")
        state = self.tree_of(path)
        snapshot = state.snapshot
        if snapshot is None or state.pending is not None or not known:
            snapshot = self.check(state)
        display = snapshot.display_of(path)
        source = snapshot.source(display) if display is not None else None
        if display is None or source is None:
            raise JsonRpcInvalidParams(f"`{uri}` is not a policy file of this workspace")
        return snapshot, display, source

    def point(self, source: SourceFile, position: types.Position) -> tuple[int, int]:
        try:
            return to_point(source, position, self.encoding)
        except BadPosition as exc:
            raise JsonRpcInvalidParams(f"invalid position: {exc}") from None


def settle_heap() -> None:
    """Exempt what is alive now (a tree's first check) from the cyclic garbage collector.

    The first check of a tree builds the syntax trees and IR of every file,
    millions of objects the per-file caches then keep for the whole session.
    Every full collection walks all of them: on the 10,000-rule benchmark tree
    one took about two seconds, stalling whichever keystroke it fell on.
    `gc.freeze` moves the objects alive now out of the collector's generations;
    they are still freed by reference counting when a file's cache entry is
    replaced (syntax trees and IR nodes hold no reference cycles), so memory
    stays bounded, and later collections walk only what edits created since.
    The young-generation collection first drops the check's transient cyclic
    garbage (parse errors hold tracebacks) instead of freezing it.
    """
    gc.collect(1)
    gc.freeze()


def tree_root(path: Path, folder: Path) -> Path:
    """The policy tree of a file inside a workspace folder.

    A repository often holds several trees (`policies/`, `examples/a/`,
    `examples/b/`) that must not be checked as one.  The tree is the highest
    directory reached from the file's own by walking up through directories
    that themselves hold `.mcp` files (so `policies/tools/x.mcp` belongs to
    `policies/`), never above the workspace folder.
    """
    root = path.parent
    while root != folder and folder in root.parents:
        parent = root.parent
        if not _holds_policy_files(parent):
            break
        root = parent
    return root


def _holds_policy_files(directory: Path) -> bool:
    try:
        return any(
            entry.name.endswith(SUFFIX) and entry.is_file() for entry in os.scandir(directory)
        )
    except OSError:
        return False


def _analyze(
    snapshot: Snapshot, generation: int, state: TreeState
) -> dict[str, list[Diagnostic]] | None:
    """The z3 analyses of a snapshot (worker thread); None when superseded before it started."""
    if state.generation != generation or snapshot.compilation.project is None:
        return None
    from mcpdsl.analysis import analyze

    result = analyze(snapshot.compilation.project, snapshot.compilation.sources)
    out: dict[str, list[Diagnostic]] = {}
    for d in result.diagnostics:
        if d.span is not None:
            out.setdefault(d.span.file, []).append(d)
    return out


def to_lsp_diagnostic(
    source: SourceFile, d: Diagnostic, encoding: str, uri: str = ""
) -> types.Diagnostic:
    """A compiler diagnostic as the protocol's; the help line travels in `data` too."""
    assert d.span is not None
    related = [
        types.DiagnosticRelatedInformation(
            location=types.Location(uri=uri, range=to_range(source, label.span, encoding)),
            message=label.message or "here",
        )
        for label in d.secondary
        if uri and label.span.file == source.path
    ]
    message = d.message
    if d.help:
        message += f"\nhelp: {d.help}"
    for note in d.notes:
        message += f"\nnote: {note}"
    return types.Diagnostic(
        range=to_range(source, d.span, encoding),
        message=message,
        severity=_SEVERITY[d.severity],
        code=d.code,
        source="mcpdsl",
        related_information=related or None,
        data={"help": d.help} if d.help else None,
    )


def build_server() -> McpdslServer:
    """The server with every feature registered."""
    from mcpdsl.lsp import handlers

    server = McpdslServer()
    handlers.register(server)
    return server


def symbol_to_lsp(source: SourceFile, s: Symbol, encoding: str) -> types.DocumentSymbol:
    return types.DocumentSymbol(
        name=s.name.rpartition("/")[2] if s.kind == "rule" else s.name,
        kind=_SYMBOL_KINDS.get(s.kind, types.SymbolKind.Object),
        range=to_range(source, s.full, encoding),
        selection_range=to_range(source, s.span, encoding),
        detail=s.kind,
        children=[],
    )
