"""`mcpdsl build` refuses what `mcpdsl check` refuses: analysis errors stop the build.

A user who runs only `build` in CI must not ship an over-committed pool; the
z3 analyses run first, and `--no-analyze` (or `analyze=False`) skips them
explicitly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from repo_paths import REPO

import mcpdsl
from mcpdsl.cli import main

# Two reservations that do not fit the pool at its minimum: error A0133 (analysis only).
OVERCOMMITTED = REPO / "tests" / "analysis" / "cases" / "A0133-reservations-at-minimum"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(OVERCOMMITTED / "tree.mcp", tree / "tree.mcp")
    return tree


def test_build_refuses_an_over_committed_pool(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", str(tree), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "error[A0133]" in result.output
    assert "build failed" in result.output
    assert not out.exists()


def test_no_analyze_builds_it_anyway(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", str(tree), "--out", str(out), "--no-analyze"])
    assert result.exit_code == 0, result.output
    assert (out / "manifest.json").is_file()


def test_the_python_api_gates_the_same_way(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(mcpdsl.CompileError) as caught:
        mcpdsl.build(tree, out=tmp_path / "out")
    assert "A0133" in {d.code for d in caught.value.diagnostics}
    assert not (tmp_path / "out").exists()
    result = mcpdsl.build(tree, out=tmp_path / "out", analyze=False)
    assert (result.out / "manifest.json").is_file()


def test_analysis_warnings_do_not_stop_the_build(tmp_path: Path) -> None:
    tree = REPO / "tests" / "analysis" / "cases" / "A0130-pool-too-small"
    result = CliRunner().invoke(main, ["build", str(tree), "--out", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 0, result.output
    assert "warning[A0130]" in result.output
