"""Build benchmark: `mcpdsl build` of policies/ and of a generated large tree.

    python benchmarks/build.py

The generated tree has 1,000 services (each with a `scale` block) and 10,000
rules over 100 files, plus a gateway routing to 50 of the services.  Prints a
markdown table: total and per-stage seconds, best of two runs.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def generate(root: Path, services: int = 1000, files: int = 100, rules_per_file: int = 100) -> None:
    names = [f"svc-{i}" for i in range(services)]
    parts = ["package bench\n"]
    for s in names:
        parts.append(
            f'service {s} {{\n  image "ghcr.io/bench/{s}:1"\n  port 8080\n  cpu 250m\n'
            f'  memory 256Mi\n  identity "spiffe://bench.local/ns/bench/sa/{s}"\n}}\n'
            f"scale {s} {{\n  replicas 2..10\n  target cpu 70%\n}}\n"
        )
    (root / "services.mcp").write_text("\n".join(parts))
    routes = "\n".join(
        f'  route "/s{i}/**" -> service svc-{i} rewrite "/" timeout 5s' for i in range(50)
    )
    balances = "\n".join(
        f'balance svc-{i} {{\n  strategy least-request\n  health http "/healthz" every 5s '
        f"timeout 1s healthy 2 unhealthy 3\n}}"
        for i in range(50)
    )
    (root / "gateway.mcp").write_text(
        f"package bench\n\ngateway edge {{\n  listen 8443\n{routes}\n}}\n\n{balances}\n"
    )
    for f in range(files):
        lines = ["package bench", "", f"policy p{f} {{", "  default deny"]
        for r in range(rules_per_file):
            src, dst = names[(f * 13 + r) % services], names[(f * 7 + r * 3) % services]
            effect = "deny" if r % 10 == 0 else "allow"
            lines.append(
                f"  r{r}: {effect} service {src} -> service {dst}"
                f' on GET, POST "/v{r % 3}/items/**"'
                f' when request.auth.mfa and context.tenant == "t{r}"'
            )
        lines.append("}")
        (root / f"policy_{f:03d}.mcp").write_text("\n".join(lines) + "\n")


def timed_build(tree: Path, out: Path) -> tuple[float, dict[str, float], int]:
    from mcpdsl.builder.artifacts import build

    start = time.perf_counter()
    # The compile and write path only, as before `build` ran the analyses
    # (benchmarks/analysis.py times those).
    result = build(tree, out, analyze=False)
    return time.perf_counter() - start, result.timings, len(result.artifacts)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        timed_build(ROOT / "policies", base / "warm")  # parser cache, lazy imports
        best = min(
            (timed_build(ROOT / "policies", base / f"p{i}") for i in range(3)),
            key=lambda r: r[0],
        )
        rows.append((f"build policies/ ({best[2]} artifacts)", best[0], "< 1 s"))
        tree = base / "big"
        tree.mkdir()
        generate(tree)
        big = min((timed_build(tree, base / f"b{i}") for i in range(2)), key=lambda r: r[0])
        rows.append((f"build 1,000 services + 10,000 rules ({big[2]} artifacts)", big[0], "< 10 s"))
        for stage, seconds in big[1].items():
            rows.append((f"  stage `{stage}`", seconds, ""))
    print("| measurement | seconds | target |")
    print("| --- | ---: | ---: |")
    for name, seconds, target in rows:
        print(f"| {name} | {seconds:.2f} | {target} |")


if __name__ == "__main__":
    main()
