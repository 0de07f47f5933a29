"""The language server end to end: a real client over stdio (pytest-lsp)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

pytestmark = pytest.mark.asyncio(loop_scope="function")

TIMEOUT = 60  # seconds; generous: CI machines are shared


async def wait_diagnostics(
    client: LanguageClient,
    uri: str,
    ready: Callable[[list[types.Diagnostic]], bool] = lambda d: True,
) -> list[types.Diagnostic]:
    """The diagnostics of `uri` once `ready` holds for them (each publish is re-checked)."""

    async def loop() -> list[types.Diagnostic]:
        # Poll what the client's publishDiagnostics handler stored.  Waiting on
        # `wait_for_notification` and cancelling the waiter on a timeout is not
        # safe: pytest-lsp keeps the cancelled future and raises when the late
        # notification tries to resolve it.
        while True:
            got = client.diagnostics.get(uri)
            if got is not None and ready(got):
                return got
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(loop(), TIMEOUT)


def open_doc(client: LanguageClient, path: Path, text: str | None = None, version: int = 1) -> str:
    uri = path.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri,
                language_id="mcp",
                version=version,
                text=path.read_text() if text is None else text,
            )
        )
    )
    return uri


def change_doc(client: LanguageClient, uri: str, text: str, version: int) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )


def pos(text: str, needle: str, offset: int = 0) -> types.Position:
    """The position of `needle` (plus `offset` characters) in an ASCII text."""
    at = text.index(needle) + offset
    line = text.count("\n", 0, at)
    return types.Position(line=line, character=at - (text.rfind("\n", 0, at) + 1))


def doc(uri: str) -> types.TextDocumentIdentifier:
    return types.TextDocumentIdentifier(uri=uri)


def apply(text: str, edits: list[types.TextEdit]) -> str:
    """Apply text edits (ASCII text, non-overlapping) from the end backwards."""
    lines = text.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)

    def offset(p: types.Position) -> int:
        return starts[p.line] + p.character

    for e in sorted(edits, key=lambda e: offset(e.range.start), reverse=True):
        text = text[: offset(e.range.start)] + e.new_text + text[offset(e.range.end) :]
    return text


BROKEN = 'package platform\n\nservice extra {\n  imag "ghcr.io/mcp/x:1"\n  port 8080\n}\n'


# ------------------------------------------------------------------ diagnostics


async def test_broken_file_gets_coded_diagnostics_with_ranges(
    client: LanguageClient, workspace: Path
) -> None:
    uri = open_doc(client, workspace / "extra.mcp", BROKEN)
    diags = await wait_diagnostics(client, uri, lambda d: bool(d))
    first = diags[0]
    assert first.code == "E0101"
    assert first.severity == types.DiagnosticSeverity.Error
    assert first.range.start == types.Position(line=3, character=2)
    assert first.range.end == types.Position(line=3, character=6)
    assert "did you mean `image`" in first.message
    # fixing the text clears the diagnostics (as you type, no save)
    change_doc(client, uri, BROKEN.replace("imag ", "image "), 2)
    left = await wait_diagnostics(client, uri, lambda d: not any(x.code == "E0101" for x in d))
    assert [d.code for d in left] == ["W0102"]  # only: a stateless service without `scale`


async def test_cross_file_error_appears_in_the_file_that_refers(
    client: LanguageClient, workspace: Path
) -> None:
    path = workspace / "scaling.mcp"
    text = path.read_text()
    uri = open_doc(client, path, text)
    await wait_diagnostics(client, uri)
    services = workspace / "services.mcp"
    stext = services.read_text()
    suri = open_doc(client, services, stext.replace("service mcp-api {", "service mcp-apx {"))
    diags = await wait_diagnostics(client, uri, lambda d: any(x.code == "E0402" for x in d))
    assert any("mcp-api" in d.message for d in diags)
    assert suri in client.diagnostics


async def test_save_runs_the_analyses(client: LanguageClient, workspace: Path) -> None:
    path = workspace / "dead.mcp"
    text = (
        "package platform\n\npolicy dead {\n"
        "  never: allow service mcp-api -> service postgres"
        " when context.n > 5 and context.n < 3\n}\n"
    )
    path.write_text(text)
    uri = open_doc(client, path, text)
    await wait_diagnostics(client, uri)
    client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=doc(uri)))
    diags = await wait_diagnostics(client, uri, lambda d: any(x.code == "A0101" for x in d))
    dead = next(d for d in diags if d.code == "A0101")
    assert dead.range.start.line == 3


# ------------------------------------------------------------------------ hover


async def test_hover_shows_doc_comment_and_where_a_rule_is_enforced(
    client: LanguageClient, workspace: Path
) -> None:
    path = workspace / "access.mcp"
    text = path.read_text()
    uri = open_doc(client, path, text)
    hover = await client.text_document_hover_async(
        types.HoverParams(text_document=doc(uri), position=pos(text, "edge-api:", 2))
    )
    assert hover is not None
    value = hover.contents.value  # type: ignore[union-attr]
    assert "rule zero-trust/edge-api" in value
    assert "north-south: the public gateway is the only way in" in value
    assert "opa/platform/zero-trust.rego" in value
    assert "gateway `public` route `/v1/**`" in value


async def test_hover_shows_the_type_and_unit_of_an_expression(
    client: LanguageClient, workspace: Path
) -> None:
    path = workspace / "probe.mcp"
    text = (
        "package platform\n\npolicy probe {\n"
        "  allow user any -> service mcp-api when context.session.age < 8h\n}\n"
    )
    uri = open_doc(client, path, text)
    hover = await client.text_document_hover_async(
        types.HoverParams(text_document=doc(uri), position=pos(text, "8h"))
    )
    assert hover is not None
    assert "type: `duration`" in hover.contents.value  # type: ignore[union-attr]
    hover = await client.text_document_hover_async(
        types.HoverParams(text_document=doc(uri), position=pos(text, "session"))
    )
    assert hover is not None
    assert "attribute `context.session.age`" in hover.contents.value  # type: ignore[union-attr]


async def test_hover_on_a_service_reference_shows_its_doc(
    client: LanguageClient, workspace: Path
) -> None:
    path = workspace / "scaling.mcp"
    text = path.read_text()
    uri = open_doc(client, path, text)
    hover = await client.text_document_hover_async(
        types.HoverParams(text_document=doc(uri), position=pos(text, "scale mcp-api", 7))
    )
    assert hover is not None
    value = hover.contents.value  # type: ignore[union-attr]
    assert "service platform.mcp-api" in value
    assert "declared in `services.mcp:" in value


# ------------------------------------------------------------ definition, refs


async def test_definition_across_files(client: LanguageClient, workspace: Path) -> None:
    path = workspace / "access.mcp"
    text = path.read_text()
    uri = open_doc(client, path, text)
    found = await client.text_document_definition_async(
        types.DefinitionParams(text_document=doc(uri), position=pos(text, "api-gateway", 3))
    )
    assert isinstance(found, list) and len(found) == 1
    assert found[0].uri == (workspace / "services.mcp").as_uri()
    line = (workspace / "services.mcp").read_text().split("\n")[found[0].range.start.line]
    assert line.startswith("service api-gateway {")


async def test_definition_across_packages_and_imports(
    client: LanguageClient, workspace: Path
) -> None:
    path = workspace / "gateway.mcp"
    text = path.read_text()
    uri = open_doc(client, path, text)
    tools = (workspace / "tools" / "integrations.mcp").as_uri()
    found = await client.text_document_definition_async(
        types.DefinitionParams(text_document=doc(uri), position=pos(text, "tools.crm-lookup", 8))
    )
    assert isinstance(found, list) and [f.uri for f in found] == [tools]
    found = await client.text_document_definition_async(
        types.DefinitionParams(text_document=doc(uri), position=pos(text, '"tools"', 2))
    )
    assert isinstance(found, list) and [f.uri for f in found] == [tools]
    assert found[0].range.start.line == 0  # `package tools`


async def test_references_of_a_service(client: LanguageClient, workspace: Path) -> None:
    path = workspace / "services.mcp"
    text = path.read_text()
    uri = open_doc(client, path, text)
    found = await client.text_document_references_async(
        types.ReferenceParams(
            text_document=doc(uri),
            position=pos(text, "service postgres", 9),
            context=types.ReferenceContext(include_declaration=True),
        )
    )
    files = {Path(f.uri).name for f in found}  # type: ignore[union-attr]
    assert {"services.mcp", "access.mcp"} <= files
    access = (workspace / "access.mcp").read_text()
    expected = access.count("postgres")
    assert sum(1 for f in found if f.uri.endswith("/access.mcp")) == expected  # type: ignore[union-attr]


async def test_references_of_a_tool(client: LanguageClient, workspace: Path) -> None:
    path = workspace / "tools" / "integrations.mcp"
    text = path.read_text()
    uri = open_doc(client, path, text)
    found = await client.text_document_references_async(
        types.ReferenceParams(
            text_document=doc(uri),
            position=pos(text, '"crm.lookup"', 2),
            context=types.ReferenceContext(include_declaration=False),
        )
    )
    assert found
    assert all(f.uri != uri for f in found)  # only uses, in the policy files


# ------------------------------------------------------------------- completion


async def _labels(client: LanguageClient, uri: str, position: types.Position) -> set[str]:
    result = await client.text_document_completion_async(
        types.CompletionParams(text_document=doc(uri), position=position)
    )
    assert isinstance(result, types.CompletionList)
    return {item.label for item in result.items}


async def test_completion_in_three_contexts(client: LanguageClient, workspace: Path) -> None:
    text = (
        "package platform\n\n"
        "ser\n"
        "service probe {\n  ima\n}\n"
        "scale \n"
        "policy p {\n  allow user any -> service mcp-api when principal.\n}\n"
        "job j {\n  timeout 30\n}\n"
    )
    uri = open_doc(client, workspace / "probe.mcp", text)
    await wait_diagnostics(client, uri)
    top = await _labels(client, uri, pos(text, "ser\n", 3))
    assert {"service", "policy", "integration"} <= top
    clause = await _labels(client, uri, pos(text, "  ima\n", 5))
    assert {"image", "port", "cpu", "replicas"} <= clause and "policy" not in clause
    names = await _labels(client, uri, pos(text, "scale \n", 6))
    assert {"mcp-api", "api-gateway", "postgres"} <= names
    fields = await _labels(client, uri, pos(text, "principal.\n", 10))
    assert {"principal.groups", "principal.email", "principal.type"} <= fields
    units = await _labels(client, uri, pos(text, "30\n", 2))
    assert {"s", "ms", "Mi", "%"} <= units


async def test_completion_of_imports_offers_packages(
    client: LanguageClient, workspace: Path
) -> None:
    text = 'package platform\n\nimport "\n'
    uri = open_doc(client, workspace / "probe.mcp", text)
    await wait_diagnostics(client, uri)
    assert "tools" in await _labels(client, uri, pos(text, 'import "', 8))


# -------------------------------------------------------- symbols, formatting


async def test_document_symbols_nest_rules_under_policies(
    client: LanguageClient, workspace: Path
) -> None:
    path = workspace / "access.mcp"
    uri = open_doc(client, path)
    symbols = await client.text_document_document_symbol_async(
        types.DocumentSymbolParams(text_document=doc(uri))
    )
    assert symbols
    policy = next(s for s in symbols if s.name == "zero-trust")
    assert isinstance(policy, types.DocumentSymbol)
    assert policy.kind == types.SymbolKind.Module
    assert "edge-api" in {c.name for c in policy.children or []}


async def test_workspace_symbols(client: LanguageClient, workspace: Path) -> None:
    open_doc(client, workspace / "access.mcp")
    found = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="crm"))
    assert found
    names = {s.name for s in found}
    assert {"crm-lookup", "crm.lookup"} <= names


async def test_formatting_returns_the_canonical_text(
    client: LanguageClient, workspace: Path
) -> None:
    text = 'package platform\nservice fmt-me{image "a:1"   port 8080 # http\n}\n'
    uri = open_doc(client, workspace / "fmt.mcp", text)
    edits = await client.text_document_formatting_async(
        types.DocumentFormattingParams(
            text_document=doc(uri), options=types.FormattingOptions(tab_size=2, insert_spaces=True)
        )
    )
    assert edits
    from mcpdsl.fmt import format_source

    assert apply(text, list(edits)) == format_source(text)
    # a file that does not parse is left alone
    change_doc(client, uri, BROKEN, 2)
    edits = await client.text_document_formatting_async(
        types.DocumentFormattingParams(
            text_document=doc(uri), options=types.FormattingOptions(tab_size=2, insert_spaces=True)
        )
    )
    assert not edits


# ----------------------------------------------------------------- code actions


async def test_did_you_mean_code_action_fixes_the_error(
    client: LanguageClient, workspace: Path
) -> None:
    uri = open_doc(client, workspace / "extra.mcp", BROKEN)
    diags = await wait_diagnostics(client, uri, lambda d: bool(d))
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=doc(uri),
            range=diags[0].range,
            context=types.CodeActionContext(diagnostics=diags),
        )
    )
    assert actions
    action = actions[0]
    assert isinstance(action, types.CodeAction) and action.edit and action.edit.changes
    assert action.kind == types.CodeActionKind.QuickFix
    fixed = apply(BROKEN, list(action.edit.changes[uri]))
    assert '  image "ghcr.io/mcp/x:1"' in fixed
    change_doc(client, uri, fixed, 2)
    left = await wait_diagnostics(client, uri, lambda d: not any(x.code == "E0101" for x in d))
    assert not [d for d in left if d.severity == types.DiagnosticSeverity.Error]


async def test_unless_code_action_for_a_fail_open_deny(
    client: LanguageClient, workspace: Path
) -> None:
    text = (
        "package platform\n\npolicy guard {\n"
        '  deny any -> service postgres when source.namespace not in ["core", "data"]\n'
        '  deny any -> service postgres when request.auth.level != "high"\n'
        "  deny any -> service postgres when not request.auth.mfa\n}\n"
    )
    uri = open_doc(client, workspace / "guard.mcp", text)
    await wait_diagnostics(client, uri)

    async def actions_at(needle: str) -> list[types.CodeAction]:
        at = pos(text, needle)
        found = await client.text_document_code_action_async(
            types.CodeActionParams(
                text_document=doc(uri),
                range=types.Range(start=at, end=at),
                context=types.CodeActionContext(diagnostics=[]),
            )
        )
        return [a for a in found or [] if isinstance(a, types.CodeAction)]

    results = []
    for needle in ("not in", "!="):
        actions = await actions_at(needle)
        assert len(actions) == 1 and "unless" in actions[0].title
        assert actions[0].edit and actions[0].edit.changes
        results.append(apply(text, list(actions[0].edit.changes[uri])))
    assert 'postgres unless source.namespace in ["core", "data"]\n' in results[0]
    assert 'postgres unless request.auth.level == "high"\n' in results[1]
    # `not` of a missing attribute is true already: nothing to rewrite
    assert await actions_at("not request") == []


# --------------------------------------------------------------- semantic tokens


async def test_semantic_tokens_classify_keywords_names_and_literals(
    client: LanguageClient, workspace: Path
) -> None:
    text = 'package platform\n# c\nservice tok {\n  image "a:1"\n  cpu 500m\n}\n'
    uri = open_doc(client, workspace / "tok.mcp", text)
    result = await client.text_document_semantic_tokens_full_async(
        types.SemanticTokensParams(text_document=doc(uri))
    )
    assert result is not None
    from mcpdsl.lsp.tokens import TOKEN_TYPES

    data = result.data
    decoded = []
    line = col = 0
    for i in range(0, len(data), 5):
        dl, dc, length, kind, mods = data[i : i + 5]
        line += dl
        col = col + dc if dl == 0 else dc
        word = text.split("\n")[line][col : col + length]
        decoded.append((word, TOKEN_TYPES[kind], mods))
    assert ("package", "keyword", 0) in decoded
    assert ("platform", "namespace", 1) in decoded
    assert ("# c", "comment", 0) in decoded
    assert ("tok", "class", 1) in decoded
    assert ('"a:1"', "string", 0) in decoded
    assert ("500m", "number", 0) in decoded


# ---------------------------------------------------------------- hostile input


async def test_positions_past_the_end_are_refused_not_fatal(
    client: LanguageClient, workspace: Path
) -> None:
    path = workspace / "access.mcp"
    text = path.read_text()
    uri = open_doc(client, path, text)
    with pytest.raises(JsonRpcException, match="past the end"):
        await client.text_document_hover_async(
            types.HoverParams(
                text_document=doc(uri), position=types.Position(line=10**6, character=0)
            )
        )
    # a character past the end of a line is clamped (the protocol says so)
    await client.text_document_hover_async(
        types.HoverParams(text_document=doc(uri), position=types.Position(line=0, character=10**6))
    )
    # the server still answers
    found = await client.text_document_definition_async(
        types.DefinitionParams(text_document=doc(uri), position=pos(text, "api-gateway", 3))
    )
    assert found


async def test_utf16_positions_inside_surrogate_pairs(
    client: LanguageClient, workspace: Path
) -> None:
    text = 'package platform\n# 🚀🚀 rocket\nservice "🚀" {\n}\nscale mcp-api { replicas 1..2 }\n'
    uri = open_doc(client, workspace / "emoji.mcp", text)
    diags = await wait_diagnostics(client, uri, lambda d: bool(d))
    # the string name is an error on line 2; its range is in UTF-16 units
    assert diags[0].range.start.line == 2
    assert diags[0].range.start.character == 8
    # a position in the middle of a surrogate pair neither crashes nor misplaces
    hover = await client.text_document_hover_async(
        types.HoverParams(text_document=doc(uri), position=types.Position(line=1, character=3))
    )
    assert hover is None
    found = await client.text_document_definition_async(
        types.DefinitionParams(text_document=doc(uri), position=types.Position(line=4, character=7))
    )
    assert isinstance(found, list) and found[0].uri.endswith("/services.mcp")


async def test_a_huge_document_gets_a_diagnostic(client: LanguageClient, workspace: Path) -> None:
    text = "package platform\n" + "# padding padding padding padding padding\n" * 220_000
    uri = open_doc(client, workspace / "huge.mcp", text)
    diags = await wait_diagnostics(client, uri, lambda d: bool(d))
    assert diags[0].code == "E0502"
    hover = await client.text_document_hover_async(
        types.HoverParams(text_document=doc(uri), position=types.Position(line=0, character=0))
    )
    assert hover is None or hover.contents is not None


async def test_a_file_outside_the_workspace_is_checked_alone(
    client: LanguageClient, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere" / "alone.mcp"
    outside.parent.mkdir()
    uri = open_doc(client, outside, BROKEN)
    diags = await wait_diagnostics(client, uri, lambda d: bool(d))
    assert diags[0].code == "E0101"
    client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=doc(uri)))
    assert not await wait_diagnostics(client, uri, lambda d: not d)


async def test_an_unknown_document_is_a_clear_error(
    client: LanguageClient, workspace: Path
) -> None:
    missing = (workspace / "nope.mcp").as_uri()
    with pytest.raises(JsonRpcException, match="unknown document"):
        await client.text_document_hover_async(
            types.HoverParams(
                text_document=doc(missing), position=types.Position(line=0, character=0)
            )
        )
    with pytest.raises(JsonRpcException, match="unknown document"):
        await client.text_document_formatting_async(
            types.DocumentFormattingParams(
                text_document=doc("untitled:Untitled-1"),
                options=types.FormattingOptions(tab_size=2, insert_spaces=True),
            )
        )
    symbols = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query=""))
    assert symbols is not None  # still alive


async def test_a_change_on_disk_is_picked_up(client: LanguageClient, workspace: Path) -> None:
    path = workspace / "scaling.mcp"
    uri = open_doc(client, path)
    await wait_diagnostics(client, uri)
    services = workspace / "services.mcp"
    services.write_text(services.read_text().replace("service mcp-api {", "service mcp-apx {"))
    client.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams(
            changes=[types.FileEvent(uri=services.as_uri(), type=types.FileChangeType.Changed)]
        )
    )
    diags = await wait_diagnostics(client, uri, lambda d: any(x.code == "E0402" for x in d))
    assert any("mcp-api" in d.message for d in diags)
