"""Paths the tests share, as a plain module.

Test files import these from here rather than from `conftest`: several test
directories have a `conftest.py`, and `from conftest import ...` would bind to
whichever of them was imported first.
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent
