"""`mcpdsl plan DIR [--format text|json] [--embodied]`: the optimisers' results.

Prints the green schedule (each job's region and start, its kgCO2e a month and
the savings against both baselines), the carbon accounting per carbon block
and the pool packing (nodes, energy and cost before and after, recommended
`nodes` ranges).  Exit 0 when the plan has no error, 1 when it has (bad
intensity data, no feasible schedule, a budget exceeded, services that do
not fit), 2 for unusable input.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from mcpdsl.cli.exit import EXIT_FINDINGS, EXIT_OK

if TYPE_CHECKING:
    from mcpdsl.optimize.plan import Plan
    from mcpdsl.pipeline import Compilation


def compile_and_plan(path: str, *, embodied: bool, fmt: str = "text") -> tuple[Compilation, Plan]:
    """Front end, then every optimiser; exits 1 or 2 like `mcpdsl check` on input errors."""
    from mcpdsl.cli.common import compile_or_exit, emit_diagnostics
    from mcpdsl.optimize.coefficients import Embodied
    from mcpdsl.optimize.plan import compute_plan

    compilation = compile_or_exit(path, fmt)
    if compilation.project is None:
        emit_diagnostics(compilation.diagnostics, compilation.sources, fmt)
        sys.exit(EXIT_FINDINGS)
    plan = compute_plan(compilation.project, embodied=Embodied() if embodied else None)
    for source in plan.sources:
        compilation.sources.add(source)
    return compilation, plan


@click.command("plan")
@click.argument("path", type=click.Path(path_type=str))
@click.option(
    "--format", "fmt", type=click.Choice(("text", "json")), default="text", show_default=True
)
@click.option(
    "--embodied", is_flag=True, help="Add embodied (manufacturing) emissions, CCF method."
)
def plan_command(path: str, fmt: str, embodied: bool) -> None:
    """Schedule jobs where and when the grid is cleanest, pack pools, account for carbon."""
    from mcpdsl.cli.common import emit_diagnostics

    compilation, plan = compile_and_plan(path, embodied=embodied, fmt=fmt)
    diagnostics = [*compilation.diagnostics, *plan.diagnostics]
    if fmt == "json":
        click.echo(json.dumps(plan_json(plan), indent=2, sort_keys=True))
        if any(d.is_error for d in diagnostics):
            sys.exit(EXIT_FINDINGS)
        return
    print_plan(plan)
    if diagnostics:
        emit_diagnostics(diagnostics, compilation.sources)
    sys.exit(EXIT_FINDINGS if any(d.is_error for d in diagnostics) else EXIT_OK)


# ------------------------------------------------------------------ text


def kg(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def saving(plan_value: float, baseline: float) -> str:
    if baseline <= 0:
        return "–"
    return f"{(baseline - plan_value) / baseline:.0%}"


def print_plan(plan: Plan) -> None:
    from rich.console import Console
    from rich.table import Table

    from mcpdsl.optimize.accounting import DAYS

    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 160)  # tables stay readable when piped
    solution = plan.solution
    if plan.assignments and solution is not None:
        status = f"{solution.status} in {solution.seconds * 1000:.0f} ms"
        table = Table(
            title=f"green schedule (CP-SAT, {status}; kgCO2e a month, daily runs)",
            show_edge=False,
        )
        for name, justify in (
            ("job", "left"),
            ("region", "left"),
            ("start", "left"),
            ("kgCO2e", "right"),
            ("window start", "right"),
            ("saving", "right"),
            ("greedy", "right"),
            ("saving", "right"),
        ):
            table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        totals = {"plan": 0.0, "window-start": 0.0, "greedy": 0.0}
        for name, a in sorted(plan.assignments.items()):
            ours = a.grams * DAYS / 1000
            first = a.baselines["window-start"].grams * DAYS / 1000
            second = a.baselines["greedy"].grams * DAYS / 1000
            totals["plan"] += ours
            totals["window-start"] += first
            totals["greedy"] += second
            table.add_row(
                name,
                a.region,
                f"{a.start} {a.zone}",
                kg(ours),
                kg(first),
                saving(ours, first),
                kg(second),
                saving(ours, second),
            )
        table.add_section()
        table.add_row(
            "total",
            "",
            "",
            kg(totals["plan"]),
            kg(totals["window-start"]),
            saving(totals["plan"], totals["window-start"]),
            kg(totals["greedy"]),
            saving(totals["plan"], totals["greedy"]),
        )
        console.print(table)
        console.print(
            "baselines: window start = every job at its window start in its first allowed "
            "region; greedy = each job in turn takes its lowest-carbon slot that still fits"
        )
        if plan.greedy_overfull:
            console.print(f"greedy could not fit: {', '.join(plan.greedy_overfull)}")
    elif not plan.translation or not plan.translation.problem.jobs:
        console.print("no jobs to schedule")
    _print_accounting(console, plan)
    _print_packing(console, plan)
    for note in plan.notes:
        console.print(f"note: {note}")


def _print_accounting(console: Any, plan: Plan) -> None:
    from rich.table import Table

    accounting = plan.accounting
    if accounting is None or not accounting.lines:
        return
    table = Table(
        title="carbon accounting (Cloud Carbon Footprint, location-based, kgCO2e a month)",
        show_edge=False,
    )
    for name in ("carbon block", "services", "jobs", "total", "budget", "used"):
        table.add_column(name, justify="left" if name == "carbon block" else "right")
    carbons = sorted({line.carbon for line in accounting.lines})
    budgets = {b.carbon: b for b in accounting.budgets}
    for carbon in carbons:
        services = accounting.total_kg("service", carbon)
        jobs = accounting.total_kg("job", carbon)
        budget = budgets.get(carbon)
        table.add_row(
            carbon,
            kg(services),
            kg(jobs),
            kg(services + jobs),
            kg(budget.budget_kg) if budget else "–",
            f"{(services + jobs) / budget.budget_kg:.0%}" if budget and budget.budget_kg else "–",
        )
    console.print(table)
    regions = Table(title="by region (kgCO2e a month)", show_edge=False)
    for name in ("region", "services", "jobs"):
        regions.add_column(name, justify="left" if name == "region" else "right")
    for region, split in accounting.by_region().items():
        regions.add_row(region, kg(split["service"]), kg(split["job"]))
    console.print(regions)


def _print_packing(console: Any, plan: Plan) -> None:
    from rich.table import Table

    report = plan.packing
    if report is None or not report.packings:
        return
    table = Table(title="pool packing (CP-SAT; per region)", show_edge=False)
    for name in ("region", "load", "nodes", "W", "$/h", "kWh/month"):
        table.add_column(name, justify="left" if name in ("region", "load") else "right")
    for p in report.packings:
        if p.status == "infeasible":
            table.add_row(p.region, p.load, "does not fit", "", "", "")
            continue

        def pair(field: str, fmt: str, p: Any = p) -> str:
            return f"{fmt.format(p.total('before', field))} → {fmt.format(p.total('after', field))}"

        table.add_row(
            p.region,
            p.load,
            pair("nodes", "{:.0f}"),
            pair("watts", "{:.0f}"),
            pair("cost", "{:.2f}"),
            f"{p.total('before', 'watts') * 0.7305:.0f} → {p.total('after', 'watts') * 0.7305:.0f}",
        )
    console.print(table)
    if report.recommendations:
        rec = Table(
            title="recommended `nodes` per pool (min replicas .. max replicas)", show_edge=False
        )
        for name in ("pool", "region", "declared", "recommended", "at expected load"):
            rec.add_column(name)
        for r in report.recommendations:
            rec.add_row(
                r.pool,
                r.region,
                f"{r.declared[0]}..{r.declared[1]}",
                f"{r.recommended[0]}..{r.recommended[1]}" if r.recommended else "does not fit",
                str(r.expected_nodes) if r.expected_nodes is not None else "does not fit",
            )
        console.print(rec)


# ------------------------------------------------------------------ json


def plan_json(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready data (sorted, no timings, so it is reproducible)."""
    from mcpdsl.diagnostics.render import render_json
    from mcpdsl.optimize.accounting import DAYS

    jobs = {}
    for name, a in sorted(plan.assignments.items()):
        jobs[name] = {
            "region": a.region,
            "start": a.start,
            "zone": a.zone,
            "g_per_run": round(a.grams, 6),
            "kg_per_month": round(a.grams * DAYS / 1000, 6),
            "baselines": {
                key: {
                    "region": o.region,
                    "offset_minutes": o.offset // 60,
                    "kg_per_month": round(o.grams * DAYS / 1000, 6),
                }
                for key, o in sorted(a.baselines.items())
            },
        }
    out: dict[str, Any] = {
        "status": plan.solution.status if plan.solution else None,
        "jobs": jobs,
        "notes": plan.notes,
        "diagnostics": json.loads(render_json(plan.diagnostics)),
    }
    if plan.accounting is not None:
        out["accounting"] = {
            "lines": [
                {
                    "kind": line.kind,
                    "name": line.name,
                    "region": line.region,
                    "carbon": line.carbon,
                    "kwh_per_month": round(line.facility_kwh, 6),
                    "kg_per_month": round(line.total_kg, 6),
                }
                for line in accounting_lines(plan)
            ],
            "budgets": [
                {
                    "carbon": b.carbon,
                    "budget_kg": round(b.budget_kg, 6),
                    "used_kg": round(b.used_kg, 6),
                }
                for b in plan.accounting.budgets
            ],
        }
    if plan.packing is not None:
        out["packing"] = [
            {
                "region": p.region,
                "load": p.load,
                "status": p.status,
                "before": {
                    r.pool: {"nodes": r.nodes, "watts": round(r.watts, 3)} for r in p.before
                },
                "after": {r.pool: {"nodes": r.nodes, "watts": round(r.watts, 3)} for r in p.after},
            }
            for p in plan.packing.packings
        ]
        out["recommendations"] = [
            {
                "pool": r.pool,
                "region": r.region,
                "declared": list(r.declared),
                "recommended": list(r.recommended) if r.recommended else None,
            }
            for r in plan.packing.recommendations
        ]
    return out


def accounting_lines(plan: Plan) -> list[Any]:
    assert plan.accounting is not None
    return sorted(plan.accounting.lines, key=lambda line: (line.kind, line.name, line.region))
