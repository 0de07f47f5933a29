"""What the optimisers read from services and jobs: replica counts, footprints, utilisation."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from mcpdsl.ir import model as m
from mcpdsl.optimize.coefficients import DEFAULT_UTILISATION

MIB = 1024 * 1024


@dataclass(frozen=True)
class Replicas:
    min: int
    expected: int
    max: int


def replicas(project: m.Project, service: m.Service) -> Replicas:
    """Min, expected and max replicas per region.

    From the service's `scale` block (`expected`, else the minimum), else its
    fixed `replicas`, else 1.
    """
    scale = scale_of(project, service)
    if scale is not None:
        expected = scale.expected if scale.expected is not None else scale.min_replicas
        expected = min(max(expected, scale.min_replicas), scale.max_replicas)
        return Replicas(scale.min_replicas, expected, scale.max_replicas)
    fixed = service.replicas if service.replicas is not None else 1
    return Replicas(fixed, fixed, fixed)


def scale_of(project: m.Project, service: m.Service) -> m.Scale | None:
    for scale in project.scales:
        if scale.service.name == service.name and (scale.service.package or scale.package) == (
            service.package
        ):
            return scale
    return None


def cpu_utilisation(project: m.Project, service: m.Service) -> Decimal:
    """Average CPU utilisation of a replica: its HPA cpu target, else the CCF 50 %."""
    scale = scale_of(project, service)
    if scale is not None:
        for target in scale.targets:
            if target.metric == "cpu":
                return min(target.value, Decimal(1))
    return DEFAULT_UTILISATION


def footprint(cpu: Decimal | None, memory: int | None, gpu: int) -> tuple[int, int, int]:
    """Requests of one pod as integers: millicores, MiB (rounded up), GPUs."""
    millicores = int((cpu or Decimal(0)) * 1000)
    mib = -(-(memory or 0) // MIB)
    return (millicores, mib, gpu)


def pool_of(project: m.Project, ref: m.Ref | None, package: str) -> m.Pool | None:
    if ref is None:
        return None
    wanted = (ref.package or package, ref.name)
    for pool in project.pools:
        if (pool.package, pool.name) == wanted:
            return pool
    return None


def carbon_of(project: m.Project, ref: m.Ref | None, package: str) -> m.Carbon | None:
    if ref is None:
        return project.carbons[0] if len(project.carbons) == 1 else None
    wanted = (ref.package or package, ref.name)
    for carbon in project.carbons:
        if (carbon.package, carbon.name) == wanted:
            return carbon
    return None
