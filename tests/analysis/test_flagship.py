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


def test_the_carbon_analysis_reads_a_commented_forecast() -> None:
    """`examples/carbon-forecast`'s CSV opens with `#` comments, as the loader allows.

    The analysis reads the forecast with the optimiser's loader, so it proves the
    budget against the cleanest forecast hour instead of skipping the block.
    """
    from mcpdsl.analysis.carbon import forecast_minimum

    c, _ = run(REPO / "examples" / "carbon-forecast")
    carbon = next(b for b in c.project.carbons if b.intensity_file is not None)
    assert (
        (REPO / "examples" / "carbon-forecast" / carbon.intensity_file).read_text().startswith("#")
    )
    cleanest = forecast_minimum(c.project, carbon)
    assert cleanest is not None
    assert set(cleanest) == {r.region for r in carbon.regions}
    assert all(value > 0 for value in cleanest.values())
