"""The energy optimiser: pack each service's replicas onto the nodes of its pools.

Per region, at a load level (every service at its minimum, expected or maximum
replicas), CP-SAT places the replicas on nodes:

- capacity: the requests (cpu, memory, GPUs) on a node fit the node;
- tier: a service runs in its declared pool; a service without one may use
  any pool of its own tier (any pool when none has it) that exists in the region;
- spread: a service with two or more replicas runs on at least two nodes;
- energy, minimised: every active node draws `idle + utilisation × (peak − idle)`,
  where utilisation is the busiest of the node's cpu and GPUs, a replica keeping
  its requests busy at its HPA cpu target (50 % without one, the CCF average).

Before: the declared pools as they run today, at `max(declared minimum, nodes
first-fit needs)` nodes with the pods spread evenly.  After: the optimum.  The
recommended `nodes` range runs from the nodes needed at minimum replicas to
those needed at maximum replicas.  Reservations and quotas are not packed
(the reservations' balloon pods yield to the services they hold room for).

OR-Tools is imported only inside `pack`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mcpdsl.diagnostics import Diagnostic, make
from mcpdsl.ir import model as m
from mcpdsl.optimize.coefficients import DEFAULT_UTILISATION
from mcpdsl.optimize.schedule import SolverSettings
from mcpdsl.optimize.workloads import cpu_utilisation, footprint, pool_of, replicas

if TYPE_CHECKING:
    from ortools.sat.python import cp_model

LOADS = ("min", "expected", "max")


@dataclass(frozen=True)
class Item:
    service: str
    count: int
    request: tuple[int, int, int]  # millicores, MiB, GPUs per replica
    busy_cpu: float  # millicores kept busy per replica
    busy_gpu: float  # GPUs kept busy per replica
    pools: tuple[str, ...]  # candidate pools, preferred first


@dataclass(frozen=True)
class PoolShape:
    name: str
    capacity: tuple[int, int, int]
    idle: float  # W
    peak: float  # W
    cost: float  # USD per node-hour
    min_nodes: int
    max_nodes: int

    def watts(self, busy_cpu: float, busy_gpu: float) -> float:
        util = busy_cpu / self.capacity[0] if self.capacity[0] else 0.0
        if self.capacity[2]:
            util = max(util, busy_gpu / self.capacity[2])
        return self.idle + min(util, 1.0) * (self.peak - self.idle)


@dataclass(frozen=True)
class PoolResult:
    pool: str
    nodes: int
    watts: float
    cost: float  # USD per hour
    placement: tuple[tuple[str, tuple[int, ...]], ...] = ()  # service -> replicas per node


@dataclass(frozen=True)
class Packing:
    region: str
    load: str
    status: str  # "optimal" | "feasible" | "infeasible" | "unknown"
    before: tuple[PoolResult, ...]
    after: tuple[PoolResult, ...]
    seconds: float = 0.0
    problem: str = ""  # why it does not fit

    def total(self, which: str, field_name: str) -> float:
        return sum(getattr(r, field_name) for r in getattr(self, which))


@dataclass
class Recommendation:
    pool: str
    region: str
    declared: tuple[int, int]
    recommended: tuple[int, int] | None  # None when even max nodes do not hold the minimum
    expected_nodes: int | None


@dataclass
class PackingReport:
    packings: list[Packing] = field(default_factory=list)
    recommendations: list[Recommendation] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def shapes(project: m.Project) -> dict[str, PoolShape]:
    out = {}
    for pool in project.pools:
        node = pool.node
        idle = float(node.idle_watts) if node.idle_watts is not None else 0.0
        peak = float(node.peak_watts) if node.peak_watts is not None else idle
        out[pool.qualified] = PoolShape(
            pool.qualified,
            footprint(node.cpu, node.memory, node.gpu),
            idle,
            peak,
            float(node.cost_per_hour or 0),
            pool.min_nodes,
            pool.max_nodes,
        )
    return out


def items(project: m.Project, region: str, load: str) -> tuple[list[Item], list[str]]:
    """The services to pack in a region at a load level, and the ones with no pool to go to."""
    out, homeless = [], []
    for service in project.services:
        if service.regions and region not in service.regions:
            continue
        count = getattr(replicas(project, service), load)
        if count <= 0:
            continue
        pools = _candidates(project, service, region)
        if not pools:
            homeless.append(service.qualified)
            continue
        request = footprint(service.cpu, service.memory, service.gpu)
        util = float(cpu_utilisation(project, service))
        out.append(
            Item(
                service.qualified,
                count,
                request,
                request[0] * util,
                request[2] * float(DEFAULT_UTILISATION),
                tuple(pools),
            )
        )
    return out, homeless


def _candidates(project: m.Project, service: m.Service, region: str) -> list[str]:
    def here(pool: m.Pool) -> bool:
        return not pool.regions or region in pool.regions

    declared = pool_of(project, service.pool, service.package)
    if declared is not None:
        return [declared.qualified] if here(declared) else []
    if service.pool is not None or not project.pools:
        return []
    present = [p for p in project.pools if here(p) and (p.node.gpu >= service.gpu)]
    same_tier = [p for p in present if service.tier is not None and p.tier == service.tier]
    return [p.qualified for p in (same_tier or present)]


def regions(project: m.Project) -> list[str]:
    found: set[str] = set()
    for service in project.services:
        found.update(service.regions)
    for pool in project.pools:
        found.update(pool.regions)
    return sorted(found)


# ------------------------------------------------------------------ before


def first_fit(pool: PoolShape, entries: list[Item]) -> int | None:
    """Nodes first-fit decreasing needs (with spread), or None when `max_nodes` do not hold it."""
    pods = sorted(
        ((item.request, item.service) for item in entries for _ in range(item.count)),
        key=lambda p: (-p[0][2], -p[0][0], -p[0][1], p[1]),
    )
    counts = {item.service: item.count for item in entries}
    nodes: list[list[int]] = []
    per_node: list[dict[str, int]] = []
    for request, service in pods:
        for n, free in enumerate(nodes):
            same = per_node[n].get(service, 0)
            spread_ok = counts[service] < 2 or same + 1 <= counts[service] - 1
            if spread_ok and all(free[r] >= request[r] for r in range(3)):
                break
        else:
            if len(nodes) >= pool.max_nodes:
                return None
            nodes.append(list(pool.capacity))
            per_node.append({})
            n = len(nodes) - 1
            if not all(nodes[n][r] >= request[r] for r in range(3)):
                return None
        for r in range(3):
            nodes[n][r] -= request[r]
        per_node[n][service] = per_node[n].get(service, 0) + 1
    return len(nodes)


def before(shapes_: dict[str, PoolShape], entries: list[Item]) -> tuple[PoolResult, ...] | None:
    """Today's pools: every service in its first candidate pool, pods spread over the nodes."""
    by_pool: dict[str, list[Item]] = {}
    for item in entries:
        by_pool.setdefault(item.pools[0], []).append(item)
    out = []
    for name in sorted(by_pool):
        pool = shapes_[name]
        needed = first_fit(pool, by_pool[name])
        if needed is None:
            return None
        nodes = max(pool.min_nodes, needed)
        busy_cpu = sum(i.busy_cpu * i.count for i in by_pool[name])
        busy_gpu = sum(i.busy_gpu * i.count for i in by_pool[name])
        watts = nodes * pool.watts(busy_cpu / nodes, busy_gpu / nodes)
        out.append(PoolResult(name, nodes, watts, nodes * pool.cost))
    return tuple(out)


# ------------------------------------------------------------------ CP-SAT


def pack(
    shapes_: dict[str, PoolShape],
    entries: list[Item],
    settings: SolverSettings,
    *,
    region: str = "",
    load: str = "expected",
) -> Packing:
    """The least-energy placement of `entries` on the nodes of their candidate pools."""
    from ortools.sat.python import cp_model

    start = time.perf_counter()
    previous = before(shapes_, entries) or ()
    problem = _obvious_misfit(shapes_, entries)
    if problem:
        return Packing(
            region, load, "infeasible", previous, (), time.perf_counter() - start, problem
        )
    model = cp_model.CpModel()
    pools = sorted({p for item in entries for p in item.pools})
    x: dict[tuple[int, str, int], cp_model.IntVar] = {}
    active: dict[tuple[str, int], cp_model.IntVar] = {}
    util: dict[tuple[str, int], cp_model.IntVar] = {}
    objective: list[cp_model.LinearExpr] = []
    for name in pools:
        pool = shapes_[name]
        users = [i for i, item in enumerate(entries) if name in item.pools]
        limit = min(pool.max_nodes, sum(entries[i].count for i in users))
        for b in range(limit):
            on = model.new_bool_var(f"on_{name}_{b}")
            active[name, b] = on
            if b:
                model.add_implication(on, active[name, b - 1])  # symmetry: fill nodes in order
            u = model.new_int_var(0, 1000, f"u_{name}_{b}")
            util[name, b] = u
            model.add(u <= 1000 * on)
            for i in users:
                x[i, name, b] = model.new_int_var(0, entries[i].count, f"x{i}_{name}_{b}")
            for r in range(3):
                terms = [x[i, name, b] * entries[i].request[r] for i in users]
                model.add(sum(terms) <= pool.capacity[r] * on)
            if pool.capacity[0]:
                busy = [x[i, name, b] * round(entries[i].busy_cpu * 1000) for i in users]
                model.add(sum(busy) <= u * pool.capacity[0])
            if pool.capacity[2]:
                busy = [x[i, name, b] * round(entries[i].busy_gpu * 1000) for i in users]
                model.add(sum(busy) <= u * pool.capacity[2])
            objective.append(on * round(pool.idle * 1e6))
            objective.append(u * round((pool.peak - pool.idle) * 1000))
    for i, item in enumerate(entries):
        placed = [var for (j, _, _), var in x.items() if j == i]
        model.add(sum(placed) == item.count)
        if item.count >= 2:
            for var in placed:
                model.add(var <= item.count - 1)
    model.minimize(sum(objective))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = settings.workers
    solver.parameters.random_seed = settings.seed
    solver.parameters.max_time_in_seconds = min(settings.time_limit, 10.0)
    status = solver.solve(model)
    seconds = time.perf_counter() - start
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        why = (
            "no placement found in the time limit"
            if status == cp_model.UNKNOWN
            else (_misfit_text(shapes_, entries))
        )
        return Packing(region, load, "infeasible", previous, (), seconds, why)
    after = []
    for name in pools:
        pool = shapes_[name]
        used = [b for (p, b), on in active.items() if p == name and solver.boolean_value(on)]
        if not used:
            continue
        watts = 0.0
        placement = []
        for i, item in enumerate(entries):
            per_node = tuple(solver.value(x[i, name, b]) for b in used if (i, name, b) in x)
            if any(per_node):
                placement.append((item.service, per_node))
        for b in used:
            busy_cpu = sum(
                solver.value(x[i, name, b]) * e.busy_cpu
                for i, e in enumerate(entries)
                if (i, name, b) in x
            )
            busy_gpu = sum(
                solver.value(x[i, name, b]) * e.busy_gpu
                for i, e in enumerate(entries)
                if (i, name, b) in x
            )
            watts += pool.watts(busy_cpu, busy_gpu)
        after.append(PoolResult(name, len(used), watts, len(used) * pool.cost, tuple(placement)))
    state = "optimal" if status == cp_model.OPTIMAL else "feasible"
    return Packing(region, load, state, previous, tuple(after), seconds)


def _obvious_misfit(shapes_: dict[str, PoolShape], entries: list[Item]) -> str:
    for item in entries:
        fits = [
            p
            for p in item.pools
            if all(item.request[r] <= shapes_[p].capacity[r] for r in range(3))
            and (item.count < 2 or shapes_[p].max_nodes >= 2)
        ]
        if not fits:
            pool = shapes_[item.pools[0]]
            if pool.max_nodes < 2 <= item.count:
                return (
                    f"`{item.service}` needs its {item.count} replicas on at least 2 nodes, "
                    f"pool `{pool.name}` has at most {pool.max_nodes}"
                )
            return f"a replica of `{item.service}` is bigger than a node of pool `{pool.name}`"
    return ""


def _misfit_text(shapes_: dict[str, PoolShape], entries: list[Item]) -> str:
    by_pool: dict[str, list[int]] = {}
    for item in entries:
        need = by_pool.setdefault(item.pools[0], [0, 0, 0])
        for r in range(3):
            need[r] += item.request[r] * item.count
    parts = []
    for name, need in sorted(by_pool.items()):
        pool = shapes_[name]
        have = [c * pool.max_nodes for c in pool.capacity]
        over = [
            f"{label} {n / scale:g} of {h / scale:g}"
            for label, n, h, scale in zip(
                ("cpu", "memory Gi", "gpu"), need, have, (1000, 1024, 1), strict=True
            )
            if n > h
        ]
        if over:
            parts.append(f"pool `{name}` at {pool.max_nodes} nodes: {', '.join(over)}")
    return "; ".join(parts) or "capacity and spread cannot be met together"


# ------------------------------------------------------------------ the whole tree


def optimise(project: m.Project, settings: SolverSettings | None = None) -> PackingReport:
    """Pack every region at min, expected and max load; recommend `nodes` ranges."""
    settings = settings or SolverSettings(time_limit=10.0)
    report = PackingReport()
    if not project.pools:
        return report
    shapes_ = shapes(project)
    cache: dict[tuple[object, ...], Packing] = {}
    spans = {p.qualified: p.span for p in project.pools}
    for region in regions(project):
        results: dict[str, Packing] = {}
        failed = False  # report the lowest load that does not fit, once per region
        for load in LOADS:
            entries, homeless = items(project, region, load)
            if load == "expected":
                for name in homeless:
                    report.notes.append(f"`{name}` in `{region}`: no pool of its tier; not packed")
            if not entries:
                continue
            key = (load, tuple(entries))
            if key not in cache:
                cache[key] = pack(shapes_, entries, settings, region=region, load=load)
            packing = cache[key]
            packing = Packing(
                region,
                load,
                packing.status,
                packing.before,
                packing.after,
                packing.seconds,
                packing.problem,
            )
            results[load] = packing
            if load != "max":
                report.packings.append(packing)
            if packing.status == "infeasible" and load != "max" and not failed:
                failed = True
                pools = sorted({p for e in entries for p in e.pools[:1]})
                report.diagnostics.append(
                    make(
                        "E0711",
                        f"the services in `{region}` do not fit their pools at {load} replicas: "
                        f"{packing.problem}",
                        spans.get(pools[0]) if pools else None,
                        help="add nodes (`nodes`), use bigger nodes, or lower the replicas",
                    )
                )
        _recommend(project, region, results, report)
    return report


def _nodes(packing: Packing | None, pool: str) -> int | None:
    """Nodes of `pool` in a packing: 0 without one, None when it does not fit."""
    if packing is None:
        return 0
    if packing.status == "infeasible":
        return None
    return sum(r.nodes for r in packing.after if r.pool == pool)


def _recommend(
    project: m.Project, region: str, results: dict[str, Packing], report: PackingReport
) -> None:
    for pool in project.pools:
        if pool.regions and region not in pool.regions:
            continue

        low, expected, high = (_nodes(results.get(load), pool.qualified) for load in LOADS)
        if low == expected == high == 0:
            continue
        recommended = None
        if low is not None:
            top = high if high is not None else pool.max_nodes
            recommended = (max(low, 1), max(top, low, 1))
        report.recommendations.append(
            Recommendation(
                pool.qualified, region, (pool.min_nodes, pool.max_nodes), recommended, expected
            )
        )
        if high is None:
            report.notes.append(
                f"pool `{pool.qualified}` in `{region}`: the services' maximum replicas "
                f"do not fit {pool.max_nodes} nodes"
            )
