"""Building: a policy tree to artifacts on disk, once (`artifacts`) or on every change (`watch`).

| module | concern |
| --- | --- |
| `artifacts` | compile every target, `manifest.json`, `ir/project.json`, atomic writes |
| `watch` | `mcpdsl watch`: debounced rebuilds that keep the last good build |

Why `builder` and not `build`: `mcpdsl.build(...)` is the public function of
the facade (`mcpdsl/__init__.py`), and importing a submodule `mcpdsl.build`
would bind that attribute of the `mcpdsl` package to the module, replacing
the function (tests/test_layers.py checks that it stays callable).
"""

from __future__ import annotations

from mcpdsl.builder.artifacts import (
    IR_ARTIFACT,
    BuildResult,
    build,
    compile_artifacts,
    ir_artifact,
    manifest,
    server_artifact,
    write_atomically,
    write_result,
)

__all__ = [
    "IR_ARTIFACT",
    "BuildResult",
    "build",
    "compile_artifacts",
    "ir_artifact",
    "manifest",
    "server_artifact",
    "write_atomically",
    "write_result",
]
