"""One fixture per diagnostic code; the rendered `mcpdsl check` text is the golden.

Each directory `tests/fixtures/diagnostics/<CODE>-<slug>/` holds a minimal
policy tree (`*.mcp`) and `expected.txt`, the human output of `mcpdsl check`
run inside that directory (no colour).  Regenerate after an intended change
with

    MCPDSL_UPDATE_GOLDENS=1 python -m pytest tests/cli/test_diagnostic_goldens.py
    # or: python -m pytest tests/cli/test_diagnostic_goldens.py --update-goldens

and read the diff: every golden is a message a user will see.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from repo_paths import FIXTURES

from mcpdsl.cli import main
from mcpdsl.diagnostics import CODES, Diagnostic
from mcpdsl.diagnostics.render import render_human, summary_line
from mcpdsl.pipeline import InputError, compile_tree
from mcpdsl.source import SourceMap

DIAGNOSTICS = FIXTURES / "diagnostics"
CASES = sorted(p for p in DIAGNOSTICS.iterdir() if p.is_dir())
GOLDEN = "expected.txt"

# Codes the front end can emit that have no fixture directory, and why.
NO_FIXTURE = {
    "E0502": "needs an input above 8 MiB; tested in test_check_cli.py",
    "E0504": "git cannot hold a FIFO or device; tested in tests/test_sources.py",
}


def fixture_code(case: Path) -> str:
    return case.name.split("-", 1)[0]


def compile_case(case: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[Diagnostic]]:
    """What `mcpdsl check .` prints inside the fixture directory, and its diagnostics."""
    monkeypatch.chdir(case)
    try:
        compilation = compile_tree(".")
    except InputError as exc:  # the CLI prints the input error alone, without a summary
        return render_human([exc.diagnostic], SourceMap()) + "\n", [exc.diagnostic]
    text = render_human(compilation.diagnostics, compilation.sources)
    out = (text + "\n" if text else "") + summary_line(compilation.diagnostics) + "\n"
    return out, compilation.diagnostics


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Path, monkeypatch: pytest.MonkeyPatch, update_goldens: bool) -> None:
    rendered, diagnostics = compile_case(case, monkeypatch)
    golden = case / GOLDEN
    if update_goldens:
        golden.write_text(rendered, encoding="utf-8", newline="\n")
    assert golden.exists(), f"no golden; run with MCPDSL_UPDATE_GOLDENS=1 to create {golden}"
    assert rendered == golden.read_text(encoding="utf-8")
    code = fixture_code(case)
    assert code in {d.code for d in diagnostics}, f"{case.name} does not produce {code}"
    assert f"[{code}]" in rendered


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cli_prints_the_golden(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`mcpdsl check .` prints exactly the golden and exits as the contract says."""
    monkeypatch.chdir(case)
    result = CliRunner().invoke(main, ["check", "."], env={"NO_COLOR": "1", "FORCE_COLOR": ""})
    golden = (case / GOLDEN).read_text(encoding="utf-8")
    assert result.output == golden
    if fixture_code(case) == "E0501":
        assert result.exit_code == 2
    elif re.search(r"^error\[", golden, re.MULTILINE):
        assert result.exit_code == 1
    else:
        assert result.exit_code == 0


def test_every_front_end_code_has_a_fixture() -> None:
    front_end = {c for c in CODES if c[:3] in ("E01", "E02", "E03", "E04", "E05", "W01")}
    covered = {fixture_code(c) for c in CASES}
    missing = sorted(front_end - covered - set(NO_FIXTURE))
    assert not missing, f"codes without a fixture directory: {missing}"
    assert not covered - set(CODES), "fixture directories named after unknown codes"


def test_enough_broken_inputs_with_variants() -> None:
    assert len(CASES) >= 40
    per_code: dict[str, int] = {}
    for case in CASES:
        per_code[fixture_code(case)] = per_code.get(fixture_code(case), 0) + 1
    assert sum(1 for n in per_code.values() if n >= 2) >= 5


def test_fixtures_are_minimal_trees() -> None:
    for case in CASES:
        files = sorted(p.name for p in case.iterdir())
        assert GOLDEN in files, case.name
        inputs = [f for f in files if f.endswith(".mcp")]
        assert inputs or fixture_code(case) == "E0501", case.name
        assert len(inputs) <= 2, f"{case.name}: keep fixtures minimal"


def test_three_broken_declarations_give_exactly_three_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Recovery: one broken declaration does not hide (or multiply) the next one's error."""
    _, diagnostics = compile_case(DIAGNOSTICS / "E0101-three-broken-declarations", monkeypatch)
    errors = [d for d in diagnostics if d.is_error]
    assert len(errors) == 3
    assert [d.span.line for d in errors if d.span] == [4, 10, 14]


# ------------------------------------------------------------------ style guide

_PLACEHOLDER = re.compile(r"\{[a-z_]+\}|None|<[A-Za-z_.]+ object")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_messages_follow_the_style_guide(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lowercase, no final period, no leaked placeholders, spans inside the file."""
    rendered, diagnostics = compile_case(case, monkeypatch)
    for d in diagnostics:
        for text in (d.message, d.label, *(lb.message for lb in d.secondary)):
            if text:
                assert not text[0].isupper(), f"{d.code}: capitalised `{text}`"
                assert not text.endswith("."), f"{d.code}: final period in `{text}`"
                assert not _PLACEHOLDER.search(text), f"{d.code}: placeholder in `{text}`"
        for text in (d.help, *d.notes):
            if text:
                assert not text.endswith("."), f"{d.code}: final period in `{text}`"
                assert not _PLACEHOLDER.search(text), f"{d.code}: placeholder in `{text}`"
        if d.code != "E0501":
            assert d.span is not None, f"{d.code} has no span"
            assert d.span.line >= 1 and d.span.column >= 1
            assert (d.span.end_line, d.span.end_column) >= (d.span.line, d.span.column)
    assert "Traceback" not in rendered
