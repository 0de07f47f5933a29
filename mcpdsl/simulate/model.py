"""What the simulator reads from the IR: one frozen spec per service, pool and job.

Every default the language leaves open is here, named, with the reason
(docs/simulate.md repeats them):

* a pod is ready `STARTUP_S` (30 s) plus a seeded jitter of 0..`STARTUP_JITTER_S`
  after it is scheduled (image pulled, readiness probe passed);
* a node joins `PROVISION_S` (90 s) after the cluster autoscaler asks for it and
  is removed after `NODE_UNNEEDED_S` (10 min, the autoscaler's
  `scale-down-unneeded-time`) below `NODE_SCALE_DOWN_UTIL` (50 %) of requests;
* a service's per-pod throughput `mu` (in units of its trace `rps`): its first
  per-pod metric target divided by its cpu target (or by 80 %, Kubernetes'
  default target, without one): at its per-pod target a pod runs at its cpu
  target.  Without a per-pod metric, `RPS_PER_CORE` (100) requests/s per
  requested core at 100 % CPU;
* CPU per request = cpu request / `mu` (CPU limit = request: a pod never uses
  more than it requests); a service without `cpu` requests `DEFAULT_CPU`;
* memory use is a constant `MEMORY_USE` (50 %) of the request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from mcpdsl.compile.kubernetes_index import BALLOON_PRIORITY, TIER_PRIORITY, pool_tier
from mcpdsl.ir import model as m
from mcpdsl.ir.quotas import Amounts, quota_plan
from mcpdsl.optimize.coefficients import it_watts
from mcpdsl.optimize.workloads import scale_of

STARTUP_S = 30
STARTUP_JITTER_S = 15
PROVISION_S = 90
NODE_UNNEEDED_S = 600
NODE_SCALE_DOWN_UTIL = 0.5
HPA_SYNC_S = 15
RPS_PER_CORE = 100.0
DEFAULT_CPU = Decimal("0.1")
DEFAULT_TARGET_UTIL = 0.8
MEMORY_USE = 0.5
#: Share of ready capacity below which demand meets its latency objective.
SLO_UTILISATION = 0.9


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # the service's name (qualified when names collide)
    service: m.Service
    scale: m.Scale | None
    pool: str | None  # the pool's qualified name
    namespace: str
    priority: int
    cpu: int  # millicores requested per pod
    memory: int  # bytes
    gpu: int
    mu: float  # per-pod throughput (rps units) at 100 % CPU
    cpu_per_request: float  # cores per rps unit
    fixed: int  # replicas without a scale block


@dataclass(frozen=True)
class PoolSpec:
    name: str
    pool: m.Pool
    cpu: int  # millicores per node
    memory: int
    gpu: int
    idle_w: float
    peak_w: float
    cost_per_h: float
    priority: int
    min_nodes: int
    max_nodes: int
    balloons: tuple[tuple[int, int, int], ...]  # pods holding reservations (cpu, mem, gpu)


@dataclass(frozen=True)
class JobRun:
    """A job as the green scheduler placed it: daily at `start_utc_s` (s after 00:00 UTC)."""

    name: str
    job: m.Job
    region: str
    pool: str | None
    namespace: str
    start_minute: int  # minute of the day in `zone`
    zone: str
    runs_s: int
    cpu: int
    memory: int
    gpu: int
    energy_kwh: float  # facility energy per run (IT x PUE)
    window_minute: int  # the window's opening (the baseline starts there)


def millicores(cpu: Decimal | None) -> int:
    return math.ceil((cpu or Decimal(0)) * 1000)


def service_specs(project: m.Project) -> tuple[ServiceSpec, ...]:
    names = [s.name for s in project.services]
    out = []
    for s in sorted(project.services, key=lambda s: s.qualified):
        scale = scale_of(project, s)
        name = s.name if names.count(s.name) == 1 else s.qualified
        pool = f"{s.pool.package or s.package}.{s.pool.name}" if s.pool else None
        pool_decl = next((p for p in project.pools if p.qualified == pool), None)
        tier = pool_tier(pool_decl) if pool_decl else (s.tier or "default")
        priority = TIER_PRIORITY.get(tier.lower(), TIER_PRIORITY["default"])
        cpu = s.cpu if s.cpu is not None else DEFAULT_CPU
        mu = _throughput(scale, float(cpu))
        out.append(
            ServiceSpec(
                name=name,
                service=s,
                scale=scale,
                pool=pool,
                namespace=s.namespace,
                priority=priority,
                cpu=millicores(cpu),
                memory=s.memory or 0,
                gpu=s.gpu,
                mu=mu,
                cpu_per_request=float(cpu) / mu,
                fixed=s.replicas if s.replicas is not None else 1,
            )
        )
    return tuple(out)


def _throughput(scale: m.Scale | None, cpu: float) -> float:
    """`mu`: what one pod serves at 100 % CPU, in the unit of its first per-pod metric."""
    if scale is not None:
        per_pod = next((t for t in scale.targets if t.metric == "pods"), None)
        util = next((float(t.value) for t in scale.targets if t.metric == "cpu"), None)
        if per_pod is not None:
            return float(per_pod.value) / min(util or DEFAULT_TARGET_UTIL, 1.0)
    return RPS_PER_CORE * cpu


def pool_specs(project: m.Project, region: str) -> tuple[PoolSpec, ...]:
    out = []
    for p in sorted(project.pools, key=lambda p: p.qualified):
        node = p.node
        if node.idle_watts is not None and node.peak_watts is not None:
            idle, peak = float(node.idle_watts), float(node.peak_watts)
        else:  # the CCF estimate of the node shape (docs/carbon.md)
            idle = float(it_watts(region, node.cpu, node.memory, node.gpu, Decimal(0)))
            peak = float(it_watts(region, node.cpu, node.memory, node.gpu, Decimal(1)))
        size = (millicores(node.cpu), node.memory, node.gpu)
        balloons: list[tuple[int, int, int]] = []
        for r in p.reservations:
            want = (millicores(r.resources.cpu), r.resources.memory, r.resources.gpu)
            pods = max([1] + [math.ceil(w / n) for w, n in zip(want, size, strict=True) if n])
            each = (math.ceil(want[0] / pods), math.ceil(want[1] / pods), math.ceil(want[2] / pods))
            balloons.extend([each] * pods)
        out.append(
            PoolSpec(
                name=p.qualified,
                pool=p,
                cpu=size[0],
                memory=size[1],
                gpu=size[2],
                idle_w=idle,
                peak_w=peak,
                cost_per_h=float(node.cost_per_hour or 0),
                priority=TIER_PRIORITY.get(pool_tier(p).lower(), TIER_PRIORITY["default"]),
                min_nodes=p.min_nodes,
                max_nodes=p.max_nodes,
                balloons=tuple(balloons),
            )
        )
    return tuple(out)


def quotas(project: m.Project) -> dict[tuple[str, str], Amounts]:
    """The hard caps per (namespace, pool): the ResourceQuotas the build emits."""
    return {(q.namespace, q.pool): q.hard for q in quota_plan(project).scoped}


__all__ = ["BALLOON_PRIORITY", "JobRun", "PoolSpec", "ServiceSpec"]
