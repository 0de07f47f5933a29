"""`mcpdsl.pipeline`'s docstring states the stage order; it must be the order that runs."""

from __future__ import annotations

import re

from mcpdsl import pipeline


def test_the_docstring_lists_the_stages_in_order() -> None:
    doc = pipeline.__doc__ or ""
    match = re.search(r"STAGES = \(([^)]*)\)", doc)
    assert match is not None, "the module docstring no longer shows `STAGES = (...)`"
    documented = tuple(name.strip() for name in match.group(1).split(","))
    assert documented == tuple(name for name, _ in pipeline.STAGES)
    assert all(getattr(pipeline, name) is stage for name, stage in pipeline.STAGES)
