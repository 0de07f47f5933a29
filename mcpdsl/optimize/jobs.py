"""From the policy tree to the scheduling problem of `schedule.py`.

For each job: its carbon block (`carbon`, or the only block of the tree), its
allowed regions (its `regions`, else every region of the block; narrowed to the
regions of its pool), and its start slots.  The run lies inside the window and
ends by the deadline: starts are `window start + k × slot`, before the window
closes, with `start + runs ≤ deadline` (the deadline defaults to the window's
end).  Slots are an hour, or the forecast's step when that is finer (down to
15 minutes).

Per option, emissions per run = energy × PUE × the mean intensity over the
hours it runs, averaged over every window occurrence the forecast covers
(without a forecast: the annual average).  A job without `energy` is
estimated by the CCF method at full load.

Capacity: a pool in a region has `max nodes × node` minus the requests of the
services placed there at expected replicas; jobs run daily, so buckets are
slots of the UTC day and a run occupies every slot it touches.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mcpdsl.diagnostics import Diagnostic, make
from mcpdsl.ir import model as m
from mcpdsl.optimize.accounting import DAYS, Accounting, budget_kg_per_month
from mcpdsl.optimize.coefficients import JOB_UTILISATION, it_watts
from mcpdsl.optimize.intensity import IntensityTable
from mcpdsl.optimize.notes import Note
from mcpdsl.optimize.schedule import (
    BudgetSpec,
    CapacitySpec,
    FloorSpec,
    JobSpec,
    Option,
    Problem,
)
from mcpdsl.optimize.workloads import carbon_of, footprint, pool_of, replicas

#: Without a forecast, zones are converted to UTC on this date (a Monday in winter).
REFERENCE_DATE = dt.date(2025, 1, 6)
DAY = 86400


@dataclass(frozen=True)
class JobInfo:
    """How a job was turned into options, for the plan and the report."""

    job: m.Job
    carbon: m.Carbon
    zone: str
    energy_kwh: float  # IT energy per run
    estimated: bool  # energy estimated by the CCF method (no `energy` clause)
    occurrences: tuple[int, ...]  # UTC epoch seconds of the window openings averaged over


@dataclass
class Translation:
    problem: Problem
    infos: list[JobInfo] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    slot: int = 3600


def translate(
    project: m.Project,
    tables: dict[str, IntensityTable],
    services: Accounting,
) -> Translation:
    """The scheduling problem of a tree; jobs that cannot be placed get a diagnostic."""
    out = Translation(Problem(jobs=[]))
    out.slot = _slot(tables)
    used_carbons: set[str] = set()
    for job in project.jobs:
        spec = _job(project, job, tables, out)
        if spec is not None:
            out.problem.jobs.append(spec)
            used_carbons.add(spec.carbon or "")
    out.problem.capacities = _capacities(project, out.problem.jobs)
    for carbon in project.carbons:
        if carbon.qualified not in used_carbons:
            continue
        fixed = [line for line in services.lines if line.carbon == carbon.qualified]
        if carbon.budget is not None:
            services_kg = sum(line.total_kg for line in fixed)
            left = budget_kg_per_month(carbon.budget) - services_kg
            out.problem.budgets.append(
                BudgetSpec(
                    carbon.qualified,
                    left * 1000 / DAYS,
                    f"the carbon budget of `{carbon.qualified}` "
                    f"({budget_kg_per_month(carbon.budget):.1f} kg a month, "
                    f"{max(left, 0):.1f} kg left after services)",
                    carbon.budget.span or carbon.span,
                )
            )
        if carbon.renewable_min is not None:
            out.problem.floors.append(
                FloorSpec(
                    carbon.qualified,
                    float(carbon.renewable_min),
                    sum(line.facility_kwh for line in fixed) / DAYS,
                    sum(line.renewable_kwh for line in fixed) / DAYS,
                    f"the renewable floor of `{carbon.qualified}` "
                    f"(at least {float(carbon.renewable_min):.0%})",
                    carbon.span,
                )
            )
            unknown = sorted(r.region for r in carbon.regions if r.renewable is None)
            if unknown:
                out.notes.append(
                    Note(
                        f"carbon `{carbon.qualified}`: no renewable share for "
                        f"{', '.join(unknown)}; counted as 0% for the renewable floor",
                        carbon.span,
                    )
                )
    return out


def _slot(tables: dict[str, IntensityTable]) -> int:
    steps = [
        seg.end - seg.start
        for table in tables.values()
        for segs in table.series.values()
        for seg in segs
    ]
    finest = min(steps, default=3600)
    for slot in (900, 1200, 1800):
        if finest <= slot:
            return slot
    return 3600


def _job(
    project: m.Project, job: m.Job, tables: dict[str, IntensityTable], out: Translation
) -> JobSpec | None:
    carbon = carbon_of(project, job.carbon, job.package)
    if carbon is None:
        if project.carbons:
            out.notes.append(
                Note(
                    f"job `{job.qualified}` names no carbon block and the tree has several; "
                    "it runs at its window start",
                    job.span,
                )
            )
        return None
    table = tables.get(carbon.qualified)
    if table is None:  # its intensity file was bad: reported already
        return None
    known = [r.region for r in carbon.regions]
    wanted = list(job.regions) or known
    unknown = [r for r in wanted if r not in known]
    if unknown:
        out.diagnostics.append(
            make(
                "E0707",
                f"job `{job.qualified}` may run in {_names(unknown)}, "
                f"which carbon block `{carbon.qualified}` gives no intensity",
                job.span,
                label="unpriced region",
                help=f"add `region {_quote(unknown[0])} {{ intensity ... }}` to `{carbon.qualified}`"
                " or remove the region from the job",
            )
        )
        return None
    pool = pool_of(project, job.pool, job.package)
    regions = wanted
    if pool is not None and pool.regions:
        regions = [r for r in wanted if r in pool.regions]
        if not regions:
            out.diagnostics.append(
                make(
                    "E0708",
                    f"job `{job.qualified}` cannot be placed: none of its regions "
                    f"has pool `{pool.qualified}`",
                    job.span,
                    notes=(f"job regions: {_names(wanted)}; pool regions: {_names(pool.regions)}",),
                )
            )
            return None
    demand = footprint(job.cpu, job.memory, job.gpu)
    if pool is not None:
        node = footprint(pool.node.cpu, pool.node.memory, pool.node.gpu)
        too_big = [
            f"{_amount(name, need)} (a node has {_amount(name, has)})"
            for name, need, has in zip(("cpu", "memory", "gpu"), demand, node, strict=True)
            if need > has
        ]
        if too_big:
            out.diagnostics.append(
                make(
                    "E0708",
                    f"job `{job.qualified}` cannot be placed: it needs "
                    f"{', '.join(too_big)} in pool `{pool.qualified}`",
                    job.span,
                    help="give the pool bigger nodes or the job smaller requests",
                )
            )
            return None
    window = (job.window.end - job.window.start) % 1440 or 1440
    latest_end = int(job.deadline) if job.deadline is not None else window * 60
    runs = int(job.runs)
    last = min(window * 60 - 1, latest_end - runs)
    if last < 0:
        out.diagnostics.append(
            make(
                "E0708",
                f"job `{job.qualified}` cannot be placed: it runs {_hours(runs)} "
                f"but must end within {_hours(latest_end)} of its window opening",
                job.span,
                help="widen the window or add a later `deadline`",
            )
        )
        return None
    try:
        zone = ZoneInfo(job.window.zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
        out.notes.append(
            Note(
                f"job `{job.qualified}`: unknown time zone {job.window.zone!r}, used UTC", job.span
            )
        )
    occurrences = _occurrences(job, zone, table, latest_end)
    energy, estimated = _energy(job, regions[0])
    if estimated:
        out.notes.append(
            Note(
                f"job `{job.qualified}` has no `energy`; estimated {energy:.3g} kWh a run "
                "by the Cloud Carbon Footprint method at full load",
                job.span,
            )
        )
    offsets = range(0, last + 1, out.slot)
    options = []
    facts = table.regions
    cost = _cost(pool, demand, runs)
    buckets_per_day = DAY // out.slot
    for region in regions:
        fact = facts[region]
        facility = energy * fact.pue
        for offset in offsets:
            mean = sum(table.average(region, o + offset, o + offset + runs) for o in occurrences)
            mean /= len(occurrences)
            start = (occurrences[0] + offset) % DAY
            first = start // out.slot
            count = -(-(start + runs) // out.slot) - first
            buckets = tuple(sorted({(first + k) % buckets_per_day for k in range(count)}))
            options.append(
                Option(
                    region=region,
                    offset=offset,
                    grams=facility * mean,
                    cost=cost,
                    energy_kwh=facility,
                    renewable=fact.renewable or 0.0,
                    buckets=buckets,
                    utc_minute=start // 60,
                )
            )
    out.infos.append(JobInfo(job, carbon, job.window.zone, energy, estimated, tuple(occurrences)))
    return JobSpec(
        name=job.qualified,
        options=tuple(options),
        carbon=carbon.qualified,
        pool=pool.qualified if pool is not None else None,
        demand=demand,
    )


def _occurrences(job: m.Job, zone: ZoneInfo, table: IntensityTable, latest_end: int) -> list[int]:
    """UTC openings of the job's window to average over.

    Every opening whose whole span (to the deadline) lies inside the forecast;
    if there is none, the first opening at or after the forecast starts.
    Without a forecast, the opening on the reference date.
    """
    horizon = table.horizon
    hour, minute = divmod(job.window.start, 60)
    if horizon is None:
        return [_epoch(REFERENCE_DATE, hour, minute, zone)]
    start, end = horizon
    first = dt.datetime.fromtimestamp(start, dt.UTC).date() - dt.timedelta(days=1)
    openings = []
    day = first
    while True:
        opening = _epoch(day, hour, minute, zone)
        if opening > end:
            break
        if opening >= start:
            openings.append(opening)
        day += dt.timedelta(days=1)
    inside = [o for o in openings if o + latest_end <= end]
    if inside:
        return inside
    if openings:
        return openings[:1]
    return [_epoch(first + dt.timedelta(days=1), hour, minute, zone)]


def _epoch(day: dt.date, hour: int, minute: int, zone: ZoneInfo) -> int:
    if hour == 24:
        day, hour = day + dt.timedelta(days=1), 0
    return int(dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).timestamp())


def _energy(job: m.Job, region: str) -> tuple[float, bool]:
    """IT energy of one run in kWh: declared, else the CCF estimate at full load."""
    if job.energy_kwh is not None:
        return float(job.energy_kwh), False
    watts = it_watts(region, job.cpu, job.memory, job.gpu, JOB_UTILISATION)
    return float(watts * job.runs / Decimal(3600) / 1000), True


def _cost(pool: m.Pool | None, demand: tuple[int, int, int], runs: int) -> float:
    """USD of one run: the pool's node price times the job's largest share of a node."""
    if pool is None or pool.node.cost_per_hour is None:
        return 0.0
    node = footprint(pool.node.cpu, pool.node.memory, pool.node.gpu)
    share = max((d / n for d, n in zip(demand, node, strict=True) if n), default=0.0)
    return float(pool.node.cost_per_hour) * share * runs / 3600


def _capacities(project: m.Project, jobs: list[JobSpec]) -> dict[str, CapacitySpec]:
    """Per (pool, region) the node capacity at `max` nodes less the services' expected requests."""
    out: dict[str, CapacitySpec] = {}
    wanted = {(j.pool, o.region) for j in jobs if j.pool for o in j.options}
    for pool in project.pools:
        node = footprint(pool.node.cpu, pool.node.memory, pool.node.gpu)
        for pool_name, region in sorted(wanted):
            if pool_name != pool.qualified:
                continue
            used = [0, 0, 0]
            for service in project.services:
                placed = pool_of(project, service.pool, service.package)
                if placed is None or placed.qualified != pool.qualified:
                    continue
                if service.regions and region not in service.regions:
                    continue
                count = replicas(project, service).expected
                for r, amount in enumerate(footprint(service.cpu, service.memory, service.gpu)):
                    used[r] += amount * count
            limits = tuple(max(n * pool.max_nodes - u, 0) for n, u in zip(node, used, strict=True))
            out[f"{pool.qualified}@{region}"] = CapacitySpec(
                key=f"{pool.qualified}@{region}",
                limits=limits,  # type: ignore[arg-type]
                label=f"the capacity of pool `{pool.qualified}` in `{region}` "
                f"({pool.max_nodes} node{'s' if pool.max_nodes != 1 else ''} "
                "less the services' expected requests)",
                span=pool.span,
            )
    return out


def _names(items: list[str] | tuple[str, ...]) -> str:
    return ", ".join(f"`{item}`" for item in items)


def _quote(text: str) -> str:
    import json

    return json.dumps(text)


def _hours(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds / 3600:.2f}h"


def _amount(resource: str, value: int) -> str:
    if resource == "cpu":
        return f"{value / 1000:g} cpu"
    if resource == "memory":
        return f"{value / 1024:g}Gi memory"
    return f"{value} GPUs"
