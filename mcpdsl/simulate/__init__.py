"""`mcpdsl simulate`: replay a load trace and the grid's carbon through a policy tree.

`prepare(project, trace_path, ...)` loads the trace, the intensity (the
`--intensity` forecast, else the tree's own `intensity from`, else annual
averages) and the green scheduler's job placement, then `simulate` runs the
step loop (`run.py`) and `Result` gives the figures and the data
(`result.py`).  Problems are S01xx/E07xx diagnostics, never exceptions.
docs/simulate.md describes the model and every assumption.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mcpdsl.diagnostics import Diagnostic, make
from mcpdsl.ir import model as m
from mcpdsl.simulate.result import Result
from mcpdsl.simulate.run import Settings, pick_region, simulate
from mcpdsl.simulate.trace import Trace, load_trace, parse_instant, parse_number
from mcpdsl.source import SourceFile

__all__ = ["Outcome", "Result", "Settings", "Trace", "load_trace", "run", "service_names"]


@dataclass
class Outcome:
    result: Result | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: list[SourceFile] = field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.diagnostics)


def service_names(project: m.Project) -> dict[str, str]:
    """Names a trace may use -> the name the result uses (qualified when names collide)."""
    names = [s.name for s in project.services]
    out: dict[str, str] = {}
    for s in project.services:
        canonical = s.name if names.count(s.name) == 1 else s.qualified
        out[s.qualified] = canonical
        if names.count(s.name) == 1:
            out[s.name] = canonical
    return out


def parse_moment(text: str, trace: Trace) -> float | None:
    """`--from`/`--to`: seconds from the trace start, or an ISO instant with a zone."""
    number = parse_number(text)
    if number is not None:
        return number
    instant = parse_instant(text)
    return None if instant is None else instant - trace.start


def run(
    project: m.Project,
    trace_path: str | Path,
    *,
    step: int = 15,
    start: str | None = None,
    end: str | None = None,
    seed: int = 0,
    region: str | None = None,
    intensity: str | Path | None = None,
    policy: str = "",
    verify: bool = False,
    jobs: bool = True,
) -> Outcome:
    """Load everything, simulate, return the result or the diagnostics that stop it."""
    loaded = load_trace(trace_path, service_names(project))
    out = Outcome(None, list(loaded.diagnostics), [loaded.source] if loaded.source else [])
    if loaded.trace is None:
        return out
    trace = loaded.trace
    if not 1 <= step <= 3600:
        out.diagnostics.append(make("S0114", f"step {step}s is not between 1s and 1h", None))
        return out
    t0, t1 = 0.0, trace.end + step
    for text, is_start in ((start, True), (end, False)):
        if text is None:
            continue
        moment = parse_moment(text, trace)
        if moment is None:
            out.diagnostics.append(make("S0113", f"bad time `{text[:60]}`", None))
            return out
        if is_start:
            t0 = moment
        else:
            t1 = moment
    if not t0 < t1 or t1 <= 0 or t0 > trace.end:
        out.diagnostics.append(
            make("S0113", "the window is empty or outside the trace (`--from` before `--to`)", None)
        )
        return out
    if (t1 - t0) / step > 5_000_000:
        out.diagnostics.append(make("S0111", "the window holds more than 5,000,000 steps", None))
        return out
    chosen = pick_region(project, region)
    if isinstance(chosen, Diagnostic):
        out.diagnostics.append(chosen)
        return out
    table, found = _intensity(project, chosen, intensity, out)
    if found is False:
        return out
    # with `--intensity`, the green scheduler places the jobs against that forecast too
    override = {table.carbon: table} if intensity is not None and table is not None else None
    job_runs = _jobs(project, chosen, out, override) if jobs else []
    settings = Settings(step, t0, t1, seed, chosen, policy, verify)
    raw = simulate(project, trace, settings, table, job_runs)
    out.diagnostics.extend(raw.diagnostics)
    out.result = Result(raw)
    return out


def _intensity(project: m.Project, region: str, forecast: str | Path | None, out: Outcome):  # type: ignore[no-untyped-def]
    from mcpdsl.optimize import intensity

    package = project.packages[0] if project.packages else ""
    carbon = intensity.carbon_for_region(project, package, region)
    if carbon is None:
        out.diagnostics.append(
            make("S0118", f"no carbon block lists region `{region}`: carbon is not counted", None)
        )
        return None, None
    if forecast is not None:
        loaded = intensity.load_forecast(carbon, Path(forecast))
        if loaded.diagnostics:
            out.diagnostics.append(
                make("S0115", f"cannot use `{Path(forecast).as_posix()}` as forecast", None)
            )
    else:
        loaded = intensity.load(project, carbon)
    out.diagnostics.extend(loaded.diagnostics)
    out.sources.extend(loaded.sources)
    if any(d.is_error for d in loaded.diagnostics):
        return None, False
    return loaded.table, True


def _jobs(project: m.Project, region: str, out: Outcome, tables=None) -> list:  # type: ignore[no-untyped-def,type-arg]
    """Where and when the green scheduler runs each job (`mcpdsl plan`'s placement),
    against `tables` (the `--intensity` forecast) when given."""
    if not project.jobs:
        return []
    from mcpdsl.optimize.plan import compute_plan
    from mcpdsl.simulate.model import JobRun, millicores

    plan = compute_plan(project, packing=False, tables=tables)
    infos = plan.infos()
    runs = []
    for job in sorted(project.jobs, key=lambda j: j.qualified):
        info = infos.get(job.qualified)
        if info is None:
            continue
        placed = plan.assignments.get(job.qualified)
        spec = (
            next((j for j in plan.translation.problem.jobs if j.name == job.qualified), None)
            if plan.translation
            else None
        )
        if spec is None:
            continue
        option = placed.option if placed else spec.options[0]
        minute = (job.window.start + option.offset // 60) % 1440
        pool = f"{job.pool.package or job.package}.{job.pool.name}" if job.pool else None
        runs.append(
            JobRun(
                name=job.qualified,
                job=job,
                region=option.region,
                pool=pool,
                namespace=job.namespace,
                start_minute=minute,
                zone=info.zone,
                runs_s=int(job.runs),
                cpu=millicores(job.cpu),
                memory=job.memory or 0,
                gpu=job.gpu,
                energy_kwh=option.energy_kwh,
                window_minute=job.window.start,
            )
        )
    return runs
