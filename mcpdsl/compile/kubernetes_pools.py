"""Pools: quotas -> ResourceQuota, tiers -> PriorityClass, reservations -> balloon Deployments.

Kubernetes has no object that *reserves* capacity for one workload.  A
ResourceQuota caps a namespace; it reserves nothing.  The closest honest
realisation of `reserve SERVICE { ... }` is headroom: a "balloon" Deployment
of pause pods at a negative priority that holds the reserved requests on the
pool's nodes (so the cluster autoscaler keeps that capacity) and is preempted
by any real pod that needs the room.  It is headroom for the pool, not an
exclusive reservation for the named service; the README says so.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from mcpdsl.compile import TargetContext, TargetOutput
from mcpdsl.compile.kubernetes_common import (
    GPU_RESOURCE,
    memory_quantity,
    metadata,
    pod_metadata,
    resources,
    selector,
    source_of,
)
from mcpdsl.compile.kubernetes_index import (
    BALLOON_CLASS,
    BALLOON_PRIORITY,
    RESERVATIONS_KEY,
    TIER_PRIORITY,
    Index,
    pool_tier,
)
from mcpdsl.compile.kubernetes_workloads import Placement, apply_placement
from mcpdsl.ir import model as m
from mcpdsl.ir.quotas import Amounts, ScopedQuota

PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
QUOTA_COMPONENT = "quota"
BALLOON_COMPONENT = "balloon"
PRIORITY_COMPONENT = "priority"


def quota_hard(hard: Amounts) -> dict[str, str]:
    """`spec.hard` of a scoped quota; an uncapped (None) resource is not limited.

    Both requests and limits are capped because every pod this target emits
    sets limits equal to requests.  Extended resources (GPUs) can only be
    quota'd by request.  A share of 0 is written as 0: that namespace may not
    use the resource in the pool at all.
    """
    out: dict[str, str] = {}
    if hard.cpu is not None:
        out["requests.cpu"] = out["limits.cpu"] = f"{hard.cpu}m"
    if hard.memory is not None:
        out["requests.memory"] = out["limits.memory"] = memory_quantity(hard.memory)
    if hard.gpu is not None:
        out[f"requests.{GPU_RESOURCE}"] = str(hard.gpu)
    return out


def resource_quota(index: Index, scoped: ScopedQuota) -> dict[str, Any]:
    """v1 ResourceQuota of one (namespace, pool): the team shares placed there (ir/quotas.py).

    Scoped to the pool's PriorityClass, so it counts the namespace's pods
    placed in that pool and nothing else.
    """
    pool = index.pools[scoped.pool]
    teams = sorted({s.team for s in scoped.shares})
    first = pool.quotas[min(s.position for s in scoped.shares)]
    shares = {
        s.team: {
            k.removeprefix("requests."): v for k, v in quota_hard(s.hard).items() if k[0] == "r"
        }
        for s in scoped.shares
    }
    annotations = {
        "mcpdsl.io/pool": pool.qualified,
        "mcpdsl.io/teams": json.dumps(teams, ensure_ascii=False),
        "mcpdsl.io/shares": json.dumps(shares, sort_keys=True, ensure_ascii=False),
    }
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": metadata(
            index.pool_names[pool.qualified],
            package=pool.package,
            component=QUOTA_COMPONENT,
            namespace=index.namespace(scoped.namespace),
            source=source_of(first.span or pool.span),
            annotations=annotations,
        ),
        "spec": {
            "hard": quota_hard(scoped.hard),
            "scopeSelector": {
                "matchExpressions": [
                    {
                        "operator": "In",
                        "scopeName": "PriorityClass",
                        "values": [index.priority_class(pool)],
                    }
                ]
            },
        },
    }


def tier_priority(tier: str) -> int | None:
    """The PriorityClass value of a tier, None for a tier not in the table."""
    return TIER_PRIORITY.get(tier.lower())


def priority_class(
    index: Index, pool: m.Pool, ctx: TargetContext, report: TargetOutput
) -> dict[str, Any]:
    """scheduling.k8s.io/v1 PriorityClass of a pool, valued by its tier (batch never preempts).

    One class per pool (not per tier) because a ResourceQuota can only select
    pods by PriorityClass: the pool's quotas are scoped to it (ir/quotas.py).
    """
    tier = pool_tier(pool)
    value = tier_priority(tier)
    if value is None:
        report.unsupported(
            "B0103",
            f"tier `{tier}` of pool `{pool.qualified}` is not in the priority table; "
            f"its PriorityClass gets the default priority {TIER_PRIORITY['default']}",
            ctx.clause_span(pool.span, "tier"),
            help="known tiers: " + ", ".join(f"`{t}`" for t in sorted(TIER_PRIORITY)),
        )
        value = TIER_PRIORITY["default"]
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "description": f"mcpdsl pool {pool.qualified} (tier {tier})",
        "globalDefault": False,
        "metadata": metadata(
            index.priority_class(pool),
            package=pool.package,
            component=PRIORITY_COMPONENT,
            source=source_of(pool.span),
        ),
        "preemptionPolicy": "Never" if tier.lower() == "batch" else "PreemptLowerPriority",
        "value": value,
    }


def balloon_class(package: str) -> dict[str, Any]:
    """The negative, non-preempting priority of balloon pods: anything evicts them."""
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "description": "mcpdsl reservation headroom (pause pods any workload may preempt)",
        "globalDefault": False,
        "metadata": metadata(BALLOON_CLASS, package=package, component=PRIORITY_COMPONENT),
        "preemptionPolicy": "Never",
        "value": BALLOON_PRIORITY,
    }


def split(res: m.Resources, node: m.NodeShape) -> tuple[int, m.Resources] | None:
    """Pods needed so that no balloon pod is larger than a node, and each pod's share.

    None when the reservation asks for GPUs the pool's nodes do not have.
    """
    if res.gpu > 0 and node.gpu == 0:
        return None
    counts = [1]
    if res.cpu > 0:
        counts.append(math.ceil(res.cpu / node.cpu))
    if res.memory > 0:
        counts.append(math.ceil(res.memory / node.memory))
    if res.gpu > 0:
        counts.append(math.ceil(res.gpu / node.gpu))
    pods = max(counts)
    share = m.Resources(
        cpu=Decimal(math.ceil(res.cpu * 1000 / pods)) / 1000,
        memory=math.ceil(res.memory / pods),
        gpu=math.ceil(res.gpu / pods),
    )
    return pods, share


def balloon(
    index: Index, pool: m.Pool, position: int, report: TargetOutput
) -> dict[str, Any] | None:
    """apps/v1 Deployment of pause pods holding a reservation's requests on the pool."""
    reservation = pool.reservations[position]
    if reservation.resources == m.Resources():
        return None
    parts = split(reservation.resources, pool.node)
    if parts is None:
        report.unsupported(
            "B0104",
            f"reservation for `{reservation.service}` in pool `{pool.qualified}` asks for "
            "GPUs its nodes do not have; nothing is reserved",
            reservation.span or pool.span,
            label="no balloon emitted",
        )
        return None
    pods, share = parts
    name = index.balloon_name(pool, position)
    service = index.service_ref(reservation.service)
    container: dict[str, Any] = {"image": PAUSE_IMAGE, "name": "pause"}
    container["resources"] = resources(share.cpu, share.memory, share.gpu)
    placement = Placement(
        regions=pool.regions,
        pool=index.pool_names[pool.qualified],
        tolerate_pool=pool.node.gpu > 0,
        priority_class=BALLOON_CLASS,
    )
    pod_spec = apply_placement(
        {"containers": [container], "terminationGracePeriodSeconds": 0}, placement, None
    )
    annotations = {
        "mcpdsl.io/pool": pool.qualified,
        "mcpdsl.io/reserved-for": f"{service.qualified}",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(
            name,
            package=pool.package,
            component=BALLOON_COMPONENT,
            namespace=index.namespace(RESERVATIONS_KEY),
            source=source_of(reservation.span or pool.span),
            annotations=annotations,
        ),
        "spec": {
            "replicas": pods,
            "selector": {"matchLabels": selector(name, BALLOON_COMPONENT)},
            "template": {
                "metadata": pod_metadata(name, package=pool.package, component=BALLOON_COMPONENT),
                "spec": pod_spec,
            },
        },
    }
