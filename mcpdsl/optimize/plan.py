"""The plan: intensity data, the green schedule, both baselines, accounting and packing.

`compute_plan(project)` runs every optimisation and never raises for user
errors: problems are diagnostics on the returned `Plan`.  `Plan.placement` is
the contract the Kubernetes target reads (`ctx.plan`): `(region, "HH:MM",
zone)` for a planned job, None otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from mcpdsl.diagnostics import Diagnostic, Label, make, sort_diagnostics
from mcpdsl.ir import model as m
from mcpdsl.optimize import accounting as acc_mod
from mcpdsl.optimize import intensity
from mcpdsl.optimize.coefficients import Embodied
from mcpdsl.optimize.jobs import JobInfo, Translation, translate
from mcpdsl.optimize.packing import PackingReport
from mcpdsl.optimize.schedule import (
    Option,
    Problem,
    Solution,
    SolverSettings,
    greedy,
    solve,
    window_start,
)
from mcpdsl.source import SourceFile

BASELINES = ("window-start", "greedy")


@dataclass(frozen=True)
class Assignment:
    job: str
    region: str
    start: str  # "HH:MM" in the job's zone
    zone: str
    option: Option
    baselines: dict[str, Option]

    @property
    def grams(self) -> float:
        return self.option.grams


@dataclass
class Plan:
    """Everything the optimisers found for one tree."""

    assignments: dict[str, Assignment] = field(default_factory=dict)
    solution: Solution | None = None
    translation: Translation | None = None
    baseline_choices: dict[str, tuple[int, ...]] = field(default_factory=dict)
    greedy_overfull: tuple[str, ...] = ()
    accounting: acc_mod.Accounting | None = None
    packing: PackingReport | None = None
    tables: dict[str, intensity.IntensityTable] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sources: list[SourceFile] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    settings: SolverSettings = field(default_factory=SolverSettings)
    relaxed: tuple[str, ...] = ()  # budgets dropped because no schedule could meet them

    def placement(self, job: str) -> tuple[str, str, str] | None:
        """Where and when job `package.name` runs: `(region, "HH:MM", zone)`, or None."""
        found = self.assignments.get(job)
        if found is None:
            return None
        return (found.region, found.start, found.zone)

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.diagnostics)

    def infos(self) -> dict[str, JobInfo]:
        return {i.job.qualified: i for i in self.translation.infos} if self.translation else {}


def compute_plan(
    project: m.Project,
    *,
    packing: bool = True,
    settings: SolverSettings | None = None,
    embodied: Embodied | None = None,
    tables: dict[str, intensity.IntensityTable] | None = None,
) -> Plan:
    """Run the optimisers on a resolved project (OR-Tools is imported here, lazily).

    `tables` (carbon block -> intensity) replaces a block's own intensity: `mcpdsl
    simulate --intensity` places the jobs against the forecast it replays."""
    plan = Plan(settings=settings or SolverSettings())
    clock = time.perf_counter()
    for carbon in project.carbons:
        if tables is not None and carbon.qualified in tables:
            plan.tables[carbon.qualified] = tables[carbon.qualified]
            continue
        loaded = intensity.load(project, carbon)
        plan.diagnostics.extend(loaded.diagnostics)
        plan.sources.extend(loaded.sources)
        if not any(d.is_error for d in loaded.diagnostics):
            plan.tables[carbon.qualified] = loaded.table
    plan.timings["intensity"] = time.perf_counter() - clock

    services = acc_mod.services(project, embodied)
    if project.carbons:
        plan.notes.extend(services.unpriced)
    elif project.services or project.jobs:
        plan.notes.append("the tree has no `carbon` block: no grid intensity, so no emissions")
    translation = translate(project, plan.tables, services)
    plan.translation = translation
    plan.diagnostics.extend(translation.diagnostics)
    plan.notes.extend(translation.notes)
    problem = translation.problem

    clock = time.perf_counter()
    if problem.jobs:  # the jobs that could be translated; the others have a diagnostic
        _schedule(plan, problem)
    plan.timings["schedule"] = time.perf_counter() - clock

    jobs = {j.qualified: j for j in project.jobs}
    accounting = acc_mod.Accounting(services.lines, [], services.unpriced)
    for info in translation.infos:
        found = plan.assignments.get(info.job.qualified)
        spec = next(j for j in problem.jobs if j.name == info.job.qualified)
        option = found.option if found else spec.options[0]  # unplanned: window start
        accounting.lines.append(
            acc_mod.job_line(
                jobs[info.job.qualified],
                info.carbon,
                option.region,
                option.grams,
                option.energy_kwh,
                embodied,
            )
        )
    extra: tuple[str, ...] = ()
    if plan.relaxed:
        extra = ("no schedule meets this budget; the plan is the lowest-carbon schedule",)
    plan.diagnostics.extend(acc_mod.check_budgets(project, accounting, extra))
    plan.accounting = accounting

    if packing:
        from mcpdsl.optimize.packing import optimise

        clock = time.perf_counter()
        plan.packing = optimise(project, replace(plan.settings, time_limit=10.0))
        plan.diagnostics.extend(plan.packing.diagnostics)
        plan.notes.extend(plan.packing.notes)
        plan.timings["packing"] = time.perf_counter() - clock
    plan.diagnostics = sort_diagnostics(plan.diagnostics)
    return plan


def _schedule(plan: Plan, problem: Problem) -> None:
    solution = solve(problem, plan.settings)
    if solution.status == "infeasible":
        budgets = {key for kind, key in solution.blocking if kind == "budget"}
        if budgets and len(budgets) == len(solution.blocking):
            # only budgets block: keep the lowest-carbon schedule, report the overrun (E0710)
            relaxed = Problem(
                problem.jobs,
                problem.capacities,
                [b for b in problem.budgets if b.carbon not in budgets],
                problem.floors,
            )
            solution = solve(relaxed, plan.settings)
            plan.relaxed = tuple(sorted(budgets))
        else:
            plan.diagnostics.append(_infeasible(problem, solution))
    elif solution.status == "unknown":
        plan.notes.append(
            f"the scheduler found no schedule within {plan.settings.time_limit:g}s; "
            "jobs start at their window start"
        )
        plan.solution = solution
        return
    plan.solution = solution
    greedy_choice, plan.greedy_overfull = greedy(problem)
    plan.baseline_choices = {"window-start": window_start(problem), "greedy": greedy_choice}
    if not solution.ok or not solution.choice:
        return
    infos = {i.job.qualified: i for i in plan.translation.infos} if plan.translation else {}
    for j, (job, index) in enumerate(zip(problem.jobs, solution.choice, strict=True)):
        option = job.options[index]
        info = infos[job.name]
        minutes = (info.job.window.start + option.offset // 60) % 1440
        plan.assignments[job.name] = Assignment(
            job=job.name,
            region=option.region,
            start=f"{minutes // 60:02d}:{minutes % 60:02d}",
            zone=info.zone,
            option=option,
            baselines={
                name: job.options[choice[j]] for name, choice in plan.baseline_choices.items()
            },
        )


def _infeasible(problem: Problem, solution: Solution) -> Diagnostic:
    described = [problem.describe(group) for group in solution.blocking]
    if not described:
        return make(
            "E0709",
            "no schedule places every job: the solver proved it infeasible",
            None,
            help="widen windows, allow more regions, or add capacity",
        )
    names = [label for label, _ in described]
    spans = [span for _, span in described]
    primary = next((s for s in spans if s is not None), None)
    secondary = [
        Label(span=span, message="blocking constraint")
        for span in spans[1:]
        if span is not None and span != primary
    ]
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return make(
        "E0709",
        f"no schedule meets {joined}",
        primary,
        label="blocking constraint",
        secondary=secondary,
        notes=(
            "each of these is needed for the conflict: dropping any one of them "
            "makes a schedule possible",
        ),
        help="raise the budget or floor, add nodes, widen job windows, or allow more regions",
    )
