"""Capacity: pools that cannot hold what is placed in them, with the clauses to blame.

Per pool and per resource (cpu, memory, GPUs), as linear problems over exact
rationals (`encode.Linear`), each workload, reservation or quota a tracked
clause so that an unsatisfiable answer comes with a minimal core: the few
clauses that alone already exceed the capacity.

- `A0131` one replica (or job) larger than a node: never schedulable;
- `A0130` Σ max replicas × requests of the services > max nodes × node (services
  can all be at their maximum at once; jobs are not counted, a scheduler may
  run them at different times);
- `A0132` Σ quotas > max nodes × node; `A0134` the pods a namespace's quota
  counts (its workloads in the pool, at their maximum) > the quota, as
  `ir/quotas.py` places team quotas (the very mapping the Kubernetes target
  emits);
- `A0133` Σ reservations > min nodes × node; `A0135` a reservation for a
  service that declares another pool (one without `pool` may run anywhere).

Max replicas: the larger of the `scale` maximum and every `during` maximum;
without `scale`, the service's `replicas` (default 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING

from mcpdsl.ir import model as m
from mcpdsl.ir.quotas import max_pods, quota_plan
from mcpdsl.ir.spans import clause

if TYPE_CHECKING:
    from mcpdsl.analysis import Analysis
    from mcpdsl.source import Span

DIMENSIONS = ("cpu", "memory", "gpu")


@dataclass(frozen=True)
class Item:
    """Something that takes capacity: `count` × `each` of every dimension."""

    tag: str  # shown in messages
    span: Span | None
    count: int
    each: dict[str, Fraction]

    def total(self, dim: str) -> Fraction:
        return self.count * self.each[dim]


def capacity(a: Analysis) -> None:
    project = a.project
    scales = {(s.service.package or s.package, s.service.name): s for s in project.scales}
    services = {(s.package, s.name): s for s in project.services}
    for pool in project.pools:
        key = (pool.package, pool.name)
        items: list[Item] = []
        for s in project.services:
            if s.pool is not None and (s.pool.package or s.package, s.pool.name) == key:
                scale = scales.get((s.package, s.name))
                most = max_pods(s, scale)
                span = clause(a, scale.span, "replicas") if scale else s.span
                items.append(Item(f"service `{s.name}`", span, most, _resources(s)))
        jobs = [
            Item(f"job `{j.name}`", j.span, 1, _resources(j))
            for j in project.jobs
            if j.pool is not None and (j.pool.package or j.package, j.pool.name) == key
        ]
        node = {d: _frac(getattr(pool.node, d)) for d in DIMENSIONS}
        node_span = pool.node.span or pool.span
        nodes_span = clause(a, pool.span, "nodes")
        for item in items + jobs:
            for d in DIMENSIONS:
                if item.each[d] > node[d]:
                    a.report(
                        "A0131",
                        f"one replica of {item.tag} needs {_show(d, item.each[d])}, more than a "
                        f"node of pool `{pool.name}` has ({_show(d, node[d])})",
                        item.span,
                        label="can never be scheduled",
                        secondary=((node_span, "the node shape"),),
                        help="use a pool with larger nodes or lower the request",
                    )
                    break
        _fits(a, pool, "A0130", items, pool.max_nodes, node, nodes_span, node_span)
        reservations = []
        for r in pool.reservations:
            owner = services.get((r.service.package or pool.package, r.service.name))
            if (
                owner is not None
                and owner.pool is not None  # without `pool`, it may well run here
                and (owner.pool.package or owner.package, owner.pool.name) != key
            ):
                where = f"pool `{owner.pool.name}`"
                a.report(
                    "A0135",
                    f"pool `{pool.name}` reserves capacity for `{owner.name}`, which runs in {where}",
                    r.span,
                    label="nothing here uses this reservation",
                    secondary=((owner.span, f"runs in {where}"),),
                    help=f"move the reservation to the service's pool or set `pool {pool.name}`",
                )
            reservations.append(
                Item(f"reservation for `{r.service.name}`", r.span, 1, _resources(r.resources))
            )
        _fits(a, pool, "A0133", reservations, pool.min_nodes, node, nodes_span, node_span)
        quotas = [
            Item(f"quota of team `{q.team}`", q.span, 1, _resources(q.resources))
            for q in pool.quotas
        ]
        _fits(a, pool, "A0132", quotas, pool.max_nodes, node, nodes_span, node_span)
    _scoped_quotas(a, project)


def _fits(
    a: Analysis,
    pool: m.Pool,
    code: str,
    items: list[Item],
    nodes: int,
    node: dict[str, Fraction],
    nodes_span: Span | None,
    node_span: Span | None,
) -> None:
    if not items:
        return
    for d in DIMENSIONS:
        total = sum((i.total(d) for i in items), Fraction(0))
        limit = nodes * node[d]
        if total <= limit:
            continue
        lp = a.linear()
        used = [lp.real(f"use{i}") for i in range(len(items))]
        for v in used:
            lp.require(v >= 0)
        lp.require(lp.sum(used) <= lp.const(limit))
        for i, (item, v) in enumerate(zip(items, used, strict=True)):
            lp.clause(i, v >= lp.const(item.total(d)))
        order = sorted(range(len(items)), key=lambda i: (-items[i].total(d), items[i].tag))
        core = lp.minimal_core(order)
        if core is None:
            continue
        blamed = [items[i] for i in sorted(core, key=lambda i: order.index(i))]
        what = {
            "A0130": "its workloads at their maximum",
            "A0133": "its reservations",
            "A0132": "its quotas",
        }[code]
        at = "max" if code != "A0133" else "min"
        part = sum((i.total(d) for i in blamed), Fraction(0))
        a.report(
            code,
            f"pool `{pool.name}` cannot hold {what}: {_show(d, total)} > "
            f"{_show(d, limit)} ({nodes} nodes x {_show(d, node[d])})",
            nodes_span,
            label=f"capacity at {at} nodes",
            secondary=(
                *((i.span, f"{i.tag}: {_amount(i, d)}") for i in blamed),
                (node_span, "node size"),
            ),
            notes=(
                f"these {len(blamed)} alone need {_show(d, part)}: "
                + ", ".join(f"{i.tag} {_amount(i, d)}" for i in blamed),
            ),
            help={
                "A0130": "raise `nodes`, use larger nodes, or lower the maximum replicas",
                "A0133": "raise the minimum node count or shrink the reservations",
                "A0132": "shrink the quotas or raise the maximum node count",
            }[code],
        )


def _scoped_quotas(a: Analysis, project: m.Project) -> None:
    """A0134: per (namespace, pool), the pods the ResourceQuota counts against its cap."""
    pools = {p.qualified: p for p in project.pools}
    spans = {f"{d.package}.{d.name}": d.span for d in (*project.services, *project.jobs)}
    for scoped in quota_plan(project).scoped:
        pool = pools[scoped.pool]
        for d in DIMENSIONS:
            cap = scoped.hard.get(d)
            demand = scoped.demand(d)
            if cap is None or demand <= cap:
                continue
            teams = ", ".join(
                f"team `{s.team}` {_show(d, _units(d, s.hard.get(d) or 0))}" for s in scoped.shares
            )
            a.report(
                "A0134",
                f"namespace `{scoped.namespace}` needs {_show(d, _units(d, demand))} in pool "
                f"`{pool.name}` at its workloads' maximum, above its quota of "
                f"{_show(d, _units(d, cap))}",
                pool.quotas[scoped.shares[0].position].span or pool.span,
                label="the quota is too small",
                secondary=tuple(
                    (
                        spans.get(w.qualified),
                        f"{w.kind} `{w.qualified.split('.', 1)[1]}`: "
                        f"{_show(d, _units(d, w.total(d)))}",
                    )
                    for w in scoped.workloads
                    if w.total(d)
                ),
                notes=(f"the quota there is the sum of {teams}",),
                help="raise the quota, lower the maximum replicas, or move workloads to "
                "another namespace or pool",
            )


def _units(d: str, amount: int) -> Fraction:
    """A mapping amount (millicores, bytes, GPUs) in the unit `_show` prints."""
    return Fraction(amount, 1000) if d == "cpu" else Fraction(amount)


def _resources(x: m.Service | m.Job | m.Resources) -> dict[str, Fraction]:
    return {
        "cpu": _frac(x.cpu or Decimal(0)),
        "memory": _frac(x.memory or 0),
        "gpu": _frac(x.gpu or 0),
    }


def _frac(v: Decimal | int) -> Fraction:
    return Fraction(v)


def _amount(i: Item, d: str) -> str:
    if i.count == 1:
        return _show(d, i.each[d])
    return f"{i.count} x {_show(d, i.each[d])} = {_show(d, i.total(d))}"


def _show(d: str, v: Fraction) -> str:
    if d == "memory":
        gi = v / (1 << 30)
        amount = f"{_num(gi)}Gi" if gi >= 1 or v == 0 else f"{_num(v / (1 << 20))}Mi"
        return f"{amount} memory"
    if d == "gpu":
        return f"{_num(v)} GPU{'s' if v != 1 else ''}"
    return f"{_num(v)} cpu"


def _num(v: Fraction) -> str:
    if v.denominator == 1:
        return str(v.numerator)
    return f"{float(v):.3f}".rstrip("0").rstrip(".")
