"""The green scheduler against brute force, its explanations, baselines and determinism."""

from __future__ import annotations

import itertools
import random

import pytest

from mcpdsl.optimize.relax import prune, relax
from mcpdsl.optimize.schedule import (
    BudgetSpec,
    CapacitySpec,
    FloorSpec,
    JobSpec,
    Option,
    Problem,
    SolverSettings,
    check,
    explain,
    greedy,
    solve,
    total_grams,
    window_start,
)

SETTINGS = SolverSettings(time_limit=10.0)
REGIONS = (("clean", 0.9), ("mid", 0.6), ("dirty", 0.2))


def random_problem(rng: random.Random, jobs: int, *, tight: bool) -> Problem:
    """A small instance: 2-3 regions, 4 hourly buckets, capacity, a floor and a budget."""
    regions = REGIONS[: rng.randint(2, 3)]
    specs = []
    for j in range(jobs):
        runs = rng.randint(1, 2)
        energy = round(rng.uniform(0.5, 3.0), 2)
        options = []
        for name, share in rng.sample(regions, len(regions)):
            for start in range(0, 4 - runs + 1, rng.randint(1, 2)):
                intensity = {"clean": 20, "mid": 150, "dirty": 400}[name] * rng.uniform(0.7, 1.3)
                options.append(
                    Option(
                        region=name,
                        offset=start * 3600,
                        grams=round(energy * intensity, 1),
                        energy_kwh=energy,
                        renewable=share,
                        buckets=tuple(range(start, start + runs)),
                    )
                )
        specs.append(JobSpec(f"j{j}", tuple(options), "c", "p", (rng.randint(1, 3) * 1000, 0, 0)))
    limit = 2000 if tight else 6000
    capacities = {
        f"p@{name}": CapacitySpec(f"p@{name}", (limit, 10**6, 10**6), f"pool in {name}")
        for name, _ in regions
    }
    floors = [FloorSpec("c", rng.choice([0.0, 0.5, 0.8]), label="floor")]
    budgets = [BudgetSpec("c", rng.uniform(50, 2000), "budget")]
    return Problem(specs, capacities, budgets, floors)


def brute_force(problem: Problem, enabled: set[tuple[str, str]] | None = None) -> float | None:
    """The least emissions over every placement meeting the enabled groups (None: infeasible)."""
    enabled = set(problem.groups()) if enabled is None else enabled
    best = None
    for choice in itertools.product(*(range(len(j.options)) for j in problem.jobs)):
        if set(check(problem, choice)) & enabled:
            continue
        grams = total_grams(problem, choice)
        if best is None or grams < best:
            best = grams
    return best


@pytest.mark.parametrize("seed", range(40))
def test_small_instances_match_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    problem = random_problem(rng, rng.randint(2, 4), tight=seed % 2 == 0)
    expected = brute_force(problem)
    solution = solve(problem, SETTINGS)
    if expected is None:
        assert solution.status == "infeasible"
        blocking = set(solution.blocking)
        assert blocking, "an infeasible instance names its blocking constraints"
        assert brute_force(problem, blocking) is None, "the named constraints conflict"
        for group in blocking:  # and the set is minimal
            assert brute_force(problem, blocking - {group}) is not None, group
        return
    assert solution.status == "optimal", solution
    assert not check(problem, solution.choice)
    # integer milligrams in the model: equal up to rounding
    assert solution.grams == pytest.approx(expected, abs=1e-3 * len(problem.jobs))


@pytest.mark.parametrize("seed", range(10))
def test_reduced_cost_fixing_never_removes_the_optimum(seed: int) -> None:
    rng = random.Random(100 + seed)
    problem = random_problem(rng, 4, tight=True)
    optimum = brute_force(problem)
    relaxation = relax(problem, set(problem.groups()))
    if optimum is None or relaxation.status != "optimal":
        return
    assert relaxation.value <= optimum + 1e-6  # the LP is a lower bound
    incumbent, _ = greedy(problem)
    if check(problem, incumbent):
        return
    keep = prune(relaxation, incumbent, total_grams(problem, incumbent))
    assert keep is not None
    restricted = Problem(
        [
            JobSpec(j.name, tuple(j.options[i] for i in kept), j.carbon, j.pool, j.demand)
            for j, kept in zip(problem.jobs, keep, strict=True)
        ],
        problem.capacities,
        problem.budgets,
        problem.floors,
    )
    assert brute_force(restricted) == pytest.approx(optimum)


def test_same_input_same_plan() -> None:
    rng = random.Random(7)
    problem = random_problem(rng, 12, tight=False)
    problem.budgets.clear()
    problem.floors.clear()
    first = solve(problem, SETTINGS)
    assert first.ok
    for _ in range(3):
        assert solve(problem, SETTINGS).choice == first.choice


def test_ties_are_broken_by_start_then_region_order() -> None:
    """Equal emissions: the earliest start, then the first listed region."""
    options = (
        Option("b", 3600, 10.0),
        Option("a", 7200, 10.0),
        Option("a", 3600, 10.0),
        Option("a", 0, 12.0),
    )
    solution = solve(Problem([JobSpec("j", options)]), SETTINGS)
    assert solution.choice == (0,)


def test_baselines() -> None:
    one = JobSpec(
        "a",
        (Option("x", 0, 50.0, buckets=(0,)), Option("y", 0, 5.0, buckets=(0,))),
        pool="p",
        demand=(2000, 0, 0),
    )
    two = JobSpec(
        "b",
        (Option("x", 0, 60.0, buckets=(0,)), Option("y", 0, 6.0, buckets=(0,))),
        pool="p",
        demand=(2000, 0, 0),
    )
    capacities = {
        "p@x": CapacitySpec("p@x", (2000, 0, 0), "x"),
        "p@y": CapacitySpec("p@y", (2000, 0, 0), "y"),
    }
    problem = Problem([one, two], capacities)
    assert window_start(problem) == (0, 0)
    choice, overfull = greedy(problem)
    assert choice == (1, 0) and not overfull  # `a` came first and took the clean slot
    solution = solve(problem, SETTINGS)
    assert solution.choice == (0, 1)  # the optimum gives it to the bigger emitter
    assert solution.grams < total_grams(problem, choice)


def test_explain_names_a_minimal_conflict() -> None:
    jobs = [
        JobSpec(
            name,
            (
                Option("green", 0, 1.0, energy_kwh=1.0, renewable=1.0, buckets=(0,)),
                Option("grey", 0, 9.0, energy_kwh=1.0, renewable=0.0, buckets=(0,)),
            ),
            carbon="c",
            pool="p",
            demand=(1000, 0, 0),
        )
        for name in ("a", "b")
    ]
    capacities = {
        "p@green": CapacitySpec("p@green", (1000, 0, 0), "green capacity"),
        "p@grey": CapacitySpec("p@grey", (1000, 0, 0), "grey capacity"),
    }
    problem = Problem(
        jobs, capacities, [BudgetSpec("c", 100.0, "budget")], [FloorSpec("c", 0.9, label="floor")]
    )
    solution = solve(problem, SETTINGS)
    assert solution.status == "infeasible"
    assert set(solution.blocking) == {("capacity", "p@green"), ("floor", "c")}
    assert explain(problem, SETTINGS) == solution.blocking
