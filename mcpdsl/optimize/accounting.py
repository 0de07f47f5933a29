"""Carbon accounting by the Cloud Carbon Footprint method, per month.

Services are counted at their expected replicas in every region they run in,
around the clock; jobs once a day at their planned placement.  Each line is

    IT energy   = replicas × (vCPUs × W/vCPU + GB × 0.392 W + GPUs × W/GPU) × hours
    facility    = IT energy × PUE
    CO2e        = facility × grid intensity (+ embodied, when asked for)

with the coefficients of `coefficients.py`.  Services use the regions' annual
averages; a job uses the intensity of the hours it is planned to run (the
forecast when there is one).  Figures are location-based averages, not
marginal emissions.  A budget is compared per month; a month is 30.4375 days.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mcpdsl.diagnostics import Diagnostic, make
from mcpdsl.ir import model as m
from mcpdsl.optimize.coefficients import (
    DAYS_PER_MONTH,
    HOURS_PER_MONTH,
    PERIOD_DAYS,
    Embodied,
    it_watts,
)
from mcpdsl.optimize.intensity import RegionFacts, carbon_for_region, region_facts
from mcpdsl.optimize.notes import Note
from mcpdsl.optimize.workloads import cpu_utilisation, replicas

HOURS = float(HOURS_PER_MONTH)
DAYS = float(DAYS_PER_MONTH)


@dataclass(frozen=True)
class Line:
    kind: str  # "service" | "job"
    name: str
    region: str
    carbon: str
    count: float  # replicas (services) or runs per month (jobs)
    it_kwh: float  # per month
    facility_kwh: float
    intensity: float  # g/kWh used
    kg: float  # operational CO2e per month
    embodied_kg: float = 0.0
    renewable_kwh: float = 0.0

    @property
    def total_kg(self) -> float:
        return self.kg + self.embodied_kg


@dataclass(frozen=True)
class BudgetUse:
    carbon: str
    budget_kg: float  # per month
    used_kg: float
    span: object = None

    @property
    def exceeded(self) -> bool:
        return self.used_kg > self.budget_kg + 1e-9


@dataclass
class Accounting:
    lines: list[Line] = field(default_factory=list)
    budgets: list[BudgetUse] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)

    def total_kg(self, kind: str | None = None, carbon: str | None = None) -> float:
        return sum(
            line.total_kg
            for line in self.lines
            if (kind is None or line.kind == kind) and (carbon is None or line.carbon == carbon)
        )

    def by_region(self) -> dict[str, dict[str, float]]:
        """kg per month per region, split into services and jobs."""
        out: dict[str, dict[str, float]] = {}
        for line in self.lines:
            entry = out.setdefault(line.region, {"service": 0.0, "job": 0.0})
            entry[line.kind] += line.total_kg
        return dict(sorted(out.items()))


def budget_kg_per_month(budget: m.Budget) -> float:
    return float(budget.mass_kg * DAYS_PER_MONTH / PERIOD_DAYS[budget.period])


def services(project: m.Project, embodied: Embodied | None = None) -> Accounting:
    """Every service at its expected replicas, in every region it runs in."""
    facts_of = {c.qualified: region_facts(c) for c in project.carbons}
    acc = Accounting()
    for service in project.services:
        count = replicas(project, service).expected
        if count == 0:
            continue
        util = cpu_utilisation(project, service)
        for region in service.regions:
            carbon = carbon_for_region(project, service.package, region)
            if carbon is None:
                acc.unpriced.append(
                    Note(
                        f"service `{service.qualified}` in `{region}`: no carbon block lists "
                        "the region",
                        service.span,
                    )
                )
                continue
            facts = facts_of[carbon.qualified][region]
            watts = float(it_watts(region, service.cpu, service.memory, service.gpu, util))
            extra = 0.0
            if embodied is not None and service.cpu:
                extra = float(service.cpu * embodied.kg_per_vcpu_hour()) * count * HOURS
            acc.lines.append(
                _line("service", service.qualified, facts, carbon.qualified, count, watts, extra)
            )
        if not service.regions:
            acc.unpriced.append(
                Note(
                    f"service `{service.qualified}`: no regions, so no grid intensity", service.span
                )
            )
    return acc


def _line(
    kind: str,
    name: str,
    facts: RegionFacts,
    carbon: str,
    count: float,
    watts: float,
    embodied_kg: float,
) -> Line:
    it_kwh = watts * count * HOURS / 1000
    facility = it_kwh * facts.pue
    return Line(
        kind=kind,
        name=name,
        region=facts.region,
        carbon=carbon,
        count=count,
        it_kwh=it_kwh,
        facility_kwh=facility,
        intensity=facts.intensity,
        kg=facility * facts.intensity / 1000,
        embodied_kg=embodied_kg,
        renewable_kwh=facility * (facts.renewable or 0.0),
    )


def job_line(
    job: m.Job,
    carbon: m.Carbon,
    region: str,
    grams_per_run: float,
    facility_kwh_per_run: float,
    embodied: Embodied | None = None,
) -> Line:
    """A job run once a day at a placement whose per-run emissions are known."""
    facts = region_facts(carbon)[region]
    extra = 0.0
    if embodied is not None and job.cpu:
        hours = float(job.runs) / 3600
        extra = float(job.cpu * embodied.kg_per_vcpu_hour()) * hours * DAYS
    facility = facility_kwh_per_run * DAYS
    return Line(
        kind="job",
        name=job.qualified,
        region=region,
        carbon=carbon.qualified,
        count=DAYS,
        it_kwh=facility / facts.pue,
        facility_kwh=facility,
        intensity=grams_per_run / facility_kwh_per_run if facility_kwh_per_run else 0.0,
        kg=grams_per_run * DAYS / 1000,
        embodied_kg=extra,
        renewable_kwh=facility * (facts.renewable or 0.0),
    )


def check_budgets(
    project: m.Project, acc: Accounting, notes: Iterable[str] = ()
) -> list[Diagnostic]:
    """Fill `acc.budgets`; E0710 for every carbon block over its budget."""
    diags = []
    for carbon in project.carbons:
        if carbon.budget is None:
            continue
        limit = budget_kg_per_month(carbon.budget)
        used = acc.total_kg(carbon=carbon.qualified)
        use = BudgetUse(carbon.qualified, limit, used, carbon.budget.span)
        acc.budgets.append(use)
        if use.exceeded:
            services_kg = acc.total_kg("service", carbon.qualified)
            jobs_kg = acc.total_kg("job", carbon.qualified)
            diags.append(
                make(
                    "E0710",
                    f"carbon budget of `{carbon.qualified}` exceeded: "
                    f"{used:.1f} kg CO2e a month of {limit:.1f} kg",
                    carbon.budget.span or carbon.span,
                    label=f"{used - limit:.1f} kg over",
                    notes=(
                        f"services {services_kg:.1f} kg, jobs {jobs_kg:.1f} kg a month "
                        "(location-based averages, Cloud Carbon Footprint method)",
                        *notes,
                    ),
                    help="raise the budget, move workloads to cleaner regions, "
                    "or lower replicas and job energy",
                )
            )
    return diags
