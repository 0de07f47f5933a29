"""Which pods a team quota governs and what it allows in each namespace: the one mapping.

A `quota team "T" { ... }` of pool P means: the pods of team T's workloads
placed in P may together request at most that much.  Kubernetes cannot say
this directly: a ResourceQuota lives in one namespace and caps every pod of
that namespace it matches.  What it *can* match on is the pod's PriorityClass
(`scopeSelector`), and the Kubernetes target gives every pool its own class,
so a quota scoped to P's class counts exactly the pods placed in P.

So the mapping, used by the Kubernetes target (which emits it) and by the
capacity analysis (which checks it), is:

1. **Members.**  A service or job belongs to team T when it declares
   `team "T"` (for a service, `labels { team: "T" }` also works).  Its pods
   count against T's quota of the pool it declares (`pool`).  A workload
   without `pool` is governed by no quota.
2. **Split.**  T's quota of P is split over the namespaces its members in P
   run in, per resource, in proportion to the members' maximum demand there
   (largest remainder on whole units: millicores, bytes or MiB, GPUs).  So
   each namespace gets at least its members' demand whenever the team as a
   whole fits, and the shares add up to exactly the declared quota.  A
   resource nobody demands is split evenly.  A quota without members goes
   nowhere (the target says so, B0116).
3. **One ResourceQuota per (namespace, pool).**  Kubernetes enforces every
   quota of a namespace at once, so two teams sharing a namespace and a
   pool get one object whose cap is the sum of their shares (uncapped if one
   of them leaves the resource uncapped), and it counts *every* pod of that
   namespace placed in P, with or without a team.  The analysis checks that
   sum against all of those pods (A0134).

"Maximum demand" is the most pods a workload can run at once times its
requests: a service's `scale` maximum (and every `during` maximum), else its
`replicas`, else 1; a job runs one pod at a time (its CronJob forbids
overlap).  cpu is counted in millicores rounded up, as the pods request it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from mcpdsl.ir import model as m

DIMENSIONS: tuple[str, ...] = ("cpu", "memory", "gpu")
MI = 2**20


@dataclass(frozen=True, order=True)
class Amounts:
    """cpu in millicores, memory in bytes, GPUs; None = not capped (limits only)."""

    cpu: int | None = 0
    memory: int | None = 0
    gpu: int | None = 0

    def get(self, dim: str) -> int | None:
        value: int | None = getattr(self, dim)
        return value


@dataclass(frozen=True)
class Workload:
    """A service or job whose pods a pool-scoped quota counts."""

    kind: Literal["service", "job"]
    qualified: str
    namespace: str
    pool: str  # the pool's qualified name
    team: str | None
    pods: int  # at most at once
    each: Amounts

    def total(self, dim: str) -> int:
        return self.pods * (self.each.get(dim) or 0)


@dataclass(frozen=True)
class Share:
    """The part of one team quota (`pool.quotas[position]`) placed in one namespace."""

    pool: str
    position: int
    team: str
    namespace: str
    hard: Amounts


@dataclass(frozen=True)
class ScopedQuota:
    """One ResourceQuota: the pods of `namespace` placed in `pool`, capped at `hard`."""

    namespace: str
    pool: str
    hard: Amounts
    shares: tuple[Share, ...]
    workloads: tuple[Workload, ...]

    def demand(self, dim: str) -> int:
        return sum(w.total(dim) for w in self.workloads)


@dataclass(frozen=True)
class Unplaced:
    """A team quota no workload of the tree falls under."""

    pool: str
    position: int
    team: str


@dataclass(frozen=True)
class QuotaPlan:
    scoped: tuple[ScopedQuota, ...]
    unplaced: tuple[Unplaced, ...]


def team_of(decl: m.Service | m.Job) -> str | None:
    """The team that owns a workload (lowering already folds `labels.team` into it)."""
    return decl.team


def max_pods(service: m.Service, scale: m.Scale | None) -> int:
    """The most pods a service runs at once (see the module docstring)."""
    if scale is None:
        return service.replicas if service.replicas is not None else 1
    return max([scale.max_replicas] + [d.max_replicas for d in scale.during if d.max_replicas])


def millicores(cores: Decimal | None) -> int:
    return math.ceil((cores or Decimal(0)) * 1000)


def quota_amounts(res: m.Resources) -> Amounts:
    """A declared quota; an amount of 0 (or omitted) is not capped."""
    return Amounts(
        cpu=millicores(res.cpu) or None,
        memory=res.memory or None,
        gpu=res.gpu or None,
    )


def workloads(project: m.Project) -> tuple[Workload, ...]:
    """Every workload placed in a pool, with its maximum number of pods."""
    scales = {(s.service.package or s.package, s.service.name): s for s in project.scales}
    out: list[Workload] = []
    for s in project.services:
        if s.pool is None:
            continue
        each = Amounts(millicores(s.cpu), s.memory or 0, s.gpu)
        pods = max_pods(s, scales.get((s.package, s.name)))
        pool = f"{s.pool.package or s.package}.{s.pool.name}"
        out.append(Workload("service", s.qualified, s.namespace, pool, team_of(s), pods, each))
    for j in project.jobs:
        if j.pool is None:
            continue
        each = Amounts(millicores(j.cpu), j.memory or 0, j.gpu)
        pool = f"{j.pool.package or j.package}.{j.pool.name}"
        out.append(Workload("job", j.qualified, j.namespace, pool, team_of(j), 1, each))
    return tuple(sorted(out, key=lambda w: (w.kind, w.qualified)))


def split(total: int, weights: dict[str, int], unit: int = 1) -> dict[str, int]:
    """`total` over the keys in proportion to `weights` (largest remainder, whole `unit`s).

    The parts add up to `total` exactly when it is a whole number of units; a
    key never gets less than `floor(total * weight / sum)`, so a key whose
    weight fits its proportion keeps it.  Zero weights everywhere: even split.
    Deterministic: ties go to the key that sorts first.
    """
    keys = sorted(weights)
    if not keys:
        return {}
    units_total = total // unit
    scale = {k: weights[k] for k in keys} if any(weights.values()) else {k: 1 for k in keys}
    denominator = sum(scale.values())
    base = {k: units_total * scale[k] // denominator for k in keys}
    left = units_total - sum(base.values())
    order = sorted(keys, key=lambda k: (-((units_total * scale[k]) % denominator), k))
    for k in order[:left]:
        base[k] += 1
    parts = {k: base[k] * unit for k in keys}
    parts[keys[0]] += total - units_total * unit  # a remainder below one unit
    return parts


def _unit(dim: str, total: int, demands: Iterable[int]) -> int:
    """MiB for memory when every amount is whole MiB (readable quantities), else 1."""
    if dim == "memory" and total % MI == 0 and all(d % MI == 0 for d in demands):
        return MI
    return 1


def team_shares(pool: m.Pool, position: int, members: list[Workload]) -> tuple[Share, ...]:
    """One quota's shares per namespace of its members (module docstring, step 2)."""
    quota = pool.quotas[position]
    declared = quota_amounts(quota.resources)
    namespaces = sorted({w.namespace for w in members})
    parts: dict[str, dict[str, int | None]] = {n: {} for n in namespaces}
    for dim in DIMENSIONS:
        total = declared.get(dim)
        if total is None:
            for n in namespaces:
                parts[n][dim] = None
            continue
        demand = {n: sum(w.total(dim) for w in members if w.namespace == n) for n in namespaces}
        for n, part in split(total, demand, _unit(dim, total, demand.values())).items():
            parts[n][dim] = part
    return tuple(
        Share(pool.qualified, position, quota.team, n, Amounts(**parts[n])) for n in namespaces
    )


def _sum(values: Iterable[int | None]) -> int | None:
    total = 0
    for v in values:
        if v is None:
            return None
        total += v
    return total


def quota_plan(project: m.Project) -> QuotaPlan:
    """The ResourceQuotas a tree's team quotas become, with the pods each one counts."""
    placed = workloads(project)
    by_team: dict[tuple[str, str | None], list[Workload]] = {}
    by_scope: dict[tuple[str, str], list[Workload]] = {}
    for w in placed:
        by_team.setdefault((w.pool, w.team), []).append(w)
        by_scope.setdefault((w.namespace, w.pool), []).append(w)
    shares: dict[tuple[str, str], list[Share]] = {}
    unplaced: list[Unplaced] = []
    for pool in project.pools:
        for position, quota in enumerate(pool.quotas):
            members = by_team.get((pool.qualified, quota.team), [])
            if not members:
                unplaced.append(Unplaced(pool.qualified, position, quota.team))
                continue
            for share in team_shares(pool, position, members):
                shares.setdefault((share.namespace, share.pool), []).append(share)
    scoped = []
    for namespace, pool_name in sorted(shares):
        here = tuple(shares[(namespace, pool_name)])
        hard = Amounts(**{d: _sum(s.hard.get(d) for s in here) for d in DIMENSIONS})
        counted = tuple(by_scope.get((namespace, pool_name), ()))
        scoped.append(ScopedQuota(namespace, pool_name, hard, here, counted))
    return QuotaPlan(tuple(scoped), tuple(unplaced))
