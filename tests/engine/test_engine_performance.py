"""A smoke check of the performance design (benchmarks/engine.py has the real numbers).

Bounds are loose (CI machines are shared and noisy): the engine's targets are
p50 <= 10 us at 1,000 rules and at most 2x growth from 10 to 10,000 rules.
"""

from __future__ import annotations

import importlib.util
import random
import statistics
import time
from pathlib import Path
from typing import Any

from engine_support import REPO

from mcpdsl.engine import Engine


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_engine", REPO / "benchmarks" / "engine.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _p50(engine: Engine, reqs: list[dict[str, Any]]) -> float:
    best = float("inf")
    clock = time.perf_counter_ns
    for _ in range(5):
        samples = []
        for r in reqs:
            t0 = clock()
            engine.authorize(r)
            samples.append(clock() - t0)
        best = min(best, statistics.median(samples) / 1000)
    return best


def test_authorize_is_fast_and_flat(tmp_path: Path) -> None:
    bench = _bench()
    p50 = {}
    for n in (10, 1000):
        tree = tmp_path / f"n{n}"
        tree.mkdir()
        bench.write_tree(tree, n)
        engine = Engine.load(tree)
        rnd = random.Random(1)
        reqs = [bench.make_request(rnd, rnd.randrange(10)) for _ in range(1000)]
        p50[n] = _p50(engine, reqs)
    assert p50[1000] < 30, p50  # target 10 us
    assert p50[1000] < 3 * p50[10], p50  # target: flat (hot requests)
