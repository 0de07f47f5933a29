"""The pure evaluator: IR in, decisions out, no files, no clocks it was not given, no host.

`prepare_project(ir)` prepares a whole IR project once (expressions to
closures, rules indexed, route tables, transforms, token-bucket specs) into
an immutable `PreparedProject`; everything else here evaluates against it.
It imports only `mcpdsl.ir`, `mcpdsl.source` and `mcpdsl.diagnostics`, so the
analyses (`mcpdsl.analysis` confirms every z3 witness with it) and the engine
host (`mcpdsl.engine`: sources, reload, watch, decision log) can both use it
without importing each other.  tests/test_layers.py holds it to that.

One module per concern:

| module | concern |
| --- | --- |
| `values` | JSON values, MISSING and ERROR, exact number comparison |
| `closures` | expressions compiled once to closures (fast path) |
| `interp` | the tree-walking evaluator and its reasons (explain, test oracle) |
| `policy` | indexed rules, `authorize`, `Decision` |
| `explain` | `Decision.explain()` |
| `scale` | the Kubernetes HPA v2 algorithm plus `during` windows |
| `route` | gateway routing and rewrites |
| `transform` | integration `map` blocks |
| `limits` | token buckets for `limit` clauses |
| `project` | `PreparedProject`, `prepare_project`: all of the above, prepared once |
| `testing` | running `test` blocks (`mcpdsl test`) with rule coverage |
| `target` | `split_target`: a request target to `request.path` and `request.query` |
| `checkrequest` | an Envoy/Istio CheckRequest to the canonical request (docs/runtime.md) |

This `__init__` imports nothing: `import mcpdsl.evaluate.values` loads only
what it needs, and the package has no facade cycle.  The host's facade,
`mcpdsl.engine`, re-exports the public names.  See docs/engine.md and
docs/architecture.md.
"""
