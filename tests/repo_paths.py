"""Paths the tests share, as a plain module.

Test files import these from here rather than from `conftest`: several test
directories have a `conftest.py`, and `from conftest import ...` would bind to
whichever of them was imported first.
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent


def example_trees() -> list[Path]:
    """The policy trees under examples/, sorted: folders holding `.mcp` sources.

    Some example folders are data, not trees (examples/simulate holds load traces).
    """
    return sorted(p for p in (REPO / "examples").iterdir() if p.is_dir() and any(p.rglob("*.mcp")))
