"""LP relaxation of the scheduling problem (GLOP): a bound, a warm start, and option pruning.

CP-SAT spends most of its time on big instances in presolve; three classic
LP techniques make its model small and its start good:

- the LP relaxation (options may be taken fractionally) gives a lower bound
  on the emissions of any schedule;
- rounding the LP solution (the most decided jobs first, each to its largest
  LP option that still fits), then a 1-opt pass (each job moves to a cleaner
  option while capacity and the renewable floors allow it) gives an incumbent;
- reduced-cost fixing: a schedule using option `k` emits at least
  `LP + reduced_cost(k)`, so options whose reduced cost exceeds
  `incumbent − LP` cannot be in any schedule better than the incumbent and are
  left out of the CP-SAT model.  This is exact: the optimum is preserved.

OR-Tools (`pywraplp`, GLOP) is imported only inside `relax`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcpdsl.optimize.schedule_model import Problem, fits, occupy, ranked, release


@dataclass
class Relaxation:
    status: str  # "optimal" | "infeasible" | "unknown"
    value: float = 0.0  # the LP optimum: a lower bound on emissions (grams)
    values: list[list[float]] | None = None
    reduced: list[list[float]] | None = None


def relax(problem: Problem, enabled: set[tuple[str, str]]) -> Relaxation:
    """Solve the LP relaxation with the constraint groups in `enabled`."""
    from ortools.linear_solver import pywraplp

    solver = pywraplp.Solver.CreateSolver("GLOP")
    if solver is None:  # pragma: no cover - GLOP ships with every OR-Tools wheel
        return Relaxation("unknown")
    # the dual simplex is several times faster here: every job row is an equality
    solver.SetSolverSpecificParametersAsString("use_dual_simplex: true")
    inf = solver.infinity()
    objective = solver.Objective()
    columns = []
    for job in problem.jobs:
        row = solver.Constraint(1, 1)
        column = []
        for option in job.options:
            var = solver.NumVar(0, 1, "")
            row.SetCoefficient(var, 1)
            objective.SetCoefficient(var, option.grams)
            column.append(var)
        columns.append(column)
    rows: dict[tuple[str, int, int], object] = {}
    for job, column in zip(problem.jobs, columns, strict=True):
        if job.pool is None:
            continue
        for option, var in zip(job.options, column, strict=True):
            key = f"{job.pool}@{option.region}"
            cap = problem.capacities.get(key)
            if cap is None or ("capacity", key) not in enabled:
                continue
            for bucket in option.buckets:
                for r in range(3):
                    if job.demand[r] == 0:
                        continue
                    row = rows.get((key, bucket, r))
                    if row is None:
                        row = rows[key, bucket, r] = solver.Constraint(-inf, cap.limits[r])
                    row.SetCoefficient(var, job.demand[r])  # type: ignore[attr-defined]
    for floor in problem.floors:
        if ("floor", floor.carbon) not in enabled:
            continue
        row = solver.Constraint(floor.share * floor.fixed_kwh - floor.fixed_renewable_kwh, inf)
        for job, column in zip(problem.jobs, columns, strict=True):
            if job.carbon == floor.carbon:
                for option, var in zip(job.options, column, strict=True):
                    row.SetCoefficient(var, option.energy_kwh * (option.renewable - floor.share))
    for budget in problem.budgets:
        if ("budget", budget.carbon) not in enabled:
            continue
        row = solver.Constraint(-inf, budget.grams_per_day)
        for job, column in zip(problem.jobs, columns, strict=True):
            if job.carbon == budget.carbon:
                for option, var in zip(job.options, column, strict=True):
                    row.SetCoefficient(var, option.grams)
    objective.SetMinimization()
    status = solver.Solve()
    if status == pywraplp.Solver.INFEASIBLE:
        return Relaxation("infeasible")
    if status != pywraplp.Solver.OPTIMAL:
        return Relaxation("unknown")
    return Relaxation(
        "optimal",
        objective.Value(),
        [[var.solution_value() for var in column] for column in columns],
        [[var.reduced_cost() for var in column] for column in columns],
    )


def round_lp(problem: Problem, values: list[list[float]]) -> tuple[int, ...]:
    """Round an LP solution: most decided jobs first, each to its best option that still fits."""
    order = sorted(range(len(problem.jobs)), key=lambda j: (-max(values[j]), j))
    used: dict[tuple[str, int], list[int]] = {}
    choice = [0] * len(problem.jobs)
    for j in order:
        job = problem.jobs[j]
        weight = values[j]
        supported = sorted(
            (i for i, w in enumerate(weight) if w > 1e-6), key=lambda i: (-weight[i], i)
        )
        others = [i for i in ranked(job) if weight[i] <= 1e-6]
        picked = next(
            (i for i in supported + others if fits(problem, job, job.options[i], used)),
            ranked(job)[0],
        )
        occupy(job, job.options[picked], used)
        choice[j] = picked
    return tuple(choice)


def improve(problem: Problem, choice: tuple[int, ...], rounds: int = 10) -> tuple[int, ...]:
    """1-opt: move each job to a cleaner option while capacity and renewable floors allow."""
    current = list(choice)
    used: dict[tuple[str, int], list[int]] = {}
    for job, i in zip(problem.jobs, current, strict=True):
        occupy(job, job.options[i], used)
    floors = {f.carbon: f for f in problem.floors}
    slack = {f.carbon: f.fixed_renewable_kwh - f.share * f.fixed_kwh for f in problem.floors}
    for job, i in zip(problem.jobs, current, strict=True):
        if job.carbon in floors:
            option = job.options[i]
            slack[job.carbon] += option.energy_kwh * (option.renewable - floors[job.carbon].share)
    for _ in range(rounds):
        changed = False
        for j, job in enumerate(problem.jobs):
            now = job.options[current[j]]
            release(job, now, used)
            floor = floors.get(job.carbon or "")
            for i in ranked(job):
                option = job.options[i]
                if option.grams >= now.grams:
                    break
                if floor is not None:
                    delta = option.energy_kwh * (option.renewable - floor.share)
                    delta -= now.energy_kwh * (now.renewable - floor.share)
                    if slack[floor.carbon] + delta < -1e-9:
                        continue
                if fits(problem, job, option, used):
                    if floor is not None:
                        slack[floor.carbon] += delta
                    current[j] = i
                    changed = True
                    break
            occupy(job, job.options[current[j]], used)
        if not changed:
            break
    return tuple(current)


def prune(
    relaxation: Relaxation, incumbent: tuple[int, ...], upper: float
) -> list[list[int]] | None:
    """Options that can still be in a schedule at least as good as `upper` (reduced-cost fixing)."""
    if relaxation.reduced is None:
        return None
    room = upper - relaxation.value
    margin = 1e-6 * max(abs(upper), 1.0) + 1e-6  # LP tolerances
    keep = []
    for j, costs in enumerate(relaxation.reduced):
        kept = [i for i, rc in enumerate(costs) if rc <= room + margin or i == incumbent[j]]
        keep.append(kept)
    return keep
