"""Optimise: carbon-aware scheduling, pool packing, carbon accounting, reports, monitoring.

One module per optimisation; OR-Tools is imported only where a solver runs
(`schedule.solve`, `packing.pack`), so importing this package is cheap.

- `intensity`: grid intensity per region (carbon blocks, CSV and Carbon Aware SDK forecasts)
- `jobs` + `schedule`: the green scheduler (CP-SAT) and its two baselines
- `packing`: the energy optimiser for node pools (CP-SAT)
- `accounting` + `coefficients`: Cloud Carbon Footprint accounting per month
- `plan`: runs them all (`compute_plan`) and is what targets read as `ctx.plan`
- `report`: the sustainability report (HTML with SVG charts, and Markdown)
- `monitor`: Prometheus rules turning Kepler energy counters into gCO2e

`docs/carbon.md` describes the method and every coefficient's source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcpdsl.ir.model import Project
    from mcpdsl.optimize.plan import Plan


def plan_for_build(project: Project) -> Plan | None:
    """The job schedule `mcpdsl build` compiles into CronJobs, or None without jobs.

    The plan is always returned when there are jobs; when it could not be
    computed (bad intensity data, no feasible schedule) it has no placements,
    its `notes` say why, and the CronJobs keep their window start.
    """
    if not project.jobs:
        return None
    from mcpdsl.optimize.plan import compute_plan

    plan = compute_plan(project, packing=False)
    for diagnostic in plan.diagnostics:
        if diagnostic.is_error:
            where = f" ({diagnostic.span})" if diagnostic.span else ""
            plan.notes.append(
                f"carbon plan: error[{diagnostic.code}]{where}: {diagnostic.message}"
                + ("; jobs keep their window start" if not plan.assignments else "")
            )
    return plan
