"""The pool packer against brute force; tier and spread; the flagship's recommendations."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

import mcpdsl
from mcpdsl.optimize.packing import Item, PoolShape, before, first_fit, optimise, pack
from mcpdsl.optimize.schedule import SolverSettings

SETTINGS = SolverSettings(time_limit=10.0)
REPO = Path(__file__).resolve().parents[2]


def brute_force(pool: PoolShape, items: list[Item]) -> float | None:
    """Least watts over every assignment of replicas to nodes (None when nothing fits)."""
    replicas = [(i, item) for i, item in enumerate(items) for _ in range(item.count)]
    best = None
    for nodes in itertools.product(range(pool.max_nodes), repeat=len(replicas)):
        load: dict[int, list[float]] = {}
        per_node: dict[tuple[int, int], int] = {}
        ok = True
        for (i, item), node in zip(replicas, nodes, strict=True):
            used = load.setdefault(node, [0, 0, 0, 0.0, 0.0])
            for r in range(3):
                used[r] += item.request[r]
            used[3] += item.busy_cpu
            used[4] += item.busy_gpu
            per_node[i, node] = per_node.get((i, node), 0) + 1
            if any(used[r] > pool.capacity[r] for r in range(3)):
                ok = False
                break
        if not ok:
            continue
        if any(
            c >= 2 and per_node.get((i, n), 0) == c
            for i, it in enumerate(items)
            for n in range(pool.max_nodes)
            for c in [it.count]
        ):
            continue  # spread: two or more replicas on at least two nodes
        watts = sum(pool.watts(u[3], u[4]) for u in load.values())
        if best is None or watts < best:
            best = watts
    return best


def random_case(rng: random.Random) -> tuple[PoolShape, list[Item]]:
    gpu = rng.random() < 0.4
    pool = PoolShape(
        "p",
        (8000, 32768, 2 if gpu else 0),
        idle=float(rng.randint(20, 80)),
        peak=float(rng.randint(120, 400)),
        cost=1.0,
        min_nodes=1,
        max_nodes=rng.randint(2, 3),
    )
    items = []
    for s in range(rng.randint(1, 3)):
        cpu = rng.choice([500, 1000, 2000, 4000])
        util = rng.choice([0.5, 0.7])
        need_gpu = 1 if gpu and rng.random() < 0.5 else 0
        items.append(
            Item(
                f"s{s}",
                rng.randint(1, 3),
                (cpu, rng.choice([1024, 4096, 8192]), need_gpu),
                cpu * util,
                need_gpu * 0.5,
                ("p",),
            )
        )
    return pool, items


@pytest.mark.parametrize("seed", range(25))
def test_small_packings_match_brute_force(seed: int) -> None:
    pool, items = random_case(random.Random(seed))
    expected = brute_force(pool, items)
    packing = pack({"p": pool}, items, SETTINGS)
    if expected is None:
        assert packing.status == "infeasible" and packing.problem
        return
    assert packing.status == "optimal"
    got = packing.total("after", "watts")
    nodes = packing.total("after", "nodes")
    # the model rounds utilisation up to 0.1 %
    assert expected - 1e-6 <= got <= expected + nodes * 0.001 * (pool.peak - pool.idle) + 1e-6
    for service, per_node in packing.after[0].placement:
        count = next(i.count for i in items if i.service == service)
        assert sum(per_node) == count
        if count >= 2:
            assert max(per_node) < count, "spread over at least two nodes"


def test_spread_needs_two_nodes() -> None:
    pool = PoolShape("p", (16000, 65536, 0), 40.0, 200.0, 1.0, 1, 1)
    item = Item("api", 2, (1000, 1024, 0), 500.0, 0.0, ("p",))
    packing = pack({"p": pool}, [item], SETTINGS)
    assert packing.status == "infeasible"
    assert "at least 2 nodes" in packing.problem


def test_before_is_the_declared_minimum_spread_evenly() -> None:
    pool = PoolShape("p", (16000, 65536, 0), 40.0, 200.0, 0.5, 4, 12)
    items = [Item("api", 4, (2000, 2048, 0), 1000.0, 0.0, ("p",))]
    assert first_fit(pool, items) == 2
    (result,) = before({"p": pool}, items) or ()
    assert result.nodes == 4
    assert result.watts == pytest.approx(4 * 40 + (200 - 40) * 4000 / 16000)
    after = pack({"p": pool}, items, SETTINGS)
    assert after.total("after", "nodes") == 2
    assert after.total("after", "watts") < result.watts


def test_flagship_recommendations() -> None:
    project = mcpdsl.load(REPO / "policies")
    report = optimise(project, SETTINGS)
    assert not report.diagnostics
    by = {(r.pool, r.region): r for r in report.recommendations}
    standard = by["platform.standard", "eu-north-1"]
    assert standard.declared == (4, 12)
    assert standard.recommended is not None
    low, high = standard.recommended
    assert 1 <= low <= standard.expected_nodes <= high <= 12  # type: ignore[operator]
    for packing in report.packings:
        assert packing.status == "optimal"
        assert packing.total("after", "watts") <= packing.total("before", "watts") + 1e-6
