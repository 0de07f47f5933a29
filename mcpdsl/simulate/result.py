"""The figures of a simulation and its JSON-able data (`Result.to_data()`, version 1).

Figures (docs/simulate.md defines each):

* scale-up time: an episode starts at the first step where offered demand
  exceeds ready capacity by more than 20 % and ends at the first step where
  capacity is at least the demand again; `scale_up_s` is the longest episode
  (null without one), `scale_up_p50_s` the median, `scale_up_episodes` the count;
* predict accuracy (services with `predict`): the forecast made `horizon` earlier
  for each step against the offered demand of that step, over steps with demand:
  MAPE and the share within 10 %;
* utilisation: `utilisation_used` = CPU used / CPU requested by the service's
  pods; `utilisation_requested` = its requests / its pool's ready node CPU;
  pools: requests / ready node CPU;
* availability: demand served within the SLO / demand offered;
* energy vs baseline: energy / the energy of the baseline run (the same loop with
  every service static at its peak replicas of this run, jobs unshifted).

Numbers are rounded to 6 significant digits; undefined values are null.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mcpdsl.simulate.run import Raw, ServiceRun
from mcpdsl.simulate.trace import iso

VERSION = 1
SCALE_UP_EXCESS = 1.2
PREDICT_WITHIN = 0.1


def r6(x: float | None) -> float | None:
    """Deterministic rounding to 6 significant digits; NaN/inf become None."""
    if x is None or not math.isfinite(x):
        return None
    if x == 0:
        return 0.0
    return float(f"{x:.6g}")


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


@dataclass(frozen=True)
class Result:
    raw: Raw

    def figures(self) -> dict[str, Any]:
        raw = self.raw
        step = raw.settings.step
        services: dict[str, Any] = {}
        pool_cap = {p.spec.name: sum(p.cpu_capacity) for p in raw.pools}
        for run in raw.services:
            services[run.spec.name] = _service_figures(run, step, pool_cap)
        pools = {}
        total_energy = total_cost = 0.0
        for p in raw.pools:
            energy = sum(p.energy_kwh)
            cost = sum(p.cost_per_h) * step / 3600
            total_energy += energy
            total_cost += cost
            pools[p.spec.name] = {
                "utilisation": r6(_ratio(sum(p.cpu_requested), sum(p.cpu_capacity))),
                "node_hours": r6(sum(p.nodes) * step / 3600),
                "cost_usd": r6(cost),
                "energy_kwh": r6(energy),
            }
        offered = sum(sum(r.offered) for r in raw.services) * step
        served = sum(sum(r.served) for r in raw.services) * step
        within = sum(sum(r.within) for r in raw.services) * step
        carbon = sum(raw.grams)
        other = [j for j in raw.jobs if j.region != raw.region]
        total_energy += sum(j.energy_kwh for j in other)
        carbon += sum(j.grams for j in other)
        totals = {
            "requests": r6(offered),
            "served": r6(served),
            "availability": r6(_ratio(within, offered)),
            "cost_usd": r6(total_cost),
            "energy_kwh": r6(total_energy),
            "carbon_g": r6(carbon),
            "carbon_g_per_1k_requests": r6(_ratio(carbon * 1000, served)),
            "renewable_share": r6(raw.renewable),
            "energy_vs_baseline": r6(_ratio(total_energy, raw.baseline_energy_kwh)),
            "carbon_vs_baseline": r6(_ratio(carbon, raw.baseline_carbon_g)),
        }
        return {"services": services, "pools": pools, "totals": totals}

    def to_data(self) -> dict[str, Any]:
        raw = self.raw
        step = raw.settings.step

        def lst(values: Any) -> list[float | None]:
            return [r6(v) for v in values]

        services = {}
        for run in raw.services:
            services[run.spec.name] = {
                "offered": lst(run.offered),
                "served": lst(run.served),
                "replicas": lst(run.replicas),
                "ready": lst(run.ready),
                "capacity": lst(run.capacity),
                "cpu_used": lst(run.cpu_used),
                "cpu_requested": lst(run.cpu_requested),
                "predicted": lst(run.predicted) if run.predicted is not None else None,
            }
        pools = {
            p.spec.name: {
                "nodes": lst(p.nodes),
                "cost_per_h": lst(p.cost_per_h),
                "cpu_capacity": lst(p.cpu_capacity),
                "cpu_requested": lst(p.cpu_requested),
                "power_w": lst(p.power_w),
            }
            for p in raw.pools
        }
        renewable = r6(raw.renewable)
        return {
            "version": VERSION,
            "policy": raw.settings.policy,
            "trace": raw.trace.name,
            "region": raw.region,
            "step_s": step,
            "start": iso(raw.origin),
            "steps": raw.steps,
            "t": [r6(raw.settings.start + k * step) for k in range(raw.steps)],
            "services": services,
            "pools": pools,
            "carbon": {
                "intensity_g_per_kwh": lst(raw.intensity),
                "grams": lst(raw.grams),
                "renewable_share": [renewable] * raw.steps,
            },
            "jobs": [
                {
                    "name": j.name,
                    "pool": j.pool,
                    "region": j.region,
                    "start_s": r6(j.start_s),
                    "end_s": r6(j.end_s),
                    "energy_kwh": r6(j.energy_kwh),
                    "grams": r6(j.grams),
                }
                for j in raw.jobs
            ],
            "figures": self.figures(),
        }


def _service_figures(run: ServiceRun, step: int, pool_cap: dict[str, float]) -> dict[str, Any]:
    offered, capacity = run.offered, run.capacity
    episodes: list[float] = []
    started: int | None = None
    before_over = False
    for k in range(len(offered)):
        over = offered[k] > SCALE_UP_EXCESS * capacity[k] and offered[k] > 0
        if started is None and over and not before_over:
            started = k
        if started is not None and capacity[k] >= offered[k]:
            episodes.append((k - started) * step)
            started = None
        before_over = over
    if started is not None:
        episodes.append((len(offered) - started) * step)
    mape = within = None
    if run.predicted is not None:
        errors = [
            abs(p - a) / a
            for p, a in zip(run.predicted, offered, strict=True)
            if a > 0 and not math.isnan(p)
        ]
        if errors:
            mape = sum(errors) / len(errors)
            within = sum(1 for e in errors if e <= PREDICT_WITHIN) / len(errors)
    requested = sum(run.cpu_requested)
    total_offered = sum(offered)
    slo_violations = sum(
        1 for k in range(len(offered)) if offered[k] > 0 and run.within[k] < offered[k]
    )
    ordered = sorted(episodes)
    return {
        "scale_up_s": r6(max(episodes)) if episodes else None,
        "scale_up_p50_s": r6(ordered[len(ordered) // 2]) if ordered else None,
        "scale_up_episodes": len(episodes),
        "predict_mape": r6(mape),
        "predict_within_10pct": r6(within),
        "utilisation_requested": r6(_ratio(requested, pool_cap.get(run.spec.pool or "", 0.0))),
        "utilisation_used": r6(_ratio(sum(run.cpu_used), requested)),
        "availability": r6(_ratio(sum(run.within), total_offered)),
        "slo_violations": slo_violations,
        "max_replicas": int(max(run.replicas)) if len(run.replicas) else 0,
    }
