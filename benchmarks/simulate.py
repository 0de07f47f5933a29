"""Simulation benchmark: `mcpdsl simulate` step loop, one week at 15 s steps.

    python benchmarks/simulate.py

Prints a markdown table (wall clock on this machine, trace loading included,
the job scheduler's OR-Tools plan excluded):

- `policies/` (7 services, 2 pools) under a synthetic diurnal week (goal < 5 s);
- 100 generated services in 5 pools under the same week (goal < 60 s).

The traces are generated here with a fixed seed (15-minute points, held).
"""

from __future__ import annotations

import math
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mcpdsl  # noqa: E402
from mcpdsl.simulate import run  # noqa: E402

WEEK = 7 * 86400


def week_trace(path: Path, base: dict[str, float], seed: int = 1) -> None:
    rng = random.Random(seed)
    lines = ["time,service,metric,value"]
    for t in range(0, WEEK, 900):
        day = math.sin((t % 86400) / 86400 * 2 * math.pi - math.pi / 2) * 0.5 + 0.6
        for name, b in sorted(base.items()):
            lines.append(f"{t},{name},rps,{b * day * (1 + 0.1 * rng.random()):.2f}")
    path.write_text("\n".join(lines) + "\n")


def synthetic_tree(root: Path, services: int = 100, pools: int = 5) -> dict[str, float]:
    root.mkdir(parents=True, exist_ok=True)
    parts = ["package bench"]
    for p in range(pools):
        parts.append(
            f"pool p{p} {{ node {{ cpu 32, memory 128Gi, idle 60W, peak 200W, cost $1.5/h }}"
            f" nodes 2..40 }}"
        )
    base = {}
    for i in range(services):
        parts.append(
            f'service s{i} {{ image "x:1" port 80 cpu 500m memory 1Gi namespace "n{i % 10}"'
            f" pool p{i % pools} }}\n"
            f"scale s{i} {{ replicas 2..30 target cpu 70%\n"
            f"  up by 100% every 15s stabilize 0s down by 10% every 60s stabilize 5m }}"
        )
        base[f"s{i}"] = 50.0 + 5 * (i % 20)
    (root / "main.mcp").write_text("\n".join(parts) + "\n")
    return base


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        seed_trace = tmpdir / "seed.csv"
        week_trace(
            seed_trace,
            {"api-gateway": 300, "mcp-api": 900, "agent-runtime": 40, "tool-runner": 200,
             "embedder": 150},
        )  # fmt: skip
        project = mcpdsl.load(str(ROOT / "policies"))
        clock = time.perf_counter()
        out = run(project, seed_trace, jobs=False)
        rows.append(
            ("policies/, 1 week at 15 s", out.result.raw.steps, time.perf_counter() - clock, 5)
        )
        base = synthetic_tree(tmpdir / "synthetic")
        big = tmpdir / "big.csv"
        week_trace(big, base)
        project = mcpdsl.load(str(tmpdir / "synthetic"))
        clock = time.perf_counter()
        out = run(project, big, jobs=False)
        rows.append(
            ("100 services, 1 week at 15 s", out.result.raw.steps, time.perf_counter() - clock, 60)
        )
    print("| case | steps | seconds | goal |")
    print("| --- | ---: | ---: | ---: |")
    for name, steps, seconds, goal in rows:
        print(f"| {name} | {steps} | {seconds:.2f} | < {goal} s |")


if __name__ == "__main__":
    main()
