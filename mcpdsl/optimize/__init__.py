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

from mcpdsl.diagnostics import Diagnostic, make
from mcpdsl.optimize.notes import span_of

if TYPE_CHECKING:
    from mcpdsl.ir.model import Project
    from mcpdsl.optimize.plan import Plan


def plan_for_build(project: Project) -> Plan | None:
    """The job schedule `mcpdsl build` compiles into CronJobs, or None without jobs.

    The plan is always returned when there are jobs; when it could not be
    computed (bad intensity data, no feasible schedule) it has no placements,
    `build_diagnostics` says why, and the CronJobs keep their window start.
    """
    if not project.jobs:
        return None
    from mcpdsl.optimize.plan import compute_plan

    return compute_plan(project, packing=False)


def build_diagnostics(plan: Plan) -> list[Diagnostic]:
    """What the build reports about its plan, as build diagnostics (never free strings).

    An optimiser error does not stop a build (the CronJobs fall back to their
    window start), so it is reported as B0130, a warning `build --strict` makes an
    error, at the finding's own span and with its code; the planner's notes are
    B0131 information.
    """
    out: list[Diagnostic] = []
    for d in plan.diagnostics:
        if not d.is_error:
            continue  # warnings are `mcpdsl check`'s to report; they change no artifact
        fallback = "; jobs keep their window start" if not plan.assignments else ""
        out.append(
            make(
                "B0130",
                f"carbon schedule not applied: {d.message}{fallback}",
                d.span,
                label=d.label,
                help=f"`mcpdsl check` reports this as error[{d.code}]; "
                f"`mcpdsl check --explain {d.code}`",
                notes=d.notes,
            )
        )
    out.extend(make("B0131", str(note), span_of(note)) for note in plan.notes)
    return out
