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
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from mcpdsl.diagnostics import Diagnostic, make
from mcpdsl.evaluate.scale import PREDICT_KEY, cron_state, decide
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
    """Run the loop (see the module docstring) and the baseline through the same loop.

    The baseline is the same cluster model and placement with **static** replicas:
    every service at the most replicas the policy gave it in the run (its
    peak-needed count), jobs at the opening of their window in the simulated region
    (no carbon-aware shifting); docs/simulate.md.
    """
    raw = _loop(project, trace, settings, table, jobs, None)
    static = tuple(int(max(r.replicas)) if len(r.replicas) else 0 for r in raw.services)
    base_jobs = [_unshifted(j, raw.region, project) for j in jobs]
    quiet = Settings(**{**settings.__dict__, "verify": False})
    base = _loop(project, trace, quiet, table, base_jobs, static)
    raw.baseline_energy_kwh = _total_energy(base)
    raw.baseline_carbon_g = sum(base.grams) + sum(
        j.grams for j in base.jobs if j.region != base.region
    )
    return raw


def _total_energy(raw: Raw) -> float:
    return sum(sum(p.energy_kwh) for p in raw.pools) + sum(
        j.energy_kwh for j in raw.jobs if j.region != raw.region
    )


def _unshifted(job: JobRun, region: str, project: m.Project) -> JobRun:
    """The job without the green scheduler: at its window's opening, in the simulated
    region when its pool runs there (else where it was placed)."""
    pool = next((p for p in project.pools if p.qualified == job.pool), None)
    home = region if pool is not None and region in pool.regions else job.region
    return replace(job, start_minute=job.window_minute, region=home)


class _Svc:
    """One service's state in the loop (see `_loop`)."""

    __slots__ = (
        "change_at",
        "changes",
        "cpr",
        "cron",
        "cron_until",
        "demand",
        "events",
        "hist",
        "hpa",
        "i",
        "key",
        "last_active",
        "mark",
        "mu",
        "pending",
        "pool",
        "ready",
        "replicas",
        "run",
        "share_per_core",
        "spec",
        "starting",
        "steady",
        "util",
        "vals",
        "wake",
    )  # fmt: skip

    def __init__(self, i: int, spec: ServiceSpec, run: ServiceRun, hpa: Prepared | None) -> None:
        self.i, self.spec, self.run, self.hpa = i, spec, run, hpa
        self.demand = run.offered
        self.mu, self.cpr = spec.mu, spec.cpu_per_request
        self.pool = spec.pool
        self.share_per_core = 0.0
        self.pending: list[Pod] = []
        self.starting: list[Pod] = []
        self.ready: list[Pod] = []
        self.replicas = 0
        self.hist: deque[tuple[float, int]] = deque()
        self.events: deque[tuple[float, int]] = deque()
        self.last_active: float | None = None
        self.cron: tuple[bool, ...] = ()
        self.cron_until = -math.inf
        self.key: object = None
        self.steady = False
        self.util = 0.0
        self.vals: tuple[float, ...] = ()
        self.mark = 0
        self.wake = 0
        # the steps where the offered demand changes (a quiet service sleeps until one)
        d = run.offered
        self.changes = [k for k in range(1, len(d)) if d[k] != d[k - 1]]
        self.change_at = 0


_SERVICE_SERIES = ("served", "within", "capacity", "ready", "cpu_used", "cpu_requested",
                   "replicas")  # fmt: skip
_POOL_SERIES = ("nodes", "cost_per_h", "cpu_capacity", "cpu_requested", "power_w", "energy_kwh")


def _flush(arrays: tuple[array, ...], vals: tuple[float, ...], lo: int, hi: int) -> None:
    """Write `vals` into steps lo..hi-1 of `arrays` (values held between changes)."""
    if hi <= lo or not vals:
        return
    n = hi - lo
    for a, v in zip(arrays, vals, strict=True):
        a[lo:hi] = array("d", [v]) * n


def _loop(
    project: m.Project,
    trace: Trace,
    settings: Settings,
    table: IntensityTable | None,
    jobs: list[JobRun],
    static: tuple[int, ...] | None,
) -> Raw:
    """The step loop; `static` (replicas per service) turns the HPA off (the baseline).

    Speed: a service is looked at only on the steps where something it depends on
    may change (its demand, a pod placed, ready or moved, an HPA sync that is not a
    repeat of a steady one, a `during` window opening or closing, `predict`);
    between, its recorded values are the previous step's and are written as runs.
    The HPA history keeps one entry per run of equal recommendations (the latest):
    the stabilisation window reads only the minimum and maximum inside it, which
    that entry keeps.  `verify=True` looks at every service on every step and
    checks every decision (and the tests compare its output with a normal run).
    """
    region = settings.region or "default"
    step = settings.step
    end = settings.end if settings.end is not None else trace.end + step
    steps = max(1, math.ceil((end - settings.start) / step))
    origin = trace.start + settings.start
    rng = random.Random(settings.seed)
    diagnostics: list[Diagnostic] = []
    verify = settings.verify

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
    svcs: list[_Svc] = []
    for i, spec in enumerate(specs):
        offered = _demand(trace, spec, steps, step, settings.start)
        scale = spec.scale if static is None else None
        has_predict = scale is not None and scale.predict is not None

        def zeros() -> array:
            return array("d", bytes(8 * steps))

        run = ServiceRun(
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
        runs.append(run)
        sv = _Svc(i, spec, run, Prepared(scale) if scale is not None else None)
        svcs.append(sv)
        if static is not None:
            start = static[i]
        elif spec.scale is not None:
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
        sv.replicas = start
        if spec.pool is None:
            diagnostics.append(
                make("S0120", f"service `{spec.name}` has no pool: it takes no node capacity", None)
            )
        pool = pools.get(spec.pool or "")
        if pool is not None and spec.cpu:
            share = spec.cpu / pool.cpu if pool.cpu else 0.0
            if pool.gpu and spec.gpu:
                share = max(share, spec.gpu / pool.gpu)
            sv.share_per_core = share / (spec.cpu / 1000)
    members = {name: [sv for sv in svcs if sv.pool == name] for name in pools}

    # ----------------------------------------------------------- initial cluster
    def startup() -> float:
        return STARTUP_S + (rng.randint(0, STARTUP_JITTER_S) if STARTUP_JITTER_S else 0)

    for state in states.values():
        for _ in range(state.spec.min_nodes):
            state.nodes.append(Node(state.spec, -1.0))
    for sv in svcs:
        spec = sv.spec
        for _ in range(sv.replicas):
            pod = new_pod(SERVICE, sv.i, spec.cpu, spec.memory, spec.gpu, spec.namespace,
                          spec.priority)  # fmt: skip
            if spec.pool is None:
                sv.ready.append(pod)
            else:
                states[spec.pool].add_pending(pod)
    for name, pool_spec in pools.items():
        for b in pool_spec.balloons:
            balloon = new_pod(BALLOON, -1, b[0], b[1], b[2], "", -10)
            states[name].add_pending(balloon)
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
                    svcs[pod.owner].ready.append(pod)
        for pod in state.pending:
            pod.unschedulable = False
            if pod.kind == SERVICE:
                svcs[pod.owner].pending.append(pod)

    # the step being run (the callbacks wake the services whose pods they touch)
    current_k = [0]

    def placed(pod: Pod, now: float) -> None:
        if pod.kind == SERVICE:
            sv = svcs[pod.owner]
            sv.pending.remove(pod)
            pod.ready_at = now + startup()
            sv.starting.append(pod)
            sv.wake = current_k[0]
        elif pod.kind == JOB:
            pod.ready_at = now + startup()
            running_jobs.append(pod)

    def moved(pod: Pod, now: float) -> None:
        if pod.kind == SERVICE:
            sv = svcs[pod.owner]
            if pod in sv.ready:
                sv.ready.remove(pod)
                sv.starting.append(pod)
            pod.ready_at = now + startup()
            sv.wake = min(sv.wake, current_k[0] + 1)

    # ----------------------------------------------------------- jobs
    running_jobs: list[Pod] = []
    job_pods: dict[int, tuple[JobRun, float]] = {}
    job_starts = _job_instances(jobs, region, origin, steps * step, step)
    records: list[JobRecord] = []
    job_index = 0

    # ----------------------------------------------------------- HPA state
    regress = [_Regression() if r.predicted is not None else None for r in runs]
    horizon_steps = [round(sv.hpa.horizon / step) if sv.hpa is not None else 0 for sv in svcs]
    lookback_steps = [
        max(2, round(float(s.scale.predict.lookback) / step))
        if s.scale is not None and s.scale.predict is not None
        else 0
        for s in specs
    ]
    next_sync = 0.0
    prev_sync_epoch = -math.inf
    next_down = 0.0
    sync_every = max(HPA_SYNC_S, step)
    pool_runs = {
        name: PoolRun(spec, *(array("d", bytes(8 * steps)) for _ in range(6)))
        for name, spec in pools.items()
    }
    pool_arrays = {name: tuple(getattr(pr, f) for f in _POOL_SERIES)
                   for name, pr in pool_runs.items()}  # fmt: skip
    pool_vals: dict[str, tuple[float, ...]] = dict.fromkeys(pools, ())
    pool_mark = dict.fromkeys(pools, 0)
    pool_util = dict.fromkeys(pools, 0.0)
    svc_arrays = [tuple(getattr(r, f) for f in _SERVICE_SERIES) for r in runs]
    hours = step / 3600.0
    member_items = list(members.items())

    for k in range(steps):
        current_k[0] = k
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
        if running_jobs:
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
                    g = e * _mean(intensity, (pod.ready_at - settings.start) / step, pod.end_at,
                                  step, settings.start)  # fmt: skip
                    records.append(
                        JobRecord(job.name, job.pool, region, pod.ready_at, pod.end_at, e, g)
                    )
        # 3. served load, 4. HPA
        sync = now >= next_sync
        if sync:
            next_sync = now + sync_every
        epoch = origin + k * step
        changed_pools = False
        for sv in svcs:
            if sv.wake > k and not verify:
                continue
            spec = sv.spec
            starting, ready = sv.starting, sv.ready
            next_ready = math.inf
            if starting:
                still = []
                for pod in starting:
                    if pod.ready_at <= now:
                        ready.append(pod)
                    else:
                        still.append(pod)
                        if pod.ready_at < next_ready:
                            next_ready = pod.ready_at
                if len(still) != len(starting):
                    starting[:] = still
            run = sv.run
            offered = sv.demand[k]
            n_ready = len(ready)
            capacity = n_ready * sv.mu
            served = offered if offered < capacity else capacity
            slo_cap = SLO_UTILISATION * capacity
            used = served * sv.cpr
            reg = regress[sv.i]
            if reg is not None:
                reg.add(k, offered, lookback_steps[sv.i])
            hpa = sv.hpa
            busy = False  # must be looked at again on the next step
            if hpa is not None:
                if sync:
                    busy = _sync(sv, hpa, k, epoch, offered, used, n_ready, prev_sync_epoch,
                                 reg, horizon_steps[sv.i], steps, states, new_pod, verify)  # fmt: skip
                else:
                    busy = True
            vals = (served, offered if offered < slo_cap else slo_cap, capacity, float(n_ready),
                    used, (n_ready + len(starting)) * spec.cpu / 1000, float(sv.replicas))  # fmt: skip
            if vals != sv.vals:
                _flush(svc_arrays[sv.i], sv.vals, sv.mark, k)
                sv.vals, sv.mark = vals, k
                util = used * sv.share_per_core
                if util != sv.util:
                    sv.util = util
                    changed_pools = True
            # when to look again
            changes, at = sv.changes, sv.change_at
            while at < len(changes) and changes[at] <= k:
                at += 1
            sv.change_at = at
            wake = changes[at] if at < len(changes) else steps
            if starting:
                wake = min(wake, math.ceil((min(p.ready_at for p in starting) - settings.start)
                                           / step))  # fmt: skip
            if busy or reg is not None:
                wake = k + 1
            elif hpa is not None and hpa.cron_min:
                wake = min(wake, max(k + 1, math.ceil((sv.cron_until - origin) / step)))
            sv.wake = max(wake, k + 1)
        if sync:
            prev_sync_epoch = epoch
        if changed_pools:
            for name, group in member_items:
                pool_util[name] = sum(sv.util for sv in group)
        # 5. cluster autoscaler, 6. power, cost
        down = now >= next_down
        if down:
            next_down = now + SCALE_DOWN_SCAN_S
        for name, state in states.items():
            if state.pending and any(p.unschedulable for p in state.pending):
                state.autoscale_up(now)
            elif down and len(state.nodes) > state.spec.min_nodes:
                state.autoscale_down(now, moved)
            ps = state.spec
            nodes = state.nodes
            n_nodes = len(nodes)
            if n_nodes and nodes[-1].ready_at > now:
                ready_nodes = sum(1 for n in nodes if n.ready_at <= now)
            else:
                ready_nodes = n_nodes
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
            pvals = (float(n_nodes), n_nodes * ps.cost_per_h, ready_nodes * ps.cpu / 1000,
                    state.req_cpu / 1000, power, power * pue * hours / 1000)  # fmt: skip
            if pvals != pool_vals[name]:
                _flush(pool_arrays[name], pool_vals[name], pool_mark[name], k)
                pool_vals[name], pool_mark[name] = pvals, k
    for sv in svcs:
        _flush(svc_arrays[sv.i], sv.vals, sv.mark, steps)
    for name in pools:
        _flush(pool_arrays[name], pool_vals[name], pool_mark[name], steps)
    grams = array("d", bytes(8 * steps))
    for pr in pool_runs.values():
        energy = pr.energy_kwh
        for k in range(steps):
            grams[k] += energy[k] * intensity[k]

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
        baseline_energy_kwh=0.0,
        baseline_carbon_g=0.0,
    )


def _sync(sv: _Svc, hpa: Prepared, k: int, epoch: float, offered: float, used: float,
          n_ready: int, prev_sync: float, reg: _Regression | None, horizon: int, steps: int,
          states: dict[str, PoolState], new_pod: object, verify: bool) -> bool:  # fmt: skip
    """One HPA sync of one service; True when it must be looked at on the next step
    (anything but a steady repeat of a sync that kept the replicas)."""
    current = sv.replicas
    hist, ev = sv.hist, sv.events
    if sv.steady and hist and hist[-1][1] == current and hist[-1][0] < prev_sync:
        # the syncs skipped while steady recommended `current`: their run's latest entry
        hist[-1] = (prev_sync, current)
    inputs = tuple(_inputs(hpa, sv.spec, offered, used, n_ready, current))
    forecast = None
    if hpa.predict_milli is not None and reg is not None:
        value = reg.predict(k + horizon)
        if value is not None:
            value = max(value, 0.0)
            target = k + horizon
            if sv.run.predicted is not None and target < steps:
                sv.run.predicted[target] = value
            forecast = math.ceil(value * 1000 / max(current, 1))
    if hpa.cron_min and epoch >= sv.cron_until:
        moment = datetime.fromtimestamp(epoch, UTC)
        found = [cron_state(d, moment) for d in hpa.scale.during]
        sv.cron = tuple(on for on, _ in found)
        sv.cron_until = min(until for _, until in found)
    cron = sv.cron
    keep = max(hpa.up_window, hpa.down_window)
    while hist and hist[0][0] <= epoch - keep:
        hist.popleft()
    while ev and ev[0][0] <= epoch - hpa.max_period:
        ev.popleft()
    key = (inputs, forecast, cron, current)
    desired: int
    rec: int | None
    if sv.steady and sv.key == key:
        # the inputs of the last sync, which proposed and kept `current`: the proposal
        # is `current` again, so stabilisation and policies keep it (`decide` agrees,
        # checked under verify)
        desired, rec, active = current, current, False
    else:
        desired, rec, active = hpa.decide(
            inputs, forecast, cron, current, hist, ev, epoch, sv.last_active
        )
    sv.steady = (desired, rec) == (current, current) and hpa.min_replicas > 0
    sv.key = key
    if verify:
        _verify(hpa, inputs, forecast, current, hist, ev, epoch, sv.last_active, desired, rec)
    if active:
        sv.last_active = epoch
    if rec is not None:
        if hist and hist[-1][1] == rec:
            hist[-1] = (epoch, rec)
        else:
            hist.append((epoch, rec))
    if desired != current:
        ev.append((epoch, desired - current))
        sv.replicas = desired
        _reconcile(sv, desired, states, new_pod)
    return not sv.steady or forecast is not None or hpa.predict_milli is not None


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


def _reconcile(sv: _Svc, desired: int, states: dict[str, PoolState], new_pod: object) -> None:
    """Create or delete pods: deletions take pending, then starting, then the newest ready."""
    spec = sv.spec
    pending, starting, ready = sv.pending, sv.starting, sv.ready
    have = len(pending) + len(starting) + len(ready)
    state = states.get(spec.pool or "")
    while have < desired:
        pod = new_pod(SERVICE, sv.i, spec.cpu, spec.memory, spec.gpu, spec.namespace, spec.priority)  # type: ignore[operator]
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
