"""The documentation site builds, and its navigation lists every page.

README tells a reader to run `mkdocs serve` and says CI runs `mkdocs build
--strict`; with `omitted_files: warn` a page added to `docs/` but not to the
`nav` of `mkdocs.yml` aborts that build.  Pages were added that way once
(editors, sources, architecture), so both the cheap check and the real build
run here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from repo_paths import REPO


def _pages(nav: Any) -> set[str]:
    """Every markdown file named anywhere in a (nested) mkdocs `nav`."""
    if isinstance(nav, str):
        return {nav} if nav.endswith(".md") else set()
    if isinstance(nav, dict):
        return set().union(*(_pages(value) for value in nav.values()))
    if isinstance(nav, list):
        return set().union(*(_pages(item) for item in nav))
    return set()


def test_the_navigation_lists_every_page() -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = _pages(config["nav"])
    on_disk = {page.name for page in (REPO / "docs").glob("*.md")}
    assert on_disk - listed == set(), "pages missing from the nav of mkdocs.yml"
    assert listed - on_disk == set(), "nav entries without a page"


def test_mkdocs_build_strict_succeeds(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the test extra installs MkDocs")
    pytest.importorskip("material", reason="the test extra installs the Material theme")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "editors" / "index.html").is_file()
