"""Workloads: `service` -> Deployment or StatefulSet + Service(s) + ServiceAccount +
PodDisruptionBudget, `job` -> CronJob.

The pod spec is assembled from small pieces (resources, probes, placement,
env) so that services, jobs and reservation balloons place their pods the
same way: a pool is a node label plus, for GPU pools, a taint to tolerate; a
region list is a required node affinity on `topology.kubernetes.io/region`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mcpdsl.compile import PlacementPlan, TargetContext, TargetOutput
from mcpdsl.compile.kubernetes_common import (
    LABEL_NAME,
    LABEL_POOL,
    LABEL_TIER,
    REGION_KEY,
    ZONE_KEY,
    is_label_value,
    labels_annotation,
    metadata,
    pod_metadata,
    resources,
    selector,
    source_of,
    storage_quantity,
    user_labels,
    whole_seconds,
)
from mcpdsl.compile.kubernetes_index import Index
from mcpdsl.ir import model as m
from mcpdsl.ir.quotas import max_pods
from mcpdsl.source import Span

SERVICE_COMPONENT = "service"
#: The name of a stateful service's volume (claim template and mount).
VOLUME_NAME = "data"
JOB_COMPONENT = "job"
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


@dataclass(frozen=True)
class Placement:
    """Where pods may run: regions, a pool (node label + optional taint), a priority."""

    regions: tuple[str, ...] = ()
    pool: str | None = None
    tolerate_pool: bool = False
    priority_class: str | None = None


def placement_for(index: Index, regions: tuple[str, ...], pool_ref: m.Ref | None) -> Placement:
    """Regions of the workload (falling back to its pool's) and its pool's node conventions."""
    pool = index.pool_ref(pool_ref)
    if pool is None:
        return Placement(regions=regions)
    return Placement(
        regions=regions or pool.regions,
        pool=index.pool_names[pool.qualified],
        tolerate_pool=pool.node.gpu > 0,
        priority_class=index.priority_class(pool),
    )


def _affinity(regions: tuple[str, ...]) -> dict[str, Any]:
    term = {"matchExpressions": [{"key": REGION_KEY, "operator": "In", "values": list(regions)}]}
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    }


def _spread(key: str, pods: dict[str, str]) -> dict[str, Any]:
    """Spread the pods evenly over the values of a node label, as a preference.

    `ScheduleAnyway`: a region or zone without room must not leave pods
    pending (the required region affinity already bounds where they go).
    """
    return {
        "labelSelector": {"matchLabels": dict(pods)},
        "maxSkew": 1,
        "topologyKey": key,
        "whenUnsatisfiable": "ScheduleAnyway",
    }


def apply_placement(
    spec: dict[str, Any],
    placement: Placement,
    spread: dict[str, str] | None,
    *,
    several: bool = False,
) -> dict[str, Any]:
    """Add affinity, spread, pool selector/toleration and priority to a pod spec.

    `spread` selects the pods to spread; `several` says the workload may run
    more than one pod, so its pods are also spread over zones.
    """
    constraints = []
    if placement.regions:
        spec["affinity"] = _affinity(placement.regions)
        if spread is not None and len(placement.regions) > 1:
            constraints.append(_spread(REGION_KEY, spread))
    if spread is not None and several:
        constraints.append(_spread(ZONE_KEY, spread))
    if constraints:
        spec["topologySpreadConstraints"] = constraints
    if placement.pool is not None:
        spec["nodeSelector"] = {LABEL_POOL: placement.pool}
        if placement.tolerate_pool:
            spec["tolerations"] = [
                {
                    "effect": "NoSchedule",
                    "key": LABEL_POOL,
                    "operator": "Equal",
                    "value": placement.pool,
                }
            ]
    if placement.priority_class is not None:
        spec["priorityClassName"] = placement.priority_class
    return spec


def probes(health: m.HealthCheck | None, port: int) -> dict[str, Any]:
    """Readiness and liveness probes from a `balance ... health` clause.

    Readiness uses `healthy`/`unhealthy` as success/failure thresholds;
    liveness must have successThreshold 1 (an API rule) and restarts only
    after the same number of failures that makes the pod unready.
    """
    if health is None:
        return {}
    if health.protocol == "http":
        handler: dict[str, Any] = {"httpGet": {"path": health.path or "/", "port": port}}
    elif health.protocol == "tcp":
        handler = {"tcpSocket": {"port": port}}
    else:
        handler = {"grpc": {"port": port}}
    timing = {
        "periodSeconds": whole_seconds(health.interval),
        "timeoutSeconds": whole_seconds(health.timeout),
        "failureThreshold": health.unhealthy,
    }
    readiness = {**handler, **timing, "successThreshold": health.healthy}
    liveness = {**handler, **timing, "successThreshold": 1}
    return {"readinessProbe": readiness, "livenessProbe": liveness}


def env_vars(
    env: dict[str, str], report: TargetOutput, owner: str, span: Span | None
) -> list[dict[str, str]]:
    """Env vars sorted by name; names Kubernetes rejects are dropped (B0101)."""
    out = []
    for name, value in sorted(env.items()):
        if _ENV_NAME.match(name):
            out.append({"name": name, "value": value})
        else:
            report.unsupported(
                "B0101",
                f"env var {json.dumps(name, ensure_ascii=False)} of {owner} is not a valid "
                "name; it is dropped",
                span,
                label="not in the Deployment",
                help="environment variable names are `[A-Za-z_][A-Za-z0-9_.-]*`",
            )
    return out


def _container(
    name: str,
    image: str,
    cpu: Decimal | None,
    memory: int | None,
    gpu: int,
) -> dict[str, Any]:
    container: dict[str, Any] = {"image": image, "name": name}
    res = resources(cpu, memory, gpu)
    if res:
        container["resources"] = res
    return container


# --------------------------------------------------------------- services


def replicas_of(index: Index, service: m.Service) -> int:
    """Initial replicas: the scale minimum, else the declared count, else 1."""
    scale = index.scales.get(service.qualified)
    if scale is not None:
        return scale.min_replicas
    return service.replicas if service.replicas is not None else 1


def _pod_labels(service: m.Service) -> tuple[dict[str, str], dict[str, str]]:
    """Valid user labels (+ tier) for the pods, and the annotation for the rest."""
    valid, rest = user_labels(service.labels)
    if service.tier is not None and is_label_value(service.tier):
        valid[LABEL_TIER] = service.tier
    return valid, labels_annotation(rest)


def _service_container(
    index: Index, service: m.Service, ctx: TargetContext, report: TargetOutput
) -> dict[str, Any]:
    """The one container: image, port, resources, probes from `balance`, env."""
    container = _container(
        index.service_name(service), service.image, service.cpu, service.memory, service.gpu
    )
    container["ports"] = [{"containerPort": service.port, "protocol": "TCP"}]
    if service.stateful and service.storage is not None:
        container["volumeMounts"] = [{"mountPath": service.storage.path, "name": VOLUME_NAME}]
    balance = index.balances.get(service.qualified)
    container.update(probes(balance.health if balance else None, service.port))
    span = ctx.clause_span(service.span, "env")
    env = env_vars(service.env, report, f"service `{service.qualified}`", span)
    if env:
        container["env"] = env
    return container


def workload(
    index: Index, service: m.Service, ctx: TargetContext, report: TargetOutput
) -> dict[str, Any]:
    """apps/v1 Deployment of a service, or a StatefulSet when it is `stateful`.

    A StatefulSet gives each pod a stable name (`<name>-0`, `-1`, ...), a DNS
    record under its headless governing Service, and its own volume from the
    `storage` clause, kept across restarts and rescheduling.
    """
    name = index.service_name(service)
    labels, annotations = _pod_labels(service)
    if service.identity is not None:
        annotations["mcpdsl.io/identity"] = service.identity
    pod_meta = pod_metadata(
        name,
        package=service.package,
        component=SERVICE_COMPONENT,
        labels=labels,
        annotations=annotations,
    )
    pod_spec = apply_placement(
        {
            "containers": [_service_container(index, service, ctx, report)],
            "serviceAccountName": index.identity(service).service_account,
        },
        placement_for(index, service.regions, service.pool),
        selector(name, SERVICE_COMPONENT),
        several=max_pods(service, index.scales.get(service.qualified)) > 1,
    )
    spec: dict[str, Any] = {
        "replicas": replicas_of(index, service),
        "selector": {"matchLabels": selector(name, SERVICE_COMPONENT)},
        "template": {"metadata": pod_meta, "spec": pod_spec},
    }
    kind = "Deployment"
    if service.stateful:
        kind = "StatefulSet"
        spec["serviceName"] = index.headless_name(service)
        if service.storage is not None:
            spec["volumeClaimTemplates"] = [_claim_template(service.storage)]
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": _service_meta(index, service, labels, annotations),
        "spec": spec,
    }


def _claim_template(storage: m.Storage) -> dict[str, Any]:
    """One PersistentVolumeClaim per pod: size, access mode, class (else the default class)."""
    claim: dict[str, Any] = {
        "accessModes": [storage.access],
        "resources": {"requests": {"storage": storage_quantity(storage.size)}},
    }
    if storage.storage_class is not None:
        claim["storageClassName"] = storage.storage_class
    return {"metadata": {"name": VOLUME_NAME}, "spec": claim}


def _service_meta(
    index: Index,
    service: m.Service,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    return metadata(
        index.service_name(service),
        package=service.package,
        component=SERVICE_COMPONENT,
        namespace=index.namespace(service.namespace),
        source=source_of(service.span),
        source_name=service.name,
        labels=labels,
        annotations=annotations,
    )


def service_object(index: Index, service: m.Service) -> dict[str, Any]:
    """v1 Service (ClusterIP) in front of the pods: port -> targetPort."""
    name = index.service_name(service)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _service_meta(index, service),
        "spec": {
            "ports": [{"port": service.port, "protocol": "TCP", "targetPort": service.port}],
            "selector": selector(name, SERVICE_COMPONENT),
            "type": "ClusterIP",
        },
    }


def headless_service(index: Index, service: m.Service) -> dict[str, Any] | None:
    """v1 Service with `clusterIP: None`: DNS answers with the ready pods' addresses.

    It is the governing Service of a StatefulSet (per-pod DNS names) and
    what an Envoy cluster resolves (`Index.headless_fqdn`), so that Envoy
    balances over pods.  None for a service that needs neither.
    """
    headless = index.headless_name(service)
    if headless is None:
        return None
    meta = _service_meta(index, service)
    meta["name"] = headless
    meta["annotations"] = {**meta.get("annotations", {}), "mcpdsl.io/headless-for": service.name}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "clusterIP": "None",
            "ports": [{"port": service.port, "protocol": "TCP", "targetPort": service.port}],
            "selector": selector(index.service_name(service), SERVICE_COMPONENT),
            "type": "ClusterIP",
        },
    }


def service_account(index: Index, service: m.Service) -> dict[str, Any]:
    """v1 ServiceAccount the pods run as: the account of `workload_identity`.

    The mesh certifies the pods as `spiffe://<trust domain>/ns/<ns>/sa/<account>`,
    so generating exactly this account is what makes a declared `identity`
    (and the principals the Istio target matches) true once deployed.
    """
    identity = index.identity(service)
    meta = metadata(
        identity.service_account,
        package=service.package,
        component=SERVICE_COMPONENT,
        namespace=identity.namespace,
        source=source_of(service.span),
        annotations={"mcpdsl.io/spiffe-id": identity.spiffe_id},
    )
    # An account name may be up to 253 characters, a label value only 63: the
    # name label says which workload it belongs to (the first, when shared).
    meta["labels"][LABEL_NAME] = index.service_name(service)
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}


def disruption_budget(index: Index, service: m.Service) -> dict[str, Any]:
    """policy/v1 PodDisruptionBudget: at most one pod down by a voluntary disruption.

    `maxUnavailable: 1` (not a `minAvailable` count) because it follows the
    live replica count: with n healthy pods a drain may always evict one
    (never blocked, even at one replica or after an autoscaler scaled down)
    while n - 1 keep serving, and a quorum of a stateful set loses one member
    at a time.
    """
    name = index.service_name(service)
    spec: dict[str, Any] = {
        "maxUnavailable": 1,
        "selector": {"matchLabels": selector(name, SERVICE_COMPONENT)},
    }
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _service_meta(index, service),
        "spec": spec,
    }


# -------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class JobSlot:
    """When a job starts (minutes after midnight in `zone`) and in which regions."""

    start: int
    zone: str
    regions: tuple[str, ...]
    planned: bool = False


def job_slot(plan: PlacementPlan | None, job: m.Job) -> JobSlot:
    """The plan's placement if it has one for this job, else the window start."""
    found = plan.placement(job.qualified) if plan is not None else None
    if found is None:
        return JobSlot(job.window.start, job.window.zone, job.regions)
    region, hhmm, zone = found
    match = _HHMM.match(hhmm)
    if match is None:  # the optimiser's output, not user input
        raise ValueError(f"plan placement for {job.qualified} has a bad time {hhmm!r}")
    start = int(match.group(1)) * 60 + int(match.group(2))
    return JobSlot(start, zone, (region,), planned=True)


def _starting_deadline(job: m.Job, slot: JobSlot) -> int | None:
    """Seconds a missed start may still run and finish inside the window (and deadline)."""
    window = (job.window.end - job.window.start) % 1440 * 60
    latest_end = min(Decimal(window), job.deadline) if job.deadline is not None else window
    offset = (slot.start - job.window.start) % 1440 * 60
    slack = int(latest_end - job.runs) - offset
    return slack if slack > 0 else None


def cronjob(index: Index, job: m.Job, plan: PlacementPlan | None) -> dict[str, Any]:
    """batch/v1 CronJob starting at the window start (or the planned time) in its zone."""
    name = index.job_names[job.qualified]
    slot = job_slot(plan, job)
    container = _container(name, job.image, job.cpu, job.memory, job.gpu)
    pool = placement_for(index, slot.regions, job.pool)
    pod_spec = apply_placement(
        {"containers": [container], "restartPolicy": "OnFailure"}, pool, None
    )
    pod_meta = pod_metadata(name, package=job.package, component=JOB_COMPONENT)
    job_spec = {
        "activeDeadlineSeconds": whole_seconds(job.deadline if job.deadline else job.runs),
        "template": {"metadata": pod_meta, "spec": pod_spec},
    }
    spec: dict[str, Any] = {
        "concurrencyPolicy": "Forbid",
        "jobTemplate": {"metadata": {"labels": dict(pod_meta["labels"])}, "spec": job_spec},
        "schedule": f"{slot.start % 60} {slot.start // 60} * * *",
        "timeZone": slot.zone,
    }
    deadline = _starting_deadline(job, slot)
    if deadline is not None:
        spec["startingDeadlineSeconds"] = deadline
    annotations = {"mcpdsl.io/placement": "plan" if slot.planned else "window-start"}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(
            name,
            package=job.package,
            component=JOB_COMPONENT,
            namespace=index.namespace(job.namespace),
            source=source_of(job.span),
            source_name=job.name,
            annotations=annotations,
        ),
        "spec": spec,
    }
