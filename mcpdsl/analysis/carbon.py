"""Carbon: budgets and renewable shares that no schedule can meet, with the numbers.

For each `carbon` block with a `budget` or a `renewable at least`, a linear
program over exact rationals (`encode.Linear`):

- each job `j` that prices against the block runs once per day (its window
  repeats daily), `x[j, r]` the share of its runs in allowed region `r`
  (Σ_r x = 1, the LP relaxation of any schedule, so infeasible means no
  schedule exists); a run emits energy × PUE × intensity of `r`;
- the services' steady load: every service (of the block's package, when the
  tree has several carbon blocks) at its minimum replicas, at idle power
  (the CCF coefficients of `mcpdsl.optimize.coefficients` at 0 % load),
  in each of its regions (the cleanest priced region when it names none);
- emissions per period ≤ budget (`A0140`), energy-weighted renewable share ≥
  the minimum (`A0141`).  Unknown values are taken at their most favourable
  (PUE 1, renewable 100 %, an unpriced region 0 g/kWh; with `intensity from` a
  forecast, each region's cleanest forecast hour), so a finding is a proof.

The note gives the least possible emissions (z3 `Optimize`), split into jobs
and services; the labels are a minimal set of clauses that alone exceed the
budget.  `A0142`: a job none of whose regions the block prices.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from mcpdsl.ir import model as m
from mcpdsl.ir.spans import clause

if TYPE_CHECKING:
    from mcpdsl.analysis import Analysis
    from mcpdsl.source import Span


@dataclass
class Load:
    """One job or service: kg CO2e and kWh (facility) per period in each allowed region."""

    tag: str
    span: Span | None
    kind: str  # "job" | "service"
    options: dict[str, tuple[Fraction, Fraction, Fraction]]  # region -> (kg, kWh, renewable)
    fixed: bool  # a service runs in all its regions; a job chooses


def carbon(a: Analysis) -> None:
    from mcpdsl.optimize.coefficients import PERIOD_DAYS

    project = a.project
    blocks = [c for c in project.carbons if c.budget is not None or c.renewable_min is not None]
    for c in blocks:
        regions = {r.region: r for r in c.regions}
        if c.intensity_file:
            cleanest = forecast_minimum(project, c)
            if cleanest is None:
                continue  # an unreadable forecast: nothing can be proven
            regions = {
                name: r.model_copy(
                    update={"intensity": min(r.intensity, cleanest.get(name, r.intensity))}
                )
                for name, r in regions.items()
            }
        days = Fraction(PERIOD_DAYS[c.budget.period if c.budget else "month"])
        loads: list[Load] = []
        for job in project.jobs:
            if job.carbon is None or (job.carbon.package or job.package, job.carbon.name) != (
                c.package,
                c.name,
            ):
                continue
            load = _job(job, regions, days)
            if load is None:
                a.report(
                    "A0142",
                    f"job `{job.name}` runs in no region that carbon block `{c.name}` prices",
                    clause(a, job.span, "regions"),
                    label="no intensity for these regions",
                    secondary=((c.span, "priced regions are declared here"),),
                    help='add `region "NAME" { intensity ... }` to the carbon block',
                )
                continue
            loads.append(load)
        for s in _services(project, c):
            load = _service(s, project, regions, days)
            if load is not None:
                loads.append(load)
        _check(a, c, loads)


def forecast_minimum(project: m.Project, carbon: m.Carbon) -> dict[str, Decimal] | None:
    """The cleanest hour per region of the block's `intensity from` forecast.

    Read by the optimiser's loader (`optimize.intensity.load`), so the analysis
    sees the forecast the build schedules against: CSV with `#` comments and
    blank lines, or JSON, with the same checks.  None when the loader reports a
    problem (it says what, as E0701/E0702); nothing can then be proven.
    """
    from pathlib import Path

    from mcpdsl.optimize.intensity import in_tree, load_forecast

    if carbon.intensity_file is None:
        return None
    path = in_tree(Path(project.root or "."), carbon.intensity_file)
    if path is None:  # the loader reports E0701 for it
        return None
    loaded = load_forecast(carbon, path)  # the file's checks without locating the clause
    if loaded.diagnostics:
        return None
    out: dict[str, Decimal] = {}
    for region, segments in loaded.table.series.items():
        for segment in segments:
            value = Decimal(repr(segment.g_per_kwh))
            out[region] = min(out.get(region, value), value)
    return out


def _job(job: m.Job, regions: dict[str, m.CarbonRegion], days: Fraction) -> Load | None:
    from mcpdsl.optimize.coefficients import JOB_UTILISATION, it_watts

    options = {}
    for name in job.regions:
        r = regions.get(name)
        if r is None:
            continue
        if job.energy_kwh is not None:
            kwh = Fraction(job.energy_kwh)
        else:
            watts = it_watts(name, job.cpu, job.memory, job.gpu, JOB_UTILISATION)
            kwh = Fraction(watts) * Fraction(job.runs) / 3600 / 1000
        facility = kwh * Fraction(r.pue or 1) * days
        options[name] = (facility * Fraction(r.intensity) / 1000, facility, _share(r))
    if not options:
        return None
    return Load(f"job `{job.name}`", job.span, "job", options, fixed=False)


def _services(project: m.Project, c: m.Carbon) -> list[m.Service]:
    if len(project.carbons) == 1:
        return list(project.services)
    same = [x for x in project.carbons if x.package == c.package]
    if len(same) != 1:
        return []
    return [s for s in project.services if s.package == c.package]


def _service(
    s: m.Service, project: m.Project, regions: dict[str, m.CarbonRegion], days: Fraction
) -> Load | None:
    from mcpdsl.optimize.coefficients import it_watts

    scale = next(
        (
            x
            for x in project.scales
            if (x.service.package or x.package, x.service.name) == (s.package, s.name)
        ),
        None,
    )
    replicas = scale.min_replicas if scale else (s.replicas if s.replicas is not None else 1)
    if replicas == 0:
        return None
    hours = days * 24
    options = {}
    names = [n for n in s.regions if n in regions] if s.regions else list(regions)
    for name in names:
        r = regions[name]
        watts = Fraction(it_watts(name, s.cpu, s.memory, s.gpu, Decimal(0)))
        facility = replicas * watts * hours / 1000 * Fraction(r.pue or 1)
        options[name] = (facility * Fraction(r.intensity) / 1000, facility, _share(r))
    if not options:
        return None
    return Load(f"service `{s.name}`", s.span, "service", options, fixed=bool(s.regions))


def _share(r: m.CarbonRegion) -> Fraction:
    return Fraction(r.renewable) if r.renewable is not None else Fraction(1)


class _Model:
    """The LP: per load a share per region; emissions, energy and renewable energy as sums."""

    def __init__(self, a: Analysis, loads: list[Load]) -> None:
        self.lp = a.linear()
        lp = self.lp
        self.kg: list[Any] = []
        self.kwh: list[Any] = []
        self.green: list[Any] = []
        for i, load in enumerate(loads):
            xs = []
            kg, kwh, green = [], [], []
            for name, (e, f, share) in sorted(load.options.items()):
                x = lp.real(f"x{i}_{name}")
                lp.require(x >= 0)
                xs.append(x)
                kg.append(x * lp.const(e))
                kwh.append(x * lp.const(f))
                green.append(x * lp.const(f * share))
            if load.fixed:
                for x in xs:
                    lp.clause(("load", i), x == 1)
            else:
                lp.clause(("load", i), lp.sum(xs) == 1)
            self.kg.append(lp.sum(kg))
            self.kwh.append(lp.sum(kwh))
            self.green.append(lp.sum(green))
        self.emissions = lp.sum(self.kg)
        self.energy = lp.sum(self.kwh)
        self.renewable = lp.sum(self.green)


def _check(a: Analysis, c: m.Carbon, loads: list[Load]) -> None:
    if not loads:
        return
    tags = [("load", i) for i in range(len(loads))]
    budget_tag, share_tag = ("budget",), ("renewable",)
    model = _Model(a, loads)
    lp = model.lp
    if c.budget is not None:
        lp.clause(budget_tag, model.emissions <= lp.const(Fraction(c.budget.mass_kg)))
    if c.renewable_min is not None:
        lp.clause(share_tag, model.renewable >= model.energy * lp.const(Fraction(c.renewable_min)))
    if c.budget is not None:
        least = lp.minimize(model.emissions, tags)
        if least is not None and least > Fraction(c.budget.mass_kg):
            _budget_finding(a, c, loads, model, least, joint=False)
        elif c.renewable_min is not None and lp.check()[0] == "unsat":
            least = lp.minimize(model.emissions, [*tags, share_tag])
            _budget_finding(a, c, loads, model, least, joint=True)
    if c.renewable_min is not None and lp.check([*tags, share_tag])[0] == "unsat":
        best = _best_share(model, tags)
        a.report(
            "A0141",
            f"carbon block `{c.name}` asks for at least {_pct(Fraction(c.renewable_min))} renewable "
            f"energy, and no placement of its jobs reaches it",
            clause(a, c.span, "renewable"),
            label="unreachable minimum",
            notes=(f"the best schedule reaches {_pct(best)}",) if best is not None else (),
            help="allow the jobs greener regions or lower the minimum",
        )


def _budget_finding(
    a: Analysis, c: m.Carbon, loads: list[Load], model: _Model, least: Fraction | None, joint: bool
) -> None:
    assert c.budget is not None
    lp = model.lp
    tags = [("load", i) for i in range(len(loads))]
    order = (
        [("budget",)]
        + ([("renewable",)] if joint else [])
        + sorted(tags, key=lambda t: -min(o[0] for o in loads[t[1]].options.values()))
    )
    core = lp.minimal_core(order) or ()
    blamed = [loads[t[1]] for t in core if t[0] == "load"]
    period = c.budget.period
    notes = []
    if least is not None:
        jobs = sum((_cheapest(x) for x in loads if x.kind == "job"), Fraction(0))
        services = sum((_cheapest(x) for x in loads if x.kind == "service"), Fraction(0))
        notes.append(
            f"the least possible emissions are {_kg(least)} per {period}"
            + (
                ""
                if joint
                else f" (jobs {_kg(jobs)}, services at minimum replicas {_kg(services)})"
            )
            + f", the budget is {_kg(Fraction(c.budget.mass_kg))}"
        )
    if joint:
        notes.append(
            f"the renewable minimum of {_pct(Fraction(c.renewable_min or 0))} forces dirtier regions"
        )
    a.report(
        "A0140",
        f"no schedule meets the carbon budget of `{c.name}` ({_kg(Fraction(c.budget.mass_kg))} per {period})",
        clause(a, c.span, "budget"),
        label="unreachable budget",
        secondary=tuple((x.span, f"{x.tag}: at least {_kg(_cheapest(x))}") for x in blamed),
        notes=notes,
        help="raise the budget, allow cleaner regions, or run less",
    )


def _cheapest(load: Load) -> Fraction:
    values = [o[0] for o in load.options.values()]
    return sum(values, Fraction(0)) if load.fixed else min(values)


def _best_share(model: _Model, tags: list[Any]) -> Fraction | None:
    """The highest reachable renewable share (bisection on the feasibility of `share >= t`)."""
    lp = model.lp
    low, high = Fraction(0), Fraction(1)
    for _ in range(12):
        mid = (low + high) / 2
        trial = lp.__class__(
            timeout_ms=lp.timeout_ms,
            ctx=lp.ctx,
            hard=list(lp.hard),
            soft=list(lp.soft),
            tally=lp.tally,
        )
        trial.clause(("t",), model.renewable >= model.energy * trial.const(mid))
        if trial.check([*tags, ("t",)])[0] == "sat":
            low = mid
        else:
            high = mid
    return low


def _kg(v: Fraction) -> str:
    if v >= 1000:
        return f"{float(v) / 1000:.2f} t"
    if v >= 1:
        return f"{float(v):.1f} kg"
    return f"{float(v) * 1000:.0f} g"


def _pct(v: Fraction) -> str:
    return f"{float(v) * 100:.1f}%".replace(".0%", "%")
