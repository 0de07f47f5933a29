"""Every `mcp` example in the docs compiles, and the examples' tests pass.

The language reference shows fragments: one declaration at a time, naming
services, pools and packages declared elsewhere.  This test assembles them into
one tree — each fragment a file of package `docs` (or its own `package`), the
reference's `integration` examples in package `tools`, plus the few peers in
`tests/fixtures/docs_peers` that the fragments name but do not declare — and
requires: no errors, every `test` block passes.  A fragment that stops
compiling, or an example whose stated outcome is wrong, fails here.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from repo_paths import FIXTURES, REPO

from mcpdsl.pipeline import compile_tree

DOCS = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]
FENCE = re.compile(r"^```mcp\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for page in DOCS:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text[: match.start()].count("\n") + 1
            found.append((f"{page.relative_to(REPO)}:{line}", match.group(1)))
    return found


BLOCKS = _blocks()


def _place(block: str) -> tuple[str, str]:
    """(directory, source) of a fragment in the assembled tree."""
    if block.lstrip().startswith("package"):
        return "", block
    if re.search(r"^integration ", block, re.M):
        return "tools", "package tools\n" + block
    imports = 'import "tools"\n' if "tools." in block else ""
    return "", f"package docs\n{imports}{block}"


# Policies shown only to illustrate syntax (§5's expression example).  They are
# compiled with the rest but left out of the tree the tests run against: a
# request is allowed only if every policy allows it, and the reference's tests
# are written against its zero-trust policy alone.
ILLUSTRATIONS = re.compile(r"^policy examples \{", re.M)


def _assemble(root: Path, *, with_illustrations: bool) -> Path:
    shutil.copytree(FIXTURES / "docs_peers", root)
    for index, (_, block) in enumerate(BLOCKS):
        if not with_illustrations and ILLUSTRATIONS.search(block):
            continue
        directory, source = _place(block)
        (root / directory / f"example{index:03}.mcp").write_text(source, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def docs_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _assemble(tmp_path_factory.mktemp("docs") / "tree", with_illustrations=True)


@pytest.fixture(scope="module")
def scenario_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _assemble(tmp_path_factory.mktemp("docs") / "tree", with_illustrations=False)


def test_the_docs_have_examples() -> None:
    assert len(BLOCKS) >= 10


def test_every_example_compiles_together(docs_tree: Path) -> None:
    compilation = compile_tree(docs_tree)
    errors = [d for d in compilation.diagnostics if d.is_error]
    where = {f"example{i:03}.mcp": origin for i, (origin, _) in enumerate(BLOCKS)}
    assert not errors, "\n".join(
        f"{where.get(Path(d.span.file).name, d.span.file) if d.span else '?'}: {d.code} {d.message}"
        for d in errors
    )


def test_every_example_test_passes(scenario_tree: Path) -> None:
    from mcpdsl.engine.engine import compile_project
    from mcpdsl.engine.testing import run_tests

    compilation = compile_tree(scenario_tree)
    assert compilation.project is not None
    outcomes = run_tests(compile_project(compilation.project, compilation.project.root))
    assert outcomes, "the language reference shows test blocks"
    failed = [f"{o.name}: {o.message}" for o in outcomes if not o.passed]
    assert not failed, "\n".join(failed)
