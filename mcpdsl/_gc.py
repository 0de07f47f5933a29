"""Pausing the cyclic garbage collector while long-lived, acyclic objects are built.

Two places build many objects and no cyclic garbage: a command importing its
modules (classes, functions, pydantic's field tables; `mcpdsl.cli`) and the
front end's stages (tokens, trees, IR nodes; `mcpdsl.pipeline`).  The
generational collections triggered meanwhile scan that growing heap over and
over, about a sixth of a warm `check --no-analyze`'s CPU time and as much as
parsing itself (docs/performance.md).  A leaf module so that both, and the
CLI's start-up, can use it without importing anything else.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector for the block; the previous state is restored afterwards.

    Nothing built inside is cyclic garbage, so the pause frees nothing late, and
    long-running commands (`serve`, `watch`, `lsp`) collect as usual after it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
