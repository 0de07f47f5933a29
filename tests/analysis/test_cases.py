"""The planted-defect corpus: one tiny tree per case under `cases/`, expected findings as data.

Each `cases/<CODE>-<slug>/` holds `tree.mcp` and `expected.txt`, one line
`CODE FILE:LINE` per analysis finding (the whole set must match, so a case
also proves the absence of false positives in its tree; `none-*` cases
expect nothing).  Every witness a finding prints is re-run through the
engine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from analysis_support import CASES_DIR, check_style, check_witnesses, located, run

from mcpdsl.diagnostics import CODES

CASES = sorted(p for p in CASES_DIR.iterdir() if p.is_dir())


def expected(case: Path) -> list[str]:
    return sorted(
        line.strip() for line in (case / "expected.txt").read_text().splitlines() if line.strip()
    )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Path) -> None:
    _, a = run(case)
    got = sorted(located(d) for d in a.diagnostics)
    assert got == expected(case)
    code = case.name.split("-", 1)[0]
    if code != "none":
        assert code in {d.code for d in a.diagnostics}
    for d in a.diagnostics:
        check_style(d)
        check_witnesses(d, a.project)
    assert a.unconfirmed == [], a.unconfirmed


def test_the_corpus_covers_every_finding_code() -> None:
    analysis_codes = {c for c in CODES if c.startswith("A")} - {"A0199"}  # A0199: test_limits
    planted = {c.name.split("-", 1)[0] for c in CASES}
    assert analysis_codes <= planted, sorted(analysis_codes - planted)
    assert sum(1 for c in CASES if not c.name.startswith("none")) >= 25


def test_request_findings_carry_confirmed_witnesses() -> None:
    """Findings about requests print at least one witness, and every one is confirmed."""
    checked = 0
    for case in CASES:
        _, a = run(case)
        for d in a.diagnostics:
            n = check_witnesses(d, a.project)
            if d.code in ("A0102", "A0103", "A0104", "A0107", "A0110", "A0120"):
                assert n >= 1, f"{case.name}: {d.code} without a witness"
            checked += n
    assert checked >= 15
