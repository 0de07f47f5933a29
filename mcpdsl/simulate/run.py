"""The step loop: demand -> HPA -> pods -> scheduler -> nodes -> served load, energy, carbon.

`simulate(project, trace, settings)` runs one cluster (one region) over the
trace at a fixed step and returns a `Result` (its per-step series and the
figures, `mcpdsl.simulate.result`).  Each step, in this order:

1. nodes whose provisioning delay has passed become schedulable;
2. pending pods are placed first fit by priority (quota permitting, balloons
   preempted) and become ready a start-up delay later; finished job pods leave;
3. each service's offered demand meets its ready capacity (`served`,
   `within the SLO`, CPU used);
4. every `HPA_SYNC_S` the HPA/KEDA decision of each scale block
   (`mcpdsl.simulate.hpa`, the copy of `Engine.scale` checked against it) sets
   the replicas; pods are created or deleted (pending, then starting, then
   the newest ready pods go first);
5. the cluster autoscaler adds nodes for pods that fit nowhere and removes a
   node unneeded for 10 minutes;
6. node power (idle..peak by utilisation, times PUE), cost and carbon.
"""

from __future__ import annotations

import math
import random
from array import array
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from mcpdsl.diagnostics import Diagnostic, make
from mcpdsl.evaluate.scale import PREDICT_KEY, cron_active, decide
from mcpdsl.ir import model as m
from mcpdsl.optimize.coefficients import provider_of
from mcpdsl.optimize.intensity import IntensityTable
from mcpdsl.simulate.cluster import BALLOON, JOB, SERVICE, Node, Pod, PoolState
from mcpdsl.simulate.hpa import EXTERNAL, PODS, RESOURCE, Prepared
from mcpdsl.simulate.model import (
    HPA_SYNC_S,
    MEMORY_USE,
    SLO_UTILISATION,
    STARTUP_JITTER_S,
    STARTUP_S,
    JobRun,
    PoolSpec,
    ServiceSpec,
    pool_specs,
    quotas,
    service_specs,
)
from mcpdsl.simulate.trace import Trace

MAX_STEPS = 5_000_000
#: How often the cluster autoscaler looks for a node to remove (its scan, coarsened).
SCALE_DOWN_SCAN_S = 60


class SimulationMismatch(AssertionError):
    """`verify=True` found the prepared HPA disagreeing with `Engine.scale` (a bug)."""


@dataclass(frozen=True)
class Settings:
    step: int = 15
    start: float = 0.0  # seconds from the trace start
    end: float | None = None  # seconds from the trace start (None: the trace's end + 1 step)
    seed: int = 0
    region: str | None = None
    policy: str = ""
    verify: bool = False  # check every HPA decision against `decide` (slow; tests)


@dataclass
class ServiceRun:
    spec: ServiceSpec
    offered: array
    served: array
    replicas: array
    ready: array
    capacity: array
    cpu_used: array
    cpu_requested: array
    within: array
    predicted: array | None


@dataclass
class PoolRun:
    spec: PoolSpec
    nodes: array
    cost_per_h: array
    cpu_capacity: array
    cpu_requested: array
    power_w: array
    energy_kwh: array


@dataclass
class JobRecord:
    name: str
    pool: str | None
    region: str
    start_s: float | None
    end_s: float | None
    energy_kwh: float
    grams: float


@dataclass
class Raw:
    """Everything the loop recorded; `result.py` turns it into figures and data."""

    settings: Settings
    trace: Trace
    region: str
    origin: float  # epoch of step 0
    steps: int
    services: list[ServiceRun]
    pools: list[PoolRun]
    intensity: array
    renewable: float | None
    pue: float
    grams: array
    jobs: list[JobRecord]
    diagnostics: list[Diagnostic]
    baseline_energy_kwh: float
    baseline_carbon_g: float


def pick_region(project: m.Project, wanted: str | None) -> str | Diagnostic:
    """The simulated region: `--region`, else the first region of the first pool, else of
    the first carbon block, else `default`."""
    known = sorted(
        {r for p in project.pools for r in p.regions}
        | {r.region for c in project.carbons for r in c.regions}
    )
    if wanted is not None:
        if wanted not in known:
            return make(
                "S0116",
                f"no pool or carbon block lists region `{wanted}`",
                None,
                help="known regions: " + (", ".join(f"`{r}`" for r in known) or "none"),
            )
        return wanted
    for pool in sorted(project.pools, key=lambda p: p.qualified):
        if pool.regions:
            return pool.regions[0]
    for carbon in sorted(project.carbons, key=lambda c: c.qualified):
        if carbon.regions:
            return carbon.regions[0].region
    return "default"


def simulate(
    project: m.Project,
    trace: Trace,
    settings: Settings,
    table: IntensityTable | None,
    jobs: list[JobRun],
) -> Raw:
    """Run the loop (see the module docstring); `table` prices the region's carbon."""
    region = settings.region or "default"
    step = settings.step
    end = settings.end if settings.end is not None else trace.end + step
    steps = max(1, math.ceil((end - settings.start) / step))
    origin = trace.start + settings.start
    rng = random.Random(settings.seed)
    diagnostics: list[Diagnostic] = []

    specs = service_specs(project)
    pools = {p.name: p for p in pool_specs(project, region)}
    caps = quotas(project)
    states = {
        name: PoolState(spec, {ns: hard for (ns, pool), hard in caps.items() if pool == name})
        for name, spec in pools.items()
    }
    facts = None
    if table is not None and region in table.regions:
        facts = table.regions[region]
    pue = facts.pue if facts is not None else float(provider_of(region).pue)
    renewable = facts.renewable if facts is not None else None
    intensity = array("d", bytes(8 * steps))
    if table is not None and region in table.regions:
        for k in range(steps):
            t0 = origin + k * step
            intensity[k] = table.average(region, t0, t0 + step)

    seq = [0]

    def new_pod(kind: int, owner: int, cpu: int, mem: int, gpu: int, ns: str, prio: int) -> Pod:
        seq[0] += 1
        return Pod(kind, owner, cpu, mem, gpu, ns, prio, seq[0])

    # ----------------------------------------------------------- services
    runs: list[ServiceRun] = []
    prepared: list[Prepared | None] = []
    spec_replicas: list[int] = []
    pods_of: list[tuple[list[Pod], list[Pod], list[Pod]]] = []  # pending, starting, ready
    demand: list[array] = []
    for spec in specs:
        offered = _demand(trace, spec, steps, step, settings.start)
        demand.append(offered)
        has_predict = spec.scale is not None and spec.scale.predict is not None

        def zeros() -> array:
            return array("d", bytes(8 * steps))

        runs.append(
            ServiceRun(
                spec=spec,
                offered=offered,
                served=zeros(),
                replicas=zeros(),
                ready=zeros(),
                capacity=zeros(),
                cpu_used=zeros(),
                cpu_requested=zeros(),
                within=zeros(),
                predicted=array("d", [math.nan] * steps) if has_predict else None,
            )
        )
        prepared.append(Prepared(spec.scale) if spec.scale is not None else None)
        if spec.scale is not None:
            s = spec.scale
            start = s.expected if s.expected is not None else s.min_replicas
            start = min(max(start, s.min_replicas), max(s.max_replicas, s.min_replicas))
            if (
                trace.get(spec.service.name, "rps") is None
                and trace.get(spec.service.name, "cpu") is None
                and spec.name not in {x.service for x in trace.series}
            ):
                diagnostics.append(
                    make("S0117", f"service `{spec.name}` has a `scale` block but no demand", None)
                )
        else:
            start = spec.fixed
        spec_replicas.append(start)
        pods_of.append(([], [], []))
        if spec.pool is None:
            diagnostics.append(
                make("S0120", f"service `{spec.name}` has no pool: it takes no node capacity", None)
            )

    # ----------------------------------------------------------- initial cluster
    def startup() -> float:
        return STARTUP_S + (rng.randint(0, STARTUP_JITTER_S) if STARTUP_JITTER_S else 0)

    for state in states.values():
        for _ in range(state.spec.min_nodes):
            state.nodes.append(Node(state.spec, -1.0))
    initial: list[Pod] = []
    for i, spec in enumerate(specs):
        for _ in range(spec_replicas[i]):
            pod = new_pod(SERVICE, i, spec.cpu, spec.memory, spec.gpu, spec.namespace,
                          spec.priority)  # fmt: skip
            initial.append(pod)
    for name, pool_spec in pools.items():
        for b in pool_spec.balloons:
            initial.append(new_pod(BALLOON, -1, b[0], b[1], b[2], "", -10))
            initial[-1].ready_at = 0.0
            initial[-1].owner = -1
            states[name].add_pending(initial[-1])
    for pod in initial:
        if pod.kind != SERVICE:
            continue
        spec = specs[pod.owner]
        if spec.pool is None:
            pods_of[pod.owner][2].append(pod)
            continue
        states[spec.pool].add_pending(pod)
    # place the initial pods, adding ready nodes up to the maximum
    for state in states.values():
        for _ in range(state.spec.max_nodes + 1):
            state.dirty = True
            state.schedule(-1.0, lambda pod, now: None)
            if not state.pending or len(state.nodes) >= state.spec.max_nodes:
                break
            state.nodes.append(Node(state.spec, -1.0))
        state.dirty = True
        for node in state.nodes:
            for pod in node.pods:
                if pod.kind == SERVICE:
                    pods_of[pod.owner][2].append(pod)
        for pod in state.pending:
            if pod.kind == SERVICE:
                pods_of[pod.owner][0].append(pod)

    def placed(pod: Pod, now: float) -> None:
        if pod.kind == SERVICE:
            pending, starting, _ = pods_of[pod.owner]
            pending.remove(pod)
            pod.ready_at = now + startup()
            starting.append(pod)
        elif pod.kind == JOB:
            pod.ready_at = now + startup()
            running_jobs.append(pod)

    def moved(pod: Pod, now: float) -> None:
        if pod.kind == SERVICE:
            _, starting, ready = pods_of[pod.owner]
            if pod in ready:
                ready.remove(pod)
                starting.append(pod)
            pod.ready_at = now + startup()

    # ----------------------------------------------------------- jobs
    running_jobs: list[Pod] = []
    job_pods: dict[int, tuple[JobRun, float]] = {}
    job_starts = _job_instances(jobs, region, origin, steps * step, step)
    records: list[JobRecord] = []
    job_index = 0

    # ----------------------------------------------------------- HPA state
    n_svc = len(specs)
    history: list[deque[tuple[float, int]]] = [deque() for _ in range(n_svc)]
    events: list[deque[tuple[float, int]]] = [deque() for _ in range(n_svc)]
    last_active: list[float | None] = [None] * n_svc
    cron_cache: list[tuple[int, tuple[bool, ...]]] = [(-1, ())] * n_svc
    regress = [_Regression() if r.predicted is not None else None for r in runs]
    horizon_steps = [
        round(p.horizon / step) if p is not None and runs[i].predicted is not None else 0
        for i, p in enumerate(prepared)
    ]
    lookback_steps = [
        max(2, round(float(s.scale.predict.lookback) / step))
        if s.scale is not None and s.scale.predict is not None
        else 0
        for s in specs
    ]
    next_sync = 0.0
    steady: list[object] = [None] * n_svc
    next_down = 0.0
    shares = []
    for spec in specs:
        pool = pools.get(spec.pool or "")
        if pool is None:
            shares.append(0.0)
            continue
        share = spec.cpu / pool.cpu if pool.cpu else 0.0
        if pool.gpu and spec.gpu:
            share = max(share, spec.gpu / pool.gpu)
        shares.append(share)

    pool_runs = {
        name: PoolRun(spec, *(array("d", bytes(8 * steps)) for _ in range(6)))
        for name, spec in pools.items()
    }
    grams = array("d", bytes(8 * steps))
    pool_util = dict.fromkeys(pools, 0.0)
    hours = step / 3600.0

    for k in range(steps):
        now = settings.start + k * step  # seconds from the trace start
        # 1-2. jobs start, scheduling, readiness
        while job_index < len(job_starts) and job_starts[job_index][0] <= now:
            at, job = job_starts[job_index]
            job_index += 1
            if job.pool is None or job.pool not in states:
                continue
            pool = pools[job.pool]
            pod = new_pod(JOB, -1, job.cpu, job.memory, job.gpu, job.namespace, pool.priority)
            pod.end_at = -1.0
            job_pods[pod.seq] = (job, at)
            states[job.pool].add_pending(pod)
        for state in states.values():
            state.schedule(now, placed)
        for pod in list(running_jobs):
            if pod.end_at < 0 and pod.ready_at <= now:
                job, _ = job_pods[pod.seq]
                pod.end_at = pod.ready_at + job.runs_s
            if 0 <= pod.end_at <= now:
                running_jobs.remove(pod)
                job, _ = job_pods.pop(pod.seq)
                assert pod.node is not None and job.pool is not None
                states[job.pool].remove(pod)
                e = job.energy_kwh
                g = e * _mean(intensity, (pod.ready_at - settings.start) / step, pod.end_at, step,
                              settings.start)  # fmt: skip
                records.append(
                    JobRecord(job.name, job.pool, region, pod.ready_at, pod.end_at, e, g)
                )
        for util_key in pool_util:
            pool_util[util_key] = 0.0
        # 3. served load
        sync = now >= next_sync
        if sync:
            next_sync = now + max(HPA_SYNC_S, step)
        epoch = origin + k * step
        for i, spec in enumerate(specs):
            _, starting, ready = pods_of[i]
            if starting:
                still = []
                for pod in starting:
                    if pod.ready_at <= now:
                        ready.append(pod)
                    else:
                        still.append(pod)
                if len(still) != len(starting):
                    starting[:] = still
            run = runs[i]
            offered = demand[i][k]
            n_ready = len(ready)
            capacity = n_ready * spec.mu
            served = offered if offered < capacity else capacity
            slo_cap = SLO_UTILISATION * capacity
            run.served[k] = served
            run.within[k] = offered if offered < slo_cap else slo_cap
            run.capacity[k] = capacity
            run.ready[k] = n_ready
            used = served * spec.cpu_per_request
            run.cpu_used[k] = used
            run.cpu_requested[k] = (n_ready + len(starting)) * spec.cpu / 1000
            if spec.pool is not None and spec.cpu:
                pool_util[spec.pool] += used / (spec.cpu / 1000) * shares[i]
            reg = regress[i]
            if reg is not None:
                reg.add(k, offered, lookback_steps[i])
            # 4. HPA
            hpa = prepared[i]
            if hpa is not None and sync:
                current = spec_replicas[i]
                inputs = tuple(_inputs(hpa, spec, offered, used, n_ready, current))
                forecast = None
                if hpa.predict_milli is not None and reg is not None:
                    value = reg.predict(k + horizon_steps[i])
                    if value is not None:
                        value = max(value, 0.0)
                        target = k + horizon_steps[i]
                        if run.predicted is not None and target < steps:
                            run.predicted[target] = value
                        forecast = math.ceil(value * 1000 / max(current, 1))
                cron: tuple[bool, ...] = ()
                if hpa.cron_min:
                    minute = int(epoch // 60)
                    cached = cron_cache[i]
                    if cached[0] != minute:
                        moment = datetime.fromtimestamp(epoch, UTC)
                        cached = (minute, tuple(cron_active(d, moment) for d in hpa.scale.during))
                        cron_cache[i] = cached
                    cron = cached[1]
                hist, ev = history[i], events[i]
                keep = max(hpa.up_window, hpa.down_window)
                while hist and hist[0][0] <= epoch - keep:
                    hist.popleft()
                while ev and ev[0][0] <= epoch - hpa.max_period:
                    ev.popleft()
                key = (inputs, forecast, cron, current)
                desired: int
                rec: int | None
                if (
                    steady[i] == key
                    and not ev
                    and hpa.min_replicas > 0
                    and all(r == current for _, r in hist)
                ):
                    # the same inputs as the last sync, which kept `current` with every
                    # remembered recommendation equal to it: `decide` returns the same
                    desired, rec, active = current, current, False
                else:
                    desired, rec, active = hpa.decide(
                        inputs, forecast, cron, current, hist, ev, epoch, last_active[i]
                    )
                    steady[i] = key if (desired, rec) == (current, current) else None
                if settings.verify:
                    _verify(hpa, inputs, forecast, current, hist, ev, epoch, last_active[i],
                            desired, rec)  # fmt: skip
                if active:
                    last_active[i] = epoch
                if rec is not None:
                    hist.append((epoch, rec))
                if desired != current:
                    ev.append((epoch, desired - current))
                    spec_replicas[i] = desired
                    _reconcile(i, spec, desired, pods_of[i], states, new_pod)
            run.replicas[k] = spec_replicas[i]
        # 5. cluster autoscaler, 6. power, cost, carbon
        step_kwh = 0.0
        down = now >= next_down
        if down:
            next_down = now + SCALE_DOWN_SCAN_S
        for name, state in states.items():
            if state.pending:
                state.autoscale_up(now)
            elif down and len(state.nodes) > state.spec.min_nodes:
                state.autoscale_down(now, moved)
            pr = pool_runs[name]
            ps = state.spec
            n_nodes = len(state.nodes)
            ready_nodes = sum(1 for n in state.nodes if n.ready_at <= now)
            util = pool_util[name]
            for pod in running_jobs:
                if (
                    pod.node is not None
                    and pod.ready_at <= now
                    and job_pods[pod.seq][0].pool == name
                ):
                    util += max(pod.cpu / ps.cpu if ps.cpu else 0.0,
                                pod.gpu / ps.gpu if ps.gpu else 0.0)  # fmt: skip
            util = min(util, float(ready_nodes))
            power = n_nodes * ps.idle_w + (ps.peak_w - ps.idle_w) * util
            pr.nodes[k] = n_nodes
            pr.cost_per_h[k] = n_nodes * ps.cost_per_h
            pr.cpu_capacity[k] = ready_nodes * ps.cpu / 1000
            pr.cpu_requested[k] = state.req_cpu / 1000
            pr.power_w[k] = power
            kwh = power * pue * hours / 1000
            pr.energy_kwh[k] = kwh
            step_kwh += kwh
        grams[k] = step_kwh * intensity[k]

    for state in states.values():
        if state.blocked_quota or state.blocked_capacity:
            why = []
            if state.blocked_capacity:
                why.append(f"{state.blocked_capacity} steps short of node capacity")
            if state.blocked_quota:
                why.append(f"{state.blocked_quota} steps held back by a team quota")
            diagnostics.append(
                make(
                    "S0119",
                    f"pool `{state.spec.name}` had pending pods: {', '.join(why)}",
                    None,
                )
            )
    records.extend(_other_jobs(jobs, region, origin, steps * step, table))
    for pod in running_jobs:  # still running at the end
        job, _ = job_pods[pod.seq]
        records.append(JobRecord(job.name, job.pool, region, pod.ready_at, None, 0.0, 0.0))
    records.sort(key=lambda r: (r.start_s if r.start_s is not None else math.inf, r.name))
    base_kwh, base_g = _baseline(runs, pool_runs, pools, specs, shares, pue, intensity, step)
    return Raw(
        settings=settings,
        trace=trace,
        region=region,
        origin=origin,
        steps=steps,
        services=runs,
        pools=list(pool_runs.values()),
        intensity=intensity,
        renewable=renewable,
        pue=pue,
        grams=grams,
        jobs=records,
        diagnostics=diagnostics,
        baseline_energy_kwh=base_kwh,
        baseline_carbon_g=base_g,
    )


# ------------------------------------------------------------------ helpers


def _demand(trace: Trace, spec: ServiceSpec, steps: int, step: int, start: float) -> array:
    """Offered load per step in rps units: the `rps` series, else `cpu` / cores per request."""
    names = (spec.name, spec.service.name, spec.service.qualified)
    series = next((trace.get(n, "rps") for n in names if trace.get(n, "rps")), None)
    factor = 1.0
    if series is None:
        series = next((trace.get(n, "cpu") for n in names if trace.get(n, "cpu")), None)
        factor = 1.0 / spec.cpu_per_request
    out = array("d", bytes(8 * steps))
    if series is None:
        return out
    j, value = 0, 0.0
    times, values = series.times, series.values
    for k in range(steps):
        t = start + k * step
        while j < len(times) and times[j] <= t:
            value = values[j] * factor
            j += 1
        out[k] = value
    return out


def _inputs(
    hpa: Prepared, spec: ServiceSpec, offered: float, used: float, ready: int, current: int
) -> list[int | None]:
    """The metric values the HPA sees, quantised as `decide` reads them (see hpa.py).

    Pods not yet ready count as using nothing, and when that would turn a scale-up
    into a scale-down the HPA holds (replica_calculator.go's rule for unready pods).
    """
    out: list[int | None] = []
    first = next((w for k, w in zip(hpa.kinds, hpa.wanted, strict=True) if k != RESOURCE), None)
    request = spec.cpu / 1000
    for kind, want, key in zip(hpa.kinds, hpa.wanted, hpa.keys, strict=True):
        if kind == RESOURCE:
            if ready == 0:
                out.append(None)
                continue
            if key == "memory":
                out.append(int(MEMORY_USE * 100))
                continue
            raw = math.floor(used / (ready * request) * 100 + 1e-9) if request else 0
            out.append(_held(raw, math.floor(used / (current * request) * 100 + 1e-9)
                             if request and current else raw, want, ready < current))  # fmt: skip
        else:
            total = offered * (want / first) if first else offered
            if kind == EXTERNAL:
                out.append(math.ceil(total * 1000 / max(current, 1) - 1e-9))
                continue
            if ready == 0:
                out.append(None)
                continue
            raw = math.ceil(total * 1000 / ready - 1e-9)
            spread = math.ceil(total * 1000 / current - 1e-9) if current else raw
            out.append(_held(raw, spread, want, ready < current))
    assert PODS != RESOURCE
    return out


def _held(raw: int, spread: int, want: int, unready: bool) -> int:
    if not unready:
        return raw
    ratio = raw / want
    if abs(1.0 - ratio) <= 0.1:
        return want
    if ratio > 1.0 and spread < want:
        return want
    return spread


def _verify(hpa: Prepared, inputs: tuple[int | None, ...], forecast: int | None, current: int,
            hist: deque[tuple[float, int]], ev: deque[tuple[float, int]], epoch: float,
            last_active: float | None, desired: int, rec: int | None) -> None:  # fmt: skip
    metrics: dict[str, object] = {}
    for kind, key, value in zip(hpa.kinds, hpa.keys, inputs, strict=True):
        if value is not None:
            metrics[key] = value / 100 if kind == RESOURCE else value / 1000
    if hpa.predict_milli is not None and forecast is not None:
        metrics[PREDICT_KEY] = forecast / 1000
    found = decide(
        hpa.scale,
        metrics,
        current,
        list(hist),
        datetime.fromtimestamp(epoch, UTC),
        list(ev),
        last_active,
    )
    if (found.desired, found.recommendation) != (desired, rec):
        raise SimulationMismatch(
            f"{hpa.scale.qualified} at {epoch}: prepared ({desired}, {rec}) != "
            f"decide ({found.desired}, {found.recommendation}) for {metrics}, current {current}"
        )


def _reconcile(i: int, spec: ServiceSpec, desired: int, lists: tuple[list[Pod], list[Pod],
               list[Pod]], states: dict[str, PoolState], new_pod: object) -> None:  # fmt: skip
    pending, starting, ready = lists
    have = len(pending) + len(starting) + len(ready)
    state = states.get(spec.pool or "")
    while have < desired:
        pod = new_pod(SERVICE, i, spec.cpu, spec.memory, spec.gpu, spec.namespace, spec.priority)  # type: ignore[operator]
        if state is None:
            starting.append(pod)
        else:
            pending.append(pod)
            state.add_pending(pod)
        have += 1
    while have > desired:
        victim = pending or starting or ready
        pod = victim.pop()
        if state is not None:
            state.remove(pod)
        have -= 1


class _Regression:
    """Least squares over a sliding window, as PromQL's `predict_linear` fits its range."""

    __slots__ = ("n", "points", "st", "stt", "sty", "sy")

    def __init__(self) -> None:
        self.points: deque[tuple[int, float]] = deque()
        self.n = 0
        self.st = self.stt = 0
        self.sy = self.sty = 0.0

    def add(self, k: int, y: float, window: int) -> None:
        self.points.append((k, y))
        self.n += 1
        self.st += k
        self.stt += k * k
        self.sy += y
        self.sty += k * y
        while self.points and self.points[0][0] <= k - window:
            old, oy = self.points.popleft()
            self.n -= 1
            self.st -= old
            self.stt -= old * old
            self.sy -= oy
            self.sty -= old * oy

    def predict(self, at: int) -> float | None:
        n = self.n
        if n < 2:
            return None
        denominator = n * self.stt - self.st * self.st
        if denominator == 0:
            return None
        slope = (n * self.sty - self.st * self.sy) / denominator
        mean_t, mean_y = self.st / n, self.sy / n
        return mean_y + slope * (at - mean_t)


def _job_instances(
    jobs: list[JobRun], region: str, origin: float, length: float, step: int
) -> list[tuple[float, JobRun]]:
    """Daily starts (seconds from the trace start) of the jobs placed in this region."""
    out = []
    for job in jobs:
        if job.region != region:
            continue
        for at in _daily(job.start_minute, job.zone, origin, length):
            out.append((at, job))
    return sorted(out, key=lambda x: (x[0], x[1].name))


def _daily(minute: int, zone_name: str, origin: float, length: float) -> list[float]:
    zone = UTC if zone_name.upper() == "UTC" else ZoneInfo(zone_name)
    day = datetime.fromtimestamp(origin, zone).date()
    out = []
    for offset in range(-1, int(length // 86400) + 2):
        d = day.fromordinal(day.toordinal() + offset)
        hour, mins = divmod(minute, 60)
        at = datetime(d.year, d.month, d.day, hour % 24, mins, tzinfo=zone).timestamp()
        if origin <= at < origin + length:
            out.append(at - origin)
    return out


def _other_jobs(
    jobs: list[JobRun], region: str, origin: float, length: float, table: IntensityTable | None
) -> list[JobRecord]:
    """Jobs the scheduler placed in another region: their energy and carbon still count."""
    out = []
    for job in jobs:
        if job.region == region:
            continue
        for at in _daily(job.start_minute, job.zone, origin, length):
            g = 0.0
            if table is not None and job.region in table.regions:
                g = job.energy_kwh * table.average(
                    job.region, origin + at, origin + at + job.runs_s
                )
            out.append(
                JobRecord(job.name, job.pool, job.region, at, at + job.runs_s, job.energy_kwh, g)
            )
    return out


def _mean(intensity: array, first: float, end_s: float, step: int, start: float) -> float:
    lo = max(0, int(first))
    hi = min(len(intensity), max(lo + 1, math.ceil((end_s - start) / step)))
    values = intensity[lo:hi]
    return sum(values) / len(values) if len(values) else 0.0


def _baseline(
    runs: list[ServiceRun],
    pool_runs: dict[str, PoolRun],
    pools: dict[str, PoolSpec],
    specs: tuple[ServiceSpec, ...],
    shares: list[float],
    pue: float,
    intensity: array,
    step: int,
) -> tuple[float, float]:
    """Static provisioning: every service at the most replicas it had, always ready.

    Nodes: the pool's requests at those replicas (plus reservations), in whole
    nodes, within the pool's range; each node at idle plus the served load.
    """
    hours = step / 3600.0
    kwh = grams = 0.0
    for name, spec in pools.items():
        peak_cpu = sum(b[0] for b in spec.balloons)
        peak_gpu = sum(b[2] for b in spec.balloons)
        members = [i for i, s in enumerate(specs) if s.pool == name]
        for i in members:
            top = max(runs[i].replicas) if len(runs[i].replicas) else 0
            peak_cpu += int(top) * specs[i].cpu
            peak_gpu += int(top) * specs[i].gpu
        need = math.ceil(peak_cpu / spec.cpu) if spec.cpu else 0
        if spec.gpu:
            need = max(need, math.ceil(peak_gpu / spec.gpu))
        nodes = min(max(need, spec.min_nodes), spec.max_nodes)
        tops = {i: max(runs[i].replicas) * specs[i].mu if len(runs[i].replicas) else 0.0
                for i in members}  # fmt: skip
        for k in range(len(intensity)):
            util = 0.0
            for i in members:
                s = specs[i]
                if s.cpu:
                    served = min(runs[i].offered[k], tops[i])
                    util += served * s.cpu_per_request / (s.cpu / 1000) * shares[i]
            util = min(util, float(nodes))
            power = nodes * spec.idle_w + (spec.peak_w - spec.idle_w) * util
            e = power * pue * hours / 1000
            kwh += e
            grams += e * intensity[k]
    return kwh, grams
