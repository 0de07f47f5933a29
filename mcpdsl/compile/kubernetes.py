"""The Kubernetes target: the IR to Kubernetes 1.33 manifests, one object per file.

    kubernetes/<package>/<kind>-<name>.yaml

| mcpdsl | Kubernetes |
| --- | --- |
| `service` | Deployment (apps/v1), Service (v1), PodDisruptionBudget (policy/v1) |
| `scale` | HorizontalPodAutoscaler (autoscaling/v2), or a KEDA ScaledObject (keda.sh/v1alpha1) for `during`/`predict` |
| `pool` | ResourceQuota (v1) per team, PriorityClass (scheduling.k8s.io/v1) per tier, balloon Deployments for reservations |
| `policy` | NetworkPolicy (networking.k8s.io/v1) per service, L3/L4 narrowing only |
| `job` | CronJob (batch/v1) |
| namespaces used | Namespace (v1) |

Every document is a plain dict serialised by `dump_yaml` (sorted keys, user
strings escaped by the serialiser, no timestamps), so two builds of the same
tree are byte-identical.  Names are sanitised to DNS-1123 once, up front
(`kubernetes_index`), and the original is kept in `mcpdsl.io/source-name`.
The details and the limits of each mapping are in `targets/kubernetes/README.md`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mcpdsl.compile import Artifact, Enforcement, TargetContext, TargetOutput, rule_spans
from mcpdsl.compile.kubernetes_common import is_label_value, metadata
from mcpdsl.compile.kubernetes_index import RESERVATIONS_KEY, Index, build_index
from mcpdsl.compile.kubernetes_network import network_policy
from mcpdsl.compile.kubernetes_pools import (
    balloon,
    balloon_class,
    priority_class,
    resource_quota,
)
from mcpdsl.compile.kubernetes_scale import autoscaler
from mcpdsl.compile.kubernetes_workloads import (
    cronjob,
    deployment,
    disruption_budget,
    service_object,
)
from mcpdsl.compile.serialize import dump_yaml
from mcpdsl.ir import model as m

NAME = "kubernetes"
NAMESPACE_COMPONENT = "namespace"


@dataclass
class _Emitter:
    """Collects documents by artifact path; a path produced twice is a target bug."""

    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    report: TargetOutput = field(default_factory=TargetOutput)
    namespace_users: dict[str, set[str]] = field(default_factory=dict)

    def add(self, package: str, doc: dict[str, Any] | None) -> None:
        if doc is None:
            return
        path = f"{NAME}/{package}/{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"
        if path in self.docs:
            raise AssertionError(f"kubernetes target produced {path} twice")
        self.docs[path] = doc
        namespace = doc["metadata"].get("namespace")
        if namespace is not None:
            self.namespace_users.setdefault(namespace, set()).add(package)

    def output(self) -> TargetOutput:
        artifacts = [Artifact(path, dump_yaml(doc)) for path, doc in sorted(self.docs.items())]
        return TargetOutput(artifacts=artifacts, diagnostics=self.report.diagnostics)


def compile(project: m.Project, ctx: TargetContext) -> TargetOutput:
    """Compile a resolved project to Kubernetes manifests (see the module docstring)."""
    index = build_index(project)
    out = _Emitter()
    _check_regions(project, ctx, out.report)
    _services(index, ctx, out)
    _scales(index, ctx, out)
    _pools(index, ctx, out)
    _jobs(index, ctx, out)
    _namespaces(index, out)
    return out.output()


def _check_regions(project: m.Project, ctx: TargetContext, report: TargetOutput) -> None:
    """A region that is not a valid label value can never match a node: say so.

    It is still emitted (dropping it could remove the only region constraint and
    let pods run anywhere); the pods stay unschedulable, which fails closed.
    """
    placed: list[m.Service | m.Job | m.Pool] = [*project.services, *project.jobs, *project.pools]
    for decl in placed:
        for region in decl.regions:
            if not is_label_value(region):
                report.unsupported(
                    "B0102",
                    f"region {_quote(region)} of `{decl.qualified}` is not a valid label value; "
                    "no node can carry it, so its pods cannot be scheduled",
                    ctx.clause_span(decl.span, "regions"),
                    help="use letters, digits, `-`, `_` and `.` (at most 63 characters)",
                )


def _quote(text: str) -> str:
    """A user string in a message: JSON-quoted, so control characters stay visible."""
    return json.dumps(text, ensure_ascii=False)


def _services(index: Index, ctx: TargetContext, out: _Emitter) -> None:
    spans = rule_spans(index.project)
    records: list[Enforcement] = []
    for service in index.project.services:
        out.add(service.package, deployment(index, service, ctx, out.report))
        out.add(service.package, service_object(index, service))
        out.add(service.package, disruption_budget(index, service))
        if index.project.policies:
            result = network_policy(index, service)
            out.add(service.package, result.doc)
            records.extend(result.enforcement)
    for record in sorted(records, key=lambda e: (e.rule, e.where)):
        out.report.enforced(record, spans.get(record.rule))


def _scales(index: Index, ctx: TargetContext, out: _Emitter) -> None:
    for scale in index.project.scales:
        out.add(scale.package, autoscaler(index, scale, ctx, out.report))


def _pools(index: Index, ctx: TargetContext, out: _Emitter) -> None:
    """Quotas and balloons per pool; one PriorityClass per tier, in its first pool's package."""
    classes: set[str] = set()
    balloons = False
    for pool in index.project.pools:
        if index.priority_class(pool) not in classes:
            classes.add(index.priority_class(pool))
            out.add(pool.package, priority_class(index, pool, ctx, out.report))
        for position in range(len(pool.quotas)):
            out.add(pool.package, resource_quota(index, pool, position))
        for position in range(len(pool.reservations)):
            headroom = balloon(index, pool, position, out.report)
            if headroom is not None and not balloons:
                balloons = True
                out.add(pool.package, balloon_class(pool.package))
            out.add(pool.package, headroom)


def _jobs(index: Index, ctx: TargetContext, out: _Emitter) -> None:
    for job in index.project.jobs:
        out.add(job.package, cronjob(index, job, ctx.plan))


def _namespaces(index: Index, out: _Emitter) -> None:
    """A Namespace for every namespace an object lives in, in its first user's package."""
    sources = {name: raw for raw, name in index.namespaces.items() if raw != RESERVATIONS_KEY}
    for namespace, packages in sorted(out.namespace_users.items()):
        package = min(packages)
        out.add(
            package,
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": metadata(
                    namespace,
                    package=package,
                    component=NAMESPACE_COMPONENT,
                    source_name=str(sources.get(namespace, namespace)),
                ),
            },
        )
