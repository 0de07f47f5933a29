"""`policies/` and `examples/`: no analysis error or warning (no false positives).

The infos they do produce are allow/deny overlaps (`A0104`), each true: the
witnesses are re-run through the engine.  Any other finding fails the test
until someone has read it (and fixed the tree or the analysis).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from analysis_support import REPO, check_style, check_witnesses, run
from repo_paths import example_trees

from mcpdsl.diagnostics import Severity
from mcpdsl.diagnostics.render import render_human

TREES = [REPO / "policies", *example_trees()]


@pytest.mark.parametrize("tree", TREES, ids=[t.name for t in TREES])
def test_no_false_positives(tree: Path) -> None:
    _, a = run(tree)
    for d in a.diagnostics:
        check_style(d)
        assert d.severity is Severity.INFO, f"{d.code} {d.span}: {d.message}"
        assert d.code == "A0104", f"{d.code} {d.span}: {d.message}"
        assert check_witnesses(d, a.project) >= 1
    assert a.unconfirmed == [], a.unconfirmed


@pytest.mark.parametrize("tree", TREES[:2], ids=[t.name for t in TREES[:2]])
def test_deterministic(tree: Path) -> None:
    """Same findings, same witnesses, same order, on every run (fresh solver contexts)."""
    outputs = []
    for _ in range(2):
        c, a = run(tree)
        outputs.append(render_human(a.diagnostics, c.sources))
    assert outputs[0] == outputs[1]
