"""The language server's incremental check equals the compiler's, edit after edit."""

from __future__ import annotations

import shutil
from pathlib import Path

from mcpdsl.lsp.workspace import TreeChecker
from mcpdsl.pipeline import compile_tree

REPO = Path(__file__).resolve().parent.parent.parent

TYPE_ERRORS = (
    "package platform\n\npolicy typed {\n"
    '  allow user any -> service mcp-api when "a" < 3\n'
    "  allow user any -> service mcp-api when len(5) > 1 and 5s > 1Gi\n"
    "  risk {\n    0.5 when risk > 0.1\n  }\n}\n"
)


def _same(checker: TreeChecker, root: Path, overlays: dict[Path, str]) -> None:
    for path, text in overlays.items():
        path.write_text(text)
    expected = compile_tree(root)
    got = checker.check(overlays).compilation
    assert got.diagnostics == expected.diagnostics
    assert (got.project is None) == (expected.project is None)
    if got.project is not None:
        assert got.project == expected.project


def test_incremental_check_equals_the_compiler(tmp_path: Path) -> None:
    root = tmp_path / "policies"
    shutil.copytree(REPO / "policies", root)
    checker = TreeChecker(root)
    _same(checker, root, {})
    typed = root / "typed.mcp"
    _same(checker, root, {typed: TYPE_ERRORS})
    assert any(
        d.code == "E0305" for d in checker.check({typed: TYPE_ERRORS}).compilation.diagnostics
    )
    access = root / "access.mcp"
    text = access.read_text()
    _same(checker, root, {typed: TYPE_ERRORS, access: text.replace("allow", "allwo", 1)})
    _same(checker, root, {typed: TYPE_ERRORS.replace('"a" < 3', "1 < 3"), access: text})
    typed.unlink()
    _same(checker, root, {})


def test_unchanged_files_are_not_parsed_again(tmp_path: Path) -> None:
    root = tmp_path / "policies"
    shutil.copytree(REPO / "policies", root)
    checker = TreeChecker(root)
    first = checker.check({})
    access = root / "access.mcp"
    second = checker.check({access: access.read_text() + "\n# edited\n"})
    for display in first.parsed:
        same = first.parsed[display] is second.parsed[display]
        assert same == (display != "access.mcp"), display
        assert (first.indexes[display] is second.indexes[display]) == same


def test_a_repository_holds_several_trees(tmp_path: Path) -> None:
    from mcpdsl.lsp.server import tree_root

    for rel in (
        "policies/a.mcp",
        "policies/tools/b.mcp",
        "examples/one/c.mcp",
        "examples/two/d.mcp",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("package p\n")
    assert tree_root(tmp_path / "policies/tools/b.mcp", tmp_path) == tmp_path / "policies"
    assert tree_root(tmp_path / "policies/a.mcp", tmp_path) == tmp_path / "policies"
    assert tree_root(tmp_path / "examples/one/c.mcp", tmp_path) == tmp_path / "examples/one"
    (tmp_path / "top.mcp").write_text("package p\n")  # the folder itself is a tree now
    assert tree_root(tmp_path / "examples/one/c.mcp", tmp_path) == tmp_path / "examples/one"
    assert tree_root(tmp_path / "policies/a.mcp", tmp_path) == tmp_path


def test_hover_on_a_clause_literal_names_its_unit() -> None:
    from mcpdsl.lsp import navigate

    snapshot = TreeChecker(REPO / "policies").check({})
    source = snapshot.source("services.mcp")
    assert source is not None
    line = next(n for n, t in enumerate(source.lines, 1) if t.strip().startswith("cpu "))
    text = source.line(line)
    value = text.split()[1]
    column = text.index(value, text.index("cpu ") + 3) + 1
    found = navigate.hover(snapshot, "services.mcp", line, column)
    assert found is not None and "unit: cpu" in found[0]


def test_completion_of_a_pool_reference_offers_declared_pools() -> None:
    from mcpdsl.lsp.complete import complete

    snapshot = TreeChecker(REPO / "policies").check({})
    text = "package platform\nservice s {\n  pool \n}\n"
    labels = {c.label for c in complete(snapshot, text, 3, 8, "platform")}
    pools = {s.name for i in snapshot.indexes.values() for s in i.symbols if s.kind == "pool"}
    assert pools and labels == pools


def test_completion_of_args_offers_the_rules_tool_arguments() -> None:
    from mcpdsl.lsp.complete import complete

    snapshot = TreeChecker(REPO / "policies").check({})
    line = '  allow agent any -> tool "docs.search" when args.'
    text = f"package platform\npolicy p {{\n{line}\n}}\n"
    found = {c.label: c.detail for c in complete(snapshot, text, 3, len(line) + 1, "platform")}
    assert set(found) == {"args.limit", "args.query"}
    assert found["args.limit"] == "number argument of `docs.search`"
    # a rule about any tool: the arguments of every exposed tool
    line = "  deny agent any -> tool any when args."
    text = f"package platform\npolicy p {{\n{line}\n}}\n"
    labels = {c.label for c in complete(snapshot, text, 3, len(line) + 1, "platform")}
    assert {"args.customer_id", "args.priority", "args.limit"} <= labels
