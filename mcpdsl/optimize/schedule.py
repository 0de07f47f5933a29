"""The green scheduler: each job gets one (region, start) option, found with CP-SAT.

The problem (`schedule_model.py`) is generic: the policy tree is translated
into it by `jobs.py`, the benchmark builds it directly.

- every job has options, one per allowed region and start slot, each with its
  emissions per run (gCO2e), cost, facility energy, the region's renewable
  share and the capacity buckets (time slots of a pool in a region) it uses;
- capacity: in every bucket of every (pool, region), the jobs running there
  fit what the services leave free (cpu, memory and GPUs);
- the renewable floor of a carbon block: renewable energy ≥ floor × energy,
  over the jobs it prices plus the fixed energy of its services;
- the carbon budget of a carbon block: the jobs' emissions per day fit what
  the services leave of the budget.

Objective: minimise emissions; then, as a tie-break that never trades a unit
of emissions, cost, the earliest start and the first listed region, so the
optimum is unique and the plan the same on every run.

How it is solved (`solve`): the greedy baseline and a rounded LP relaxation
(GLOP, `relax.py`) give an incumbent; reduced-cost fixing leaves out every
option that cannot be in a better schedule (exact); CP-SAT then solves the
remaining model with the incumbent as hint, with fixed settings
(`SolverSettings`: 2 workers, a fixed seed, a time limit, a gap).  The
reported lower bound is the better of CP-SAT's and the LP's.

Infeasible problems are explained by a deletion filter over the constraint
groups (capacity per pool and region, budget and floor per carbon block): the
result is a minimal set that no schedule meets together.

OR-Tools is imported only inside the functions that solve.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from mcpdsl.optimize.relax import Relaxation, improve, prune, relax, round_lp
from mcpdsl.optimize.schedule_model import (
    FLOOR_UNIT,
    RESOURCES,
    BudgetSpec,
    CapacitySpec,
    FloorSpec,
    JobSpec,
    Option,
    Problem,
    Solution,
    SolverSettings,
    check,
    fits,
    grams_scale,
    greedy,
    occupy,
    ranked,
    release,
    total_grams,
    window_start,
)

if TYPE_CHECKING:
    from ortools.sat.python import cp_model

__all__ = [
    "RESOURCES",
    "BudgetSpec",
    "CapacitySpec",
    "FloorSpec",
    "JobSpec",
    "Option",
    "Problem",
    "Solution",
    "SolverSettings",
    "check",
    "explain",
    "feasible",
    "fits",
    "greedy",
    "occupy",
    "ranked",
    "release",
    "solve",
    "total_grams",
    "window_start",
]


def _build(
    problem: Problem,
    enabled: set[tuple[str, str]],
    settings: SolverSettings,
    *,
    objective: bool,
    keep: list[list[int]] | None = None,
    hint: tuple[int, ...] | None = None,
) -> tuple[cp_model.CpModel, list[list[tuple[int, cp_model.IntVar]]], float]:
    """The CP-SAT model over the options in `keep` (all when None).

    Returns the model, per job a list of (option index, literal), and the
    objective's units per gram.
    """
    from ortools.sat.python import cp_model

    model = cp_model.CpModel()
    scale = grams_scale(problem)
    literals: list[list[tuple[int, cp_model.IntVar]]] = []
    for j, job in enumerate(problem.jobs):
        indexes = keep[j] if keep is not None else range(len(job.options))
        pairs = [(i, model.new_bool_var(f"x{j}_{i}")) for i in indexes]
        model.add_exactly_one([lit for _, lit in pairs])
        literals.append(pairs)
        if hint is not None:
            for i, lit in pairs:
                model.add_hint(lit, int(i == hint[j]))  # an int: older OR-Tools reject a bool

    terms: dict[tuple[str, int], list[tuple[cp_model.IntVar, int]]] = {}
    for j, (job, pairs) in enumerate(zip(problem.jobs, literals, strict=True)):
        if job.pool is None:
            continue
        for i, lit in pairs:
            option = job.options[i]
            key = f"{job.pool}@{option.region}"
            if ("capacity", key) not in enabled or key not in problem.capacities:
                continue
            for bucket in option.buckets:
                terms.setdefault((key, bucket), []).append((lit, j))
    for (key, _bucket), entries in sorted(terms.items(), key=lambda item: item[0]):
        limits = problem.capacities[key].limits
        for r in range(3):
            coeffs = [problem.jobs[j].demand[r] for _, j in entries]
            if sum(coeffs) <= limits[r]:
                continue  # cannot bind
            lits = [lit for lit, _ in entries]
            model.add(cp_model.LinearExpr.weighted_sum(lits, coeffs) <= limits[r])

    for budget in problem.budgets:
        if ("budget", budget.carbon) not in enabled:
            continue
        # rounded to the model's units; the slack of one unit per job keeps every schedule
        # that meets the budget exactly (`check` allows the same tolerance)
        lits, coeffs, count = [], [], 0
        for job, job_lits in zip(problem.jobs, literals, strict=True):
            if job.carbon == budget.carbon:
                count += 1
                for i, lit in job_lits:
                    lits.append(lit)
                    coeffs.append(round(job.options[i].grams * scale))
        limit = round(budget.grams_per_day * scale) + count
        model.add(cp_model.LinearExpr.weighted_sum(lits, coeffs) <= limit)

    for floor in problem.floors:
        if ("floor", floor.carbon) not in enabled:
            continue
        # renewable − share × energy ≥ 0 in units of FLOOR_UNIT kWh, with the same slack
        lits, coeffs, count = [], [], 0
        for job, job_lits in zip(problem.jobs, literals, strict=True):
            if job.carbon == floor.carbon:
                count += 1
                for i, lit in job_lits:
                    option = job.options[i]
                    lits.append(lit)
                    coeffs.append(
                        round(option.energy_kwh * (option.renewable - floor.share) / FLOOR_UNIT)
                    )
        fixed = round((floor.fixed_renewable_kwh - floor.share * floor.fixed_kwh) / FLOOR_UNIT)
        model.add(cp_model.LinearExpr.weighted_sum(lits, coeffs) >= -fixed - count)

    if not objective:
        return model, literals, scale
    lits, coeffs = [], []
    spread = 1
    if settings.tie_break:
        spread = sum(len(pairs) - 1 for pairs in literals) + 1
    for job, job_lits in zip(problem.jobs, literals, strict=True):
        kept_rank: dict[int, int] = {}
        if settings.tie_break:
            order = {i: r for r, i in enumerate(ranked(job))}
            kept = sorted((i for i, _ in job_lits), key=order.__getitem__)
            kept_rank = {i: r for r, i in enumerate(kept)}
        for i, lit in job_lits:
            lits.append(lit)
            coeffs.append(
                round(job.options[i].grams * scale) * spread + kept_rank.get(i, 0) * (spread > 1)
            )
    model.minimize(cp_model.LinearExpr.weighted_sum(lits, coeffs))
    return model, literals, scale * spread


def _solver(settings: SolverSettings, time_limit: float | None = None) -> cp_model.CpSolver:
    from ortools.sat.python import cp_model

    solver = cp_model.CpSolver()
    params = solver.parameters
    params.num_workers = settings.workers
    params.random_seed = settings.seed
    params.max_time_in_seconds = max(
        time_limit if time_limit is not None else settings.time_limit, 0.1
    )
    params.relative_gap_limit = settings.gap
    params.log_search_progress = False
    return solver


def _incumbent(problem: Problem, relaxation: Relaxation) -> tuple[int, ...] | None:
    """The best feasible placement among greedy and the rounded LP, each improved by 1-opt."""
    candidates = [improve(problem, greedy(problem)[0])]
    if relaxation.values is not None:
        candidates.append(improve(problem, round_lp(problem, relaxation.values)))
    feasible_ = [c for c in candidates if not check(problem, c)]
    if not feasible_:
        return None
    return min(feasible_, key=lambda c: (total_grams(problem, c), c))


def _run(
    problem: Problem,
    groups: set[tuple[str, str]],
    settings: SolverSettings,
    keep: list[list[int]] | None,
    hint: tuple[int, ...] | None,
    deadline: float,
) -> tuple[cp_model.CpSolverStatus, tuple[int, ...] | None, float | None]:
    """One CP-SAT solve over the kept options: (status, choice or None, lower bound in grams).

    `deadline` is a `time.perf_counter()` value; building the model counts against it.
    """
    from ortools.sat.python import cp_model

    model, literals, scale = _build(problem, groups, settings, objective=True, keep=keep, hint=hint)
    solver = _solver(settings, deadline - time.perf_counter())
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return status, None, None
    choice = tuple(next(i for i, lit in lits if solver.boolean_value(lit)) for lits in literals)
    return status, choice, solver.best_objective_bound / scale


def solve(problem: Problem, settings: SolverSettings | None = None) -> Solution:
    """Place every job; on infeasibility, name a minimal set of blocking constraint groups."""
    from ortools.sat.python import cp_model

    settings = settings or SolverSettings()
    start = time.perf_counter()

    limit = settings.time_limit - 0.5  # leave time to read the answer back

    def left() -> float:
        return limit - (time.perf_counter() - start)

    if not problem.jobs:
        return Solution("empty")
    if any(not job.options for job in problem.jobs):
        raise ValueError("every job needs an option; jobs.py reports the others first")
    groups = set(problem.groups())
    relaxation = relax(problem, groups)
    if relaxation.status == "infeasible":
        blocking = explain(problem, settings)
        return Solution("infeasible", seconds=time.perf_counter() - start, blocking=blocking)
    lp = relaxation.value if relaxation.status == "optimal" else None
    incumbent = _incumbent(problem, relaxation)

    def gap(choice: tuple[int, ...]) -> float:
        grams = total_grams(problem, choice)
        return (grams - lp) / grams if lp is not None and grams > 0 else 1.0

    values = relaxation.values
    if incumbent is not None and values is not None and gap(incumbent) > settings.gap:
        # fix-and-complete: jobs the LP decided keep its option, the others are searched
        room = prune(relaxation, incumbent, total_grams(problem, incumbent)) or []
        narrowed = [
            sorted({incumbent[j], max(range(len(row)), key=row.__getitem__)})
            if max(row) > 1 - 1e-6
            else room[j]
            for j, row in enumerate(values)
        ]
        stage = time.perf_counter() + min(left() / 4, 5.0)
        _, found, _ = _run(problem, groups, settings, narrowed, incumbent, stage)
        if found is not None and total_grams(problem, found) < total_grams(problem, incumbent):
            incumbent = found
    keep: list[list[int]] | None = None
    if incumbent is not None and lp is not None:
        keep = prune(relaxation, incumbent, total_grams(problem, incumbent))
    status, choice, bound = _run(problem, groups, settings, keep, incumbent, start + limit)
    if choice is None and status == cp_model.INFEASIBLE:
        blocking = explain(problem, settings)
        return Solution("infeasible", seconds=time.perf_counter() - start, blocking=blocking)
    if choice is None:
        choice, bound = incumbent, None  # time ran out before CP-SAT improved on it
    if choice is None:
        return Solution("unknown", seconds=time.perf_counter() - start)
    grams = total_grams(problem, choice)
    best = max(b for b in (bound, lp, 0.0) if b is not None)
    best = min(best, grams)
    proven = status == cp_model.OPTIMAL and settings.gap == 0
    state = "optimal" if proven or grams - best <= 1e-9 * max(grams, 1.0) else "feasible"
    return Solution(
        state, choice, grams, grams if state == "optimal" else best, time.perf_counter() - start
    )


def feasible(
    problem: Problem, enabled: set[tuple[str, str]], settings: SolverSettings
) -> bool | None:
    """Whether the constraint groups in `enabled` can be met together (None: time ran out)."""
    from ortools.sat.python import cp_model

    if not set(check(problem, greedy(problem)[0])) & enabled:
        return True  # the greedy placement already meets them
    if relax(problem, enabled).status == "infeasible":
        return False
    model, _, _ = _build(problem, enabled, settings, objective=False)
    status = _solver(settings, min(settings.time_limit, 10.0)).solve(model)
    if status == cp_model.INFEASIBLE:
        return False
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return True
    return None


def explain(problem: Problem, settings: SolverSettings) -> tuple[tuple[str, str], ...]:
    """A minimal set of constraint groups that no schedule meets together (deletion filter)."""
    needed = list(problem.groups())
    i = 0
    while i < len(needed):
        trial = set(needed[:i] + needed[i + 1 :])
        if feasible(problem, trial, settings) is False:
            needed.pop(i)  # still infeasible without it: not needed for the conflict
        else:
            i += 1
    return tuple(needed)
