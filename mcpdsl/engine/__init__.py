"""The embedded engine: `Engine.load(path)` then authorize / scale / route / transform / admit.

The evaluation itself is `mcpdsl.evaluate` (pure: IR in, decisions out);
this package is its host: where the policy comes from, swapping it, and
recording what was decided.

| module | concern |
| --- | --- |
| `engine` | the `Engine` facade: one prepared project, swapped atomically |
| `reload` | sources (trees, signed builds), `reload()`, `Engine.watch` |
| `decision_log` | JSON-lines decision logs with masking |

The evaluator's public names are re-exported here, as they were when it lived
in this package (`CompiledProject` / `compile_project` are the old names of
`PreparedProject` / `prepare_project`).  See docs/engine.md and docs/architecture.md.
"""

from __future__ import annotations

from mcpdsl.engine.engine import Engine
from mcpdsl.engine.reload import BundleError, EngineWatch, Reload
from mcpdsl.evaluate.limits import TokenBucket
from mcpdsl.evaluate.policy import Decision
from mcpdsl.evaluate.project import PreparedProject, prepare_project
from mcpdsl.evaluate.route import RouteDecision
from mcpdsl.evaluate.scale import ScaleDecision, ScaleError
from mcpdsl.evaluate.transform import TransformError
from mcpdsl.evaluate.values import ERROR, MISSING

#: The names of `PreparedProject` / `prepare_project` before the evaluator left
#: this package ("compile" now means the targets only); kept for callers.
CompiledProject = PreparedProject
compile_project = prepare_project

__all__ = [
    "ERROR",
    "MISSING",
    "BundleError",
    "CompiledProject",
    "Decision",
    "Engine",
    "EngineWatch",
    "PreparedProject",
    "Reload",
    "RouteDecision",
    "ScaleDecision",
    "ScaleError",
    "TokenBucket",
    "TransformError",
    "compile_project",
    "prepare_project",
]
