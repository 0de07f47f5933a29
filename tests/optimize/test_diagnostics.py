"""One fixture tree per optimiser diagnostic (E07xx); the rendered diagnostics are the golden.

Each directory `fixtures/diagnostics/<CODE>-<slug>/` holds a minimal tree
(`carbon.mcp`, maybe a forecast file) and `expected.txt`: what `mcpdsl plan`
prints as diagnostics, run inside that directory (no colour).  Regenerate with

    MCPDSL_UPDATE_GOLDENS=1 python -m pytest tests/optimize/test_diagnostics.py

and read the diff: positions in data files (`forecast.csv:3:12`) are part of the golden.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mcpdsl.cli import main
from mcpdsl.diagnostics import CODES, Diagnostic
from mcpdsl.diagnostics.render import render_human
from mcpdsl.optimize.plan import compute_plan
from mcpdsl.pipeline import compile_tree

HERE = Path(__file__).parent / "fixtures" / "diagnostics"
CASES = sorted(p for p in HERE.iterdir() if p.is_dir())
GOLDEN = "expected.txt"


def code_of(case: Path) -> str:
    return case.name.split("-", 1)[0]


def render(case: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[Diagnostic]]:
    monkeypatch.chdir(case)
    compilation = compile_tree(".")
    assert compilation.project is not None, compilation.diagnostics
    plan = compute_plan(compilation.project)
    for source in plan.sources:
        compilation.sources.add(source)
    diagnostics = [*compilation.diagnostics, *plan.diagnostics]
    return render_human(diagnostics, compilation.sources) + "\n", diagnostics


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Path, monkeypatch: pytest.MonkeyPatch, update_goldens: bool) -> None:
    rendered, diagnostics = render(case, monkeypatch)
    golden = case / GOLDEN
    if update_goldens:
        golden.write_text(rendered, encoding="utf-8", newline="\n")
    assert rendered == golden.read_text(encoding="utf-8")
    assert code_of(case) in {d.code for d in diagnostics}
    assert "Traceback" not in rendered


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_messages_follow_the_style_guide(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, diagnostics = render(case, monkeypatch)
    for d in diagnostics:
        for text in (d.message, d.label, *(lb.message for lb in d.secondary)):
            if text:
                assert not text[0].isupper(), f"{d.code}: capitalised `{text}`"
                assert not text.endswith("."), f"{d.code}: final period in `{text}`"
        for text in (d.help, *d.notes):
            if text:
                assert not text.endswith("."), f"{d.code}: final period in `{text}`"
        assert d.span is not None, f"{d.code} has no span"


def test_every_optimiser_code_has_a_fixture_and_an_explanation() -> None:
    ours = {c for c in CODES if c.startswith("E07")}
    assert ours == {f"E07{n:02d}" for n in range(1, 12)}
    assert ours <= {code_of(c) for c in CASES}
    for code in ours:
        assert len(CODES[code].explanation) > 120, code


def test_data_file_errors_point_into_the_data_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """file:line:col of the offending cell, not of the carbon block."""
    _, diagnostics = render(HERE / "E0706-negative", monkeypatch)
    (d,) = [d for d in diagnostics if d.code == "E0706"]
    assert (d.span.file, d.span.line, d.span.column) == ("forecast.csv", 3, 33)
    _, diagnostics = render(HERE / "E0706-negative-json", monkeypatch)
    (d,) = [d for d in diagnostics if d.code == "E0706"]
    assert (d.span.file, d.span.line) == ("emissions.json", 5)
    assert d.span.column == len('    "Rating": ') + 1


def test_infeasible_names_every_blocking_constraint(monkeypatch: pytest.MonkeyPatch) -> None:
    _, diagnostics = render(HERE / "E0709-capacity-and-floor", monkeypatch)
    (d,) = [d for d in diagnostics if d.code == "E0709"]
    assert "capacity of pool `t.batch` in `eu-north-1`" in d.message
    assert "renewable floor of `t.grid`" in d.message
    assert "eu-west-1" not in d.message.split("renewable")[0]  # only the binding pool


def test_cli_plan_exit_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.chdir(HERE / "E0705-gap")
    result = runner.invoke(main, ["plan", "."], env={"NO_COLOR": "1"})
    assert result.exit_code == 1
    assert re.search(r"error\[E0705\]", result.output)
    assert "--> forecast.csv:4:" in result.output
