"""Front-end benchmark: parse + lower + resolve + typecheck on a large generated tree.

    python benchmarks/frontend.py

Prints a markdown table.  The generated tree has 100 files with 100 rules each
(10,000 rules) plus the services they name; the numbers are wall-clock on the
machine it runs on, best of three.  The process wall time of `mcpdsl check` on
`policies/` (start-up) is measured by benchmarks/startup.py.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def generate(root: Path, files: int = 100, rules_per_file: int = 100) -> int:
    services = [f"svc-{i}" for i in range(50)]
    (root / "services.mcp").write_text(
        "package bench\n\n"
        + "\n".join(
            f'service {s} {{\n  image "ghcr.io/bench/{s}:1"\n  port 8080\n  stateful\n}}\n'
            for s in services
        )
    )
    count = 0
    for f in range(files):
        lines = ["package bench", "", f"policy p{f} {{", "  default deny"]
        for r in range(rules_per_file):
            src, dst = services[(f + r) % 50], services[(f * 7 + r) % 50]
            effect = "deny" if r % 10 == 0 else "allow"
            lines.append(
                f"  r{r}: {effect} service {src} -> service {dst}\n"
                f'    on GET, POST "/v{r % 3}/items/**"\n'
                f'    when request.auth.mfa and context.tenant == "t{r}" and risk < 0.{r % 9 + 1}'
            )
            count += 1
        lines.append("  risk {\n    0.4 when not context.device.managed\n  }")
        lines.append("}")
        (root / f"policy_{f:03d}.mcp").write_text("\n".join(lines) + "\n")
    return count


def best_of(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from mcpdsl.pipeline import compile_tree

    rows: list[tuple[str, float, float | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rules = generate(Path(tmp))
        compile_tree(tmp)  # warm the parser cache
        stages: dict[str, float] = {}

        def run() -> None:
            c = compile_tree(tmp)
            assert not c.has_errors, c.diagnostics[:3]
            stages.update(c.timings)

        total = best_of(3, run)
        rows.append((f"front end, {rules:,} rules in 100 files", total, 3.0))
        for stage, seconds in stages.items():
            rows.append((f"  stage `{stage}`", seconds, None))
    print("| measurement | seconds | target |")
    print("| --- | ---: | ---: |")
    for name, seconds, target in rows:
        goal = f"< {target:g} s" if target else ""
        print(f"| {name} | {seconds:.3f} | {goal} |")


if __name__ == "__main__":
    main()
