"""The system tests reuse the Envoy path canonicaliser of tests/compile/envoy_matcher.py."""

from __future__ import annotations

import sys
from pathlib import Path

_COMPILE = str(Path(__file__).resolve().parent.parent / "compile")
if _COMPILE not in sys.path:
    sys.path.append(_COMPILE)
