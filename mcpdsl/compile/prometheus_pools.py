"""Pool health: Prometheus rules over kube-state-metrics for the tree's pools.

One rule group, `mcpdsl-pool-health`, written into `prometheus/rules.yaml`
next to the carbon monitor's groups when the tree declares a pool:

- recording rules `mcpdsl:pool_requests:sum`, `mcpdsl:pool_allocatable:sum`
  and `mcpdsl:pool_requests:ratio` (labels `region`, `pool`, `resource`),
  `mcpdsl:pool_nodes:count`;
- `McpdslPoolSaturated` per pool: the pods on the pool's nodes request more
  than `SATURATED` of a resource the nodes can allocate while the pool is at
  its declared maximum of nodes, so the next pod has nowhere to go (below the
  maximum a full pool is simply well packed: the cluster autoscaler adds a
  node for a pending pod);
- `McpdslPoolPodsPending` per pool: pods of the pool (its PriorityClass, the
  one class per pool the Kubernetes target emits) pending for `PENDING_FOR`;
- `McpdslPoolQuotaSaturated`: a team quota of a pool (the ResourceQuota named
  after the pool in each namespace) used above `SATURATED` of its hard limit.

Metric names are those kube-state-metrics v2 exports:
`kube_pod_container_resource_requests`, `kube_node_status_allocatable`
(labels `resource`, `unit`), `kube_node_labels` (the node's `mcpdsl.io/pool`
label as `label_mcpdsl_io_pool`, exported only when kube-state-metrics runs
with `--metric-labels-allowlist=nodes=[mcpdsl.io/pool]`),
`kube_pod_status_phase`, `kube_pod_info` (label `priority_class`) and
`kube_resourcequota` (labels `resourcequota`, `resource`, `type`).  Joins are
`on (region, ...)` so that the same rules work in one cluster (no `region`
label anywhere) and in a global view where each cluster's external label
`region` keeps the regions' pools apart.
"""

from __future__ import annotations

from typing import Any

from mcpdsl.compile.kubernetes_index import Index

GROUP = "mcpdsl-pool-health"
SATURATED = 0.9
PENDING_FOR = "10m"
#: kube-state-metrics' name of the pool label of nodes (`mcpdsl.io/pool`, sanitised).
POOL_LABEL = "label_mcpdsl_io_pool"
#: The resources a pool is saturated in: kube-state-metrics' `resource` label values.
RESOURCES = 'resource=~"cpu|memory|nvidia_com_gpu"'

_ON_NODE = f' * on (region, node) group_left ({POOL_LABEL}) kube_node_labels{{{POOL_LABEL}!=""}}'


def _by_pool(expr: str) -> str:
    """Sum a per-node expression by the node's pool (the label renamed to `pool`)."""
    return (
        "sum by (region, pool, resource) (label_replace(\n"
        f"  {expr}\n"
        f"  {_ON_NODE.strip()},\n"
        f'  "pool", "$1", "{POOL_LABEL}", "(.+)"))'
    )


REQUESTS = _by_pool(
    f"kube_pod_container_resource_requests{{{RESOURCES}}}\n"
    "  * on (region, namespace, pod) group_left ()\n"
    '    (max by (region, namespace, pod) (kube_pod_status_phase{phase=~"Pending|Running"}) == 1)'
)
ALLOCATABLE = _by_pool(f"kube_node_status_allocatable{{{RESOURCES}}}")
NODES = (
    "count by (region, pool) (label_replace(\n"
    f'  kube_node_labels{{{POOL_LABEL}!=""}}, "pool", "$1", "{POOL_LABEL}", "(.+)"))'
)
RATIO = "mcpdsl:pool_requests:sum\n/ on (region, pool, resource) (mcpdsl:pool_allocatable:sum > 0)"


def _quoted(value: str) -> str:
    """A label value inside double quotes (PromQL string escapes)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def pool_rules(index: Index) -> dict[str, Any] | None:
    """The pool-health rule group, None when the tree has no pool."""
    project = index.project
    if not project.pools:
        return None
    rules: list[dict[str, Any]] = [
        {"record": "mcpdsl:pool_requests:sum", "expr": REQUESTS},
        {"record": "mcpdsl:pool_allocatable:sum", "expr": ALLOCATABLE},
        {"record": "mcpdsl:pool_requests:ratio", "expr": RATIO},
        {"record": "mcpdsl:pool_nodes:count", "expr": NODES},
    ]
    quota_names = []
    for pool in sorted(project.pools, key=lambda p: p.qualified):
        name = index.pool_names[pool.qualified]
        pool_sel = f'pool="{_quoted(name)}"'
        rules.append(
            {
                "alert": "McpdslPoolSaturated",
                "expr": (
                    f"mcpdsl:pool_requests:ratio{{{pool_sel}}} > {SATURATED}\n"
                    f"and on (region, pool) (mcpdsl:pool_nodes:count{{{pool_sel}}} "
                    f">= {pool.max_nodes})"
                ),
                "for": "15m",
                "labels": {"severity": "warning", "pool": name},
                "annotations": {
                    "summary": f"pool {name} is full at its maximum of {pool.max_nodes} nodes",
                    "description": (
                        "Pods on the nodes of pool "
                        f"{name} request {{{{ $value | humanizePercentage }}}} of their "
                        "allocatable {{ $labels.resource }} and the pool has reached the "
                        f"maximum of its `nodes` range ({pool.max_nodes}): the next pod "
                        "placed in the pool will stay pending."
                    ),
                },
            }
        )
        klass = index.priority_class(pool)
        rules.append(
            {
                "alert": "McpdslPoolPodsPending",
                "expr": (
                    "sum by (region, namespace) (\n"
                    '  (kube_pod_status_phase{phase="Pending"} == 1)\n'
                    "  * on (region, namespace, pod) group_left ()\n"
                    f'    kube_pod_info{{priority_class="{_quoted(klass)}"}}\n'
                    ") > 0"
                ),
                "for": PENDING_FOR,
                "labels": {"severity": "warning", "pool": name},
                "annotations": {
                    "summary": f"pods of pool {name} are pending",
                    "description": (
                        "{{ $value }} pods of pool "
                        f"{name} (PriorityClass {klass}) in namespace "
                        "{{ $labels.namespace }} have been pending for "
                        f"{PENDING_FOR}: the pool has no room (nodes at their maximum, a "
                        "quota, or a node shape too small) or the autoscaler is slow."
                    ),
                },
            }
        )
        if pool.quotas:
            quota_names.append(name)
    if quota_names:
        names = "|".join(_quoted(n) for n in quota_names)
        selector = f'resourcequota=~"{names}"'
        rules.append(
            {
                "alert": "McpdslPoolQuotaSaturated",
                "expr": (
                    f'kube_resourcequota{{{selector}, type="used"}}\n'
                    "/ on (region, namespace, resourcequota, resource)\n"
                    f'  (kube_resourcequota{{{selector}, type="hard"}} > 0)\n'
                    f"> {SATURATED}"
                ),
                "for": "15m",
                "labels": {"severity": "warning"},
                "annotations": {
                    "summary": (
                        "quota {{ $labels.resourcequota }} of namespace {{ $labels.namespace }} "
                        "is nearly used up"
                    ),
                    "description": (
                        "The team quota of pool {{ $labels.resourcequota }} in namespace "
                        "{{ $labels.namespace }} uses {{ $value | humanizePercentage }} of "
                        "its {{ $labels.resource }}: new pods of the team in that pool will "
                        "be refused by the API server once it is full."
                    ),
                },
            }
        )
    return {"name": GROUP, "interval": "1m", "rules": rules}
