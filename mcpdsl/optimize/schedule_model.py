"""The scheduling problem's data and the cheap algorithms on it (no solver).

Options, jobs, constraint groups, the two baselines (window start, greedy),
and `check`, which lists the constraint groups a placement violates.  The
solver is in `schedule.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mcpdsl.source import Span

RESOURCES = ("cpu", "memory", "gpu")


@dataclass(frozen=True)
class Option:
    region: str
    offset: int  # seconds after the window opening
    grams: float  # gCO2e per run, facility energy × intensity
    cost: float = 0.0  # USD per run
    energy_kwh: float = 0.0  # facility kWh per run (IT energy × PUE)
    renewable: float = 0.0  # renewable share of the region, 0 when unknown
    buckets: tuple[int, ...] = ()  # capacity buckets (time slots of the day) it occupies
    utc_minute: int = 0  # minute of the UTC day the run starts (for reports)


@dataclass(frozen=True)
class JobSpec:
    """A job to place.  `options[0]` is the window start in the first allowed region."""

    name: str
    options: tuple[Option, ...]
    carbon: str | None = None  # the carbon block whose budget and floor count it
    pool: str | None = None  # capacity key prefix; the key is f"{pool}@{region}"
    demand: tuple[int, int, int] = (0, 0, 0)  # millicores, MiB, GPUs


@dataclass(frozen=True)
class CapacitySpec:
    key: str  # "pool@region"
    limits: tuple[int, int, int]  # millicores, MiB, GPUs free for jobs, per bucket
    label: str
    span: Span | None = None


@dataclass(frozen=True)
class BudgetSpec:
    carbon: str
    grams_per_day: float  # what the jobs may emit per day
    label: str
    span: Span | None = None


@dataclass(frozen=True)
class FloorSpec:
    carbon: str
    share: float
    fixed_kwh: float = 0.0  # facility energy per day of the rest (services)
    fixed_renewable_kwh: float = 0.0
    label: str = ""
    span: Span | None = None


@dataclass
class Problem:
    jobs: list[JobSpec]
    capacities: dict[str, CapacitySpec] = field(default_factory=dict)
    budgets: list[BudgetSpec] = field(default_factory=list)
    floors: list[FloorSpec] = field(default_factory=list)

    def groups(self) -> list[tuple[str, str]]:
        """Every constraint group that can be switched off to explain infeasibility."""
        used = {f"{j.pool}@{o.region}" for j in self.jobs if j.pool for o in j.options}
        groups = [("capacity", key) for key in sorted(self.capacities) if key in used]
        groups += [("budget", b.carbon) for b in self.budgets]
        groups += [("floor", f.carbon) for f in self.floors]
        return groups

    def describe(self, group: tuple[str, str]) -> tuple[str, Span | None]:
        kind, key = group
        if kind == "capacity":
            cap = self.capacities[key]
            return cap.label, cap.span
        for b in self.budgets:
            if kind == "budget" and b.carbon == key:
                return b.label, b.span
        for f in self.floors:
            if kind == "floor" and f.carbon == key:
                return f.label, f.span
        raise KeyError(group)


@dataclass(frozen=True)
class SolverSettings:
    """Fixed solver settings: the same input gives the same plan."""

    workers: int = 2
    seed: int = 20250101
    time_limit: float = 20.0
    gap: float = 0.0  # relative optimality gap at which to stop (0 = prove optimal)
    tie_break: bool = True


@dataclass
class Solution:
    status: str  # "optimal" | "feasible" | "infeasible" | "unknown" | "empty"
    choice: tuple[int, ...] = ()  # option index per job
    grams: float = 0.0  # emissions per day (one run of every job)
    bound: float | None = None  # lower bound on grams (from the solver)
    seconds: float = 0.0
    blocking: tuple[tuple[str, str], ...] = ()  # minimal conflicting constraint groups

    @property
    def ok(self) -> bool:
        return self.status in ("optimal", "feasible", "empty")

    @property
    def gap(self) -> float | None:
        if self.bound is None or self.grams <= 0:
            return None
        return max(0.0, (self.grams - self.bound) / self.grams)


# ------------------------------------------------------------------ baselines


#: Renewable floors are compared in units of 10⁻⁷ kWh in the integer model.
FLOOR_UNIT = 1e-7


def grams_scale(problem: Problem) -> float:
    """Units per gram for the integer model: milligrams, coarser when the numbers are big."""
    biggest = max((o.grams for j in problem.jobs for o in j.options), default=1.0)
    scale = 1000.0
    while biggest * scale > 1e7 and scale > 1e-6:
        scale /= 10
    return scale


def budget_tolerance(problem: Problem) -> float:
    """Grams a budget may be exceeded by through rounding to the integer model's units."""
    return (1.5 * len(problem.jobs) + 1) / grams_scale(problem)


def floor_tolerance(problem: Problem) -> float:
    """kWh a renewable floor may be missed by through rounding to the integer model's units."""
    return (1.5 * len(problem.jobs) + 1) * FLOOR_UNIT


def total_grams(problem: Problem, choice: tuple[int, ...]) -> float:
    return sum(job.options[i].grams for job, i in zip(problem.jobs, choice, strict=True))


def window_start(problem: Problem) -> tuple[int, ...]:
    """Baseline 1: every job at its window start in its first allowed region."""
    return tuple(0 for _ in problem.jobs)


def ranked(job: JobSpec) -> list[int]:
    """Option indexes, best first: emissions, then cost, start, region order."""
    return sorted(
        range(len(job.options)),
        key=lambda i: (job.options[i].grams, job.options[i].cost, job.options[i].offset, i),
    )


def greedy(problem: Problem) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Baseline 2: in job order, each job's lowest-emission option that still fits.

    Capacity is respected as jobs are placed; a job that fits nowhere takes its
    lowest-emission option anyway and is named in the second result.  Budgets
    and floors are not looked at (that is the optimiser's job).
    """
    used: dict[tuple[str, int], list[int]] = {}
    choice: list[int] = []
    overfull: list[str] = []
    for job in problem.jobs:
        order = ranked(job)
        picked = None
        for i in order:
            if fits(problem, job, job.options[i], used):
                picked = i
                break
        if picked is None:
            picked = order[0]
            overfull.append(job.name)
        occupy(job, job.options[picked], used)
        choice.append(picked)
    return tuple(choice), tuple(overfull)


def fits(
    problem: Problem, job: JobSpec, option: Option, used: dict[tuple[str, int], list[int]]
) -> bool:
    if job.pool is None:
        return True
    cap = problem.capacities.get(f"{job.pool}@{option.region}")
    if cap is None:
        return True
    for bucket in option.buckets:
        now = used.get((cap.key, bucket), [0, 0, 0])
        if any(now[r] + job.demand[r] > cap.limits[r] for r in range(3)):
            return False
    return True


def occupy(job: JobSpec, option: Option, used: dict[tuple[str, int], list[int]]) -> None:
    if job.pool is None:
        return
    key = f"{job.pool}@{option.region}"
    for bucket in option.buckets:
        now = used.setdefault((key, bucket), [0, 0, 0])
        for r in range(3):
            now[r] += job.demand[r]


def release(job: JobSpec, option: Option, used: dict[tuple[str, int], list[int]]) -> None:
    if job.pool is None:
        return
    key = f"{job.pool}@{option.region}"
    for bucket in option.buckets:
        now = used[key, bucket]
        for r in range(3):
            now[r] -= job.demand[r]


def check(problem: Problem, choice: tuple[int, ...]) -> list[tuple[str, str]]:
    """The constraint groups a choice violates (used by tests and the report)."""
    violated: set[tuple[str, str]] = set()
    used: dict[tuple[str, int], list[int]] = {}
    for job, i in zip(problem.jobs, choice, strict=True):
        occupy(job, job.options[i], used)
    for (key, _bucket), now in used.items():
        cap = problem.capacities.get(key)
        if cap is not None and any(now[r] > cap.limits[r] for r in range(3)):
            violated.add(("capacity", key))
    for b in problem.budgets:
        grams = sum(
            j.options[i].grams
            for j, i in zip(problem.jobs, choice, strict=True)
            if j.carbon == b.carbon
        )
        if grams > b.grams_per_day + budget_tolerance(problem):
            violated.add(("budget", b.carbon))
    for f in problem.floors:
        energy, green = f.fixed_kwh, f.fixed_renewable_kwh
        for j, i in zip(problem.jobs, choice, strict=True):
            if j.carbon == f.carbon:
                energy += j.options[i].energy_kwh
                green += j.options[i].energy_kwh * j.options[i].renewable
        if green + floor_tolerance(problem) < f.share * energy:
            violated.add(("floor", f.carbon))
    return sorted(violated)
