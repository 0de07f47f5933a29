"""The protocol handlers: thin adapters from LSP requests to the pure features."""

from __future__ import annotations

from lsprotocol import types

from mcpdsl.lsp import actions, navigate
from mcpdsl.lsp.complete import complete
from mcpdsl.lsp.index import Symbol
from mcpdsl.lsp.positions import to_range, units_of, whole_document
from mcpdsl.lsp.server import (
    COMPLETION_KINDS,
    McpdslServer,
    symbol_to_lsp,
    to_lsp_diagnostic,
)
from mcpdsl.lsp.tokens import TOKEN_MODIFIERS, TOKEN_TYPES, classify
from mcpdsl.source import SourceFile

LEGEND = types.SemanticTokensLegend(
    token_types=list(TOKEN_TYPES), token_modifiers=list(TOKEN_MODIFIERS)
)


def register(server: McpdslServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: McpdslServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: McpdslServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: McpdslServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri, analyze=True)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: McpdslServer, params: types.DidCloseTextDocumentParams) -> None:
        path = ls.path_of(params.text_document.uri)
        state = ls.tree_of(path)
        if state.checker.single_file:  # nothing left to check: clear what was shown
            for uri in state.published:
                ls.text_document_publish_diagnostics(
                    types.PublishDiagnosticsParams(uri=uri, diagnostics=[])
                )
            ls.trees.pop(state.checker.root, None)
            return
        ls.schedule(params.text_document.uri)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def watched(ls: McpdslServer, params: types.DidChangeWatchedFilesParams) -> None:
        """Files changed on disk (a checkout, a generator): check their trees again."""
        for uri in sorted({change.uri for change in params.changes}):
            # an open document's text comes from the editor, not the disk (and a save
            # reports its own file here: that must not cancel the analysis it started)
            if uri.endswith(".mcp") and uri not in ls.workspace.text_documents:
                ls.schedule(uri)

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: McpdslServer, params: None) -> None:
        """Drop queued analyses so that `exit` does not wait for z3."""
        for state in ls.trees.values():
            if state.pending is not None:
                state.pending.cancel()
            state.generation += 1  # a running analysis's result is discarded
        ls.analysis_pool.shutdown(wait=False, cancel_futures=True)

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(ls: McpdslServer, params: types.HoverParams) -> types.Hover | None:
        snapshot, display, source = ls.resolve(params.text_document.uri)
        line, column = ls.point(source, params.position)
        found = navigate.hover(snapshot, display, line, column)
        if found is None:
            return None
        text, span = found
        return types.Hover(
            contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text),
            range=to_range(source, span, ls.encoding),
        )

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    def definition(ls: McpdslServer, params: types.DefinitionParams) -> list[types.Location]:
        snapshot, display, source = ls.resolve(params.text_document.uri)
        line, column = ls.point(source, params.position)
        found = navigate.definition(snapshot, display, line, column)
        return [_location(ls, snapshot, loc) for loc in found]

    @server.feature(types.TEXT_DOCUMENT_REFERENCES)
    def references(ls: McpdslServer, params: types.ReferenceParams) -> list[types.Location]:
        snapshot, display, source = ls.resolve(params.text_document.uri)
        line, column = ls.point(source, params.position)
        found = navigate.references(
            snapshot, display, line, column, include_declaration=params.context.include_declaration
        )
        return [_location(ls, snapshot, loc) for loc in found]

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=[".", '"', " "]),
    )
    def completion(ls: McpdslServer, params: types.CompletionParams) -> types.CompletionList:
        snapshot, display, source = ls.resolve(params.text_document.uri)
        line, column = ls.point(source, params.position)
        index = snapshot.indexes.get(display)
        package = index.package if index else ""
        candidates = complete(snapshot, source.text, line, column, package)
        items = [
            types.CompletionItem(
                label=c.label,
                kind=COMPLETION_KINDS.get(c.kind, types.CompletionItemKind.Reference),
                detail=c.detail or None,
            )
            for c in candidates
        ]
        return types.CompletionList(is_incomplete=False, items=items)

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def document_symbol(
        ls: McpdslServer, params: types.DocumentSymbolParams
    ) -> list[types.DocumentSymbol]:
        snapshot, display, source = ls.resolve(params.text_document.uri)
        return _nest(source, navigate.document_symbols(snapshot, display), ls.encoding)

    @server.feature(types.WORKSPACE_SYMBOL)
    def workspace_symbol(
        ls: McpdslServer, params: types.WorkspaceSymbolParams
    ) -> list[types.WorkspaceSymbol]:
        out: list[types.WorkspaceSymbol] = []
        for state in list(ls.trees.values()):
            snapshot = state.snapshot or ls.check(state)
            for s in navigate.workspace_symbols(snapshot, params.query):
                source = snapshot.source(s.span.file) or SourceFile(s.span.file, "")
                out.append(
                    types.WorkspaceSymbol(
                        name=s.name,
                        kind=symbol_to_lsp(source, s, ls.encoding).kind,
                        location=types.Location(
                            uri=ls.uri_of(snapshot.path_of(s.span.file)),
                            range=to_range(source, s.span, ls.encoding),
                        ),
                        container_name=s.container or s.package or None,
                    )
                )
        return out

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    def formatting(
        ls: McpdslServer, params: types.DocumentFormattingParams
    ) -> list[types.TextEdit] | None:
        from mcpdsl.fmt import FormatError, format_source

        _snapshot, display, source = ls.resolve(params.text_document.uri)
        try:
            formatted = format_source(source.text, display)
        except FormatError:  # syntax errors (already shown as diagnostics): leave it alone
            return None
        if formatted == source.text:
            return []
        return [types.TextEdit(range=whole_document(source, ls.encoding), new_text=formatted)]

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
    )
    def code_action(ls: McpdslServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        snapshot, display, source = ls.resolve(params.text_document.uri)
        uri = params.text_document.uri
        start = ls.point(source, params.range.start)
        end = ls.point(source, params.range.end)
        fixes: list[actions.Fix] = []
        for d in snapshot.compilation.diagnostics:
            if d.span is None or d.span.file != display:
                continue
            if not actions.overlaps(d.span, start[0], end[0]):
                continue
            fix = actions.suggestion_fix(source, d)
            if fix is not None:
                fixes.append(fix)
        parsed = snapshot.parsed.get(display)
        if parsed is not None:
            fixes.extend(actions.unless_fixes(parsed, start[0], start[1], end[0]))
        return [_code_action(ls, uri, source, fix) for fix in fixes]

    @server.feature(types.TEXT_DOCUMENT_SEMANTIC_TOKENS_FULL, LEGEND)
    def semantic_tokens(
        ls: McpdslServer, params: types.SemanticTokensParams
    ) -> types.SemanticTokens:
        snapshot, display, source = ls.resolve(params.text_document.uri)
        tokens = classify(source.text, snapshot.indexes.get(display))
        data: list[int] = []
        prev_line, prev_start = 0, 0
        for tok in tokens:
            text = source.line(tok.line)
            start = units_of(text, tok.column - 1, ls.encoding)
            length = units_of(text, tok.column - 1 + tok.length, ls.encoding) - start
            line = tok.line - 1
            delta_start = start - prev_start if line == prev_line else start
            data += [
                line - prev_line,
                delta_start,
                length,
                TOKEN_TYPES.index(tok.type),
                1 if tok.declaration else 0,
            ]
            prev_line, prev_start = line, start
        return types.SemanticTokens(data=data)


def _location(ls: McpdslServer, snapshot, loc: navigate.Location) -> types.Location:  # type: ignore[no-untyped-def]
    source = snapshot.source(loc.file) or SourceFile(loc.file, "")
    return types.Location(
        uri=ls.uri_of(snapshot.path_of(loc.file)), range=to_range(source, loc.span, ls.encoding)
    )


def _code_action(
    ls: McpdslServer, uri: str, source: SourceFile, fix: actions.Fix
) -> types.CodeAction:
    edits = [
        types.TextEdit(range=to_range(source, e.span, ls.encoding), new_text=e.text)
        for e in fix.edits
    ]
    diagnostics = (
        [to_lsp_diagnostic(source, fix.diagnostic, ls.encoding, uri)] if fix.diagnostic else None
    )
    return types.CodeAction(
        title=fix.title,
        kind=types.CodeActionKind.QuickFix,
        diagnostics=diagnostics,
        is_preferred=fix.preferred or None,
        edit=types.WorkspaceEdit(changes={uri: edits}),
    )


def _nest(source: SourceFile, symbols: list[Symbol], encoding: str) -> list[types.DocumentSymbol]:
    """Top-level declarations with their rules and tools as children."""
    out: list[types.DocumentSymbol] = []
    parents: dict[tuple[str, str], types.DocumentSymbol] = {}
    for s in symbols:
        if s.kind == "package":
            continue
        item = symbol_to_lsp(source, s, encoding)
        parent_kind = {"rule": "policy", "tool": "integration"}.get(s.kind)
        parent = parents.get((parent_kind, s.container)) if parent_kind else None
        if parent is not None and isinstance(parent.children, list):
            parent.children.append(item)
            continue
        parents[(s.kind, s.name)] = item
        out.append(item)
    return out
