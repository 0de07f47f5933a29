"""The in-process evaluator: `Engine.load(path)` then authorize / scale / route / transform / admit.

One module per concern:

| module | concern |
| --- | --- |
| `values` | JSON values, MISSING and ERROR, exact number comparison |
| `compile_expr` | expressions compiled once to closures (fast path) |
| `interp` | the tree-walking evaluator and its reasons (explain, test oracle) |
| `policy` | indexed rules, `authorize`, `Decision` |
| `explain` | `Decision.explain()` |
| `scale` | the Kubernetes HPA v2 algorithm plus `during` windows |
| `route` | gateway routing and rewrites |
| `transform` | integration `map` blocks |
| `limits` | token buckets for `limit` clauses |
| `decision_log` | JSON-lines decision logs with masking |
| `testing` | running `test` blocks (`mcpdsl test`) with rule coverage |
| `engine` | the `Engine` facade |
| `reload` | sources (trees, signed builds), `reload()`, `Engine.watch` |

See docs/engine.md.
"""

from __future__ import annotations

from mcpdsl.engine.engine import CompiledProject, Engine, compile_project
from mcpdsl.engine.limits import TokenBucket
from mcpdsl.engine.policy import Decision
from mcpdsl.engine.reload import BundleError, EngineWatch, Reload
from mcpdsl.engine.route import RouteDecision
from mcpdsl.engine.scale import ScaleDecision, ScaleError
from mcpdsl.engine.transform import TransformError
from mcpdsl.engine.values import ERROR, MISSING

__all__ = [
    "ERROR",
    "MISSING",
    "BundleError",
    "CompiledProject",
    "Decision",
    "Engine",
    "EngineWatch",
    "Reload",
    "RouteDecision",
    "ScaleDecision",
    "ScaleError",
    "TokenBucket",
    "TransformError",
    "compile_project",
]
