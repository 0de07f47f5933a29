"""The language server's incremental resolve equals the compiler's, for random edit sequences.

`TreeChecker` re-parses only edited files and re-binds only the files whose
recorded questions about the tree got a different answer (`ResolveMemo`).
Here random sequences of edits that add, remove, rename and duplicate
declarations, references, imports, tools and `scale` targets are applied to a
copy of `policies/`, and after every edit the checker's result must equal
`compile_tree` of the same files: the same diagnostics and the same project,
spans included.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcpdsl.ir import model as m
from mcpdsl.lsp.workspace import TreeChecker
from mcpdsl.pipeline import compile_tree

REPO = Path(__file__).resolve().parent.parent.parent
FILES = sorted(
    p.relative_to(REPO / "policies").as_posix() for p in (REPO / "policies").rglob("*.mcp")
)
# Words that name things across files: renaming one occurrence makes a
# reference unknown, a declaration disappear, or a duplicate appear.
WORDS = (
    "mcp-api",
    "postgres",
    "agent-runtime",
    "api-gateway",
    "tool-runner",
    "standard",
    "gpu",
    "platform",
    "tools",
    "crm.lookup",
    "docs.search",
    "crm-lookup",
    "public",
    "cpu",
    "agent_runs_in_flight",
)
SNIPPETS = (
    'service mcp-api {\n  image "ghcr.io/x/y:1"\n  port 8080\n  stateful\n}\n',
    'service fresh {\n  image "ghcr.io/x/y:1"\n  port 8080\n  pool standard\n}\n',
    "scale postgres {\n  replicas 1..3\n  target cpu 50%\n}\n",
    'integration again {\n  expose tool "crm.lookup" input { id: string }\n'
    '  call GET "https://crm.internal/x"\n}\n',
    'test "fresh" {\n  given scale mcp-api { replicas 2, cpu 90% }\n  expect replicas 3\n}\n',
    "pool standard {\n  node cpu 4 memory 16Gi\n}\n",
)

edits = st.one_of(
    st.tuples(
        st.just("rename"),
        st.sampled_from(FILES),
        st.sampled_from(WORDS),
        st.sampled_from(WORDS),
        st.integers(0, 40),
    ),
    st.tuples(st.just("drop line"), st.sampled_from(FILES), st.integers(0, 400)),
    st.tuples(st.just("copy line"), st.sampled_from(FILES), st.integers(0, 400)),
    st.tuples(st.just("typo"), st.sampled_from(FILES), st.integers(0, 20_000)),
    st.tuples(st.just("append"), st.sampled_from(FILES), st.sampled_from(SNIPPETS)),
    st.tuples(st.just("import"), st.sampled_from(FILES), st.sampled_from(WORDS)),
    st.tuples(st.just("restore"), st.sampled_from(FILES)),
)


def apply(text: str, original: str, edit: tuple[Any, ...]) -> str:
    kind = edit[0]
    if kind == "rename":
        _, _, old, new, nth = edit
        starts = [i for i in range(len(text)) if text.startswith(old, i)]
        if not starts:
            return text
        at = starts[nth % len(starts)]
        return text[:at] + new + text[at + len(old) :]
    lines = text.splitlines(keepends=True)
    if kind in ("drop line", "copy line"):
        if not lines:
            return text
        k = edit[2] % len(lines)
        return "".join(lines[:k] + ([] if kind == "drop line" else [lines[k]]) + lines[k:][1:])
    if kind == "typo":
        if not text:
            return text
        k = edit[2] % len(text)
        return text[:k] + "x" + text[k + 1 :]
    if kind == "append":
        return text + "\n" + edit[2]
    if kind == "import":
        return "".join([*lines[:1], f'import "{edit[2]}"\n', *lines[1:]])
    return original  # restore


def _spans(value: object) -> Iterator[object]:
    """Every span of a project, in field order: `==` on IR nodes ignores them."""
    if isinstance(value, m.Node):
        yield type(value).__name__, value.span
        for name in type(value).model_fields:
            yield from _spans(getattr(value, name))
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _spans(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _spans(item)


def assert_same(checker: TreeChecker, root: Path, overlays: dict[Path, str]) -> None:
    expected = compile_tree(root)
    got = checker.check(overlays).compilation
    assert got.diagnostics == expected.diagnostics
    assert (got.project is None) == (expected.project is None)
    # The project is dropped when there are errors; compare what resolve bound.
    got_project, expected_project = got.project, expected.project
    if got_project is not None and expected_project is not None:
        assert got_project == expected_project
        assert list(_spans(got_project)) == list(_spans(expected_project))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(edits, min_size=1, max_size=6))
def test_random_edit_sequences_check_like_the_compiler(
    tmp_path_factory: Any, sequence: list[tuple[Any, ...]]
) -> None:
    root = tmp_path_factory.mktemp("tree") / "policies"
    shutil.copytree(REPO / "policies", root)
    originals = {name: (root / name).read_text() for name in FILES}
    texts = dict(originals)
    checker = TreeChecker(root)
    assert_same(checker, root, {})
    for edit in sequence:
        name = edit[1]
        texts[name] = apply(texts[name], originals[name], edit)
        (root / name).write_text(texts[name])
        # Every edited file is an open document: the checker must not depend on
        # the file system noticing a same-size rewrite within one clock tick.
        overlays = {root / n: t for n, t in texts.items() if t != originals[n]}
        assert_same(checker, root, overlays)


def test_a_keystroke_inside_a_rule_binds_only_the_edited_file(tmp_path: Path) -> None:
    root = tmp_path / "policies"
    shutil.copytree(REPO / "policies", root)
    checker = TreeChecker(root)
    checker.check({})
    memo = checker.cache._resolve_memo
    assert memo is not None
    access = root / "access.mcp"
    text = access.read_text()
    edited = text.replace("allow", "allow ", 1)  # same declarations, other bytes
    assert edited != text
    assert_same(checker, root, {})  # warm: nothing changed, every file reused
    assert memo.reused == len(FILES)
    access.write_text(edited)
    assert_same(checker, root, {access: edited})
    assert memo.reused == len(FILES) - 1


def test_removing_a_declaration_rebinds_the_files_that_named_it(tmp_path: Path) -> None:
    root = tmp_path / "policies"
    shutil.copytree(REPO / "policies", root)
    checker = TreeChecker(root)
    checker.check({})
    memo = checker.cache._resolve_memo
    assert memo is not None
    services = root / "services.mcp"
    text = services.read_text()
    renamed = text.replace("service postgres {", "service postgres2 {", 1)
    assert renamed != text
    services.write_text(renamed)
    assert_same(checker, root, {services: renamed})
    # services.mcp and the files that name `postgres` were bound again; the others were not.
    assert 0 < memo.reused < len(FILES) - 1
    codes = {d.code for d in checker.check({services: renamed}).compilation.diagnostics}
    assert "E0402" in codes
