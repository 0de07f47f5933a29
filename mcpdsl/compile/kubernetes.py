"""The Kubernetes target: the IR to Kubernetes 1.33 manifests, one object per file.

    kubernetes/<package>/<kind>-<name>.yaml
    kubernetes/<package>/<kind>-<namespace>.<name>.yaml   (ServiceAccount, ResourceQuota)

| mcpdsl | Kubernetes |
| --- | --- |
| `service` | Deployment, or StatefulSet when `stateful` (apps/v1); Service, ServiceAccount, headless Service when stateful or balanced (v1); PodDisruptionBudget (policy/v1) |
| `scale` | HorizontalPodAutoscaler (autoscaling/v2), or a KEDA ScaledObject (keda.sh/v1alpha1) for `during`/`predict` |
| `pool` | PriorityClass (scheduling.k8s.io/v1) per pool, ResourceQuota (v1) per (namespace, pool) as `ir/quotas.py` places team quotas, balloon Deployments for reservations |
| `policy` | NetworkPolicy (networking.k8s.io/v1) per service, L3/L4 narrowing only |
| `job` | CronJob (batch/v1) |
| `server` | the decision server (`kubernetes_server`): ServiceAccount, ConfigMap with the IR, Deployment running `mcpdsl serve`, Service (http 8181, grpc 9191), HorizontalPodAutoscaler, PodDisruptionBudget |
| namespaces used and owned (`owns_namespace`) | Namespace (v1) |

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
from mcpdsl.compile.kubernetes_index import (
    RESERVATIONS_KEY,
    Index,
    build_index,
    owns_namespace,
)
from mcpdsl.compile.kubernetes_network import network_policy
from mcpdsl.compile.kubernetes_pools import (
    balloon,
    balloon_class,
    priority_class,
    resource_quota,
)
from mcpdsl.compile.kubernetes_scale import autoscaler
from mcpdsl.compile.kubernetes_server import server_objects
from mcpdsl.compile.kubernetes_workloads import (
    cronjob,
    disruption_budget,
    headless_service,
    service_account,
    service_object,
    workload,
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

    def add(self, package: str, doc: dict[str, Any] | None, *, per_namespace: bool = False) -> None:
        """Add one object; `per_namespace` for kinds whose names are unique per namespace only.

        Their file is `<kind>-<namespace>.<name>.yaml` (a dot is in no DNS label, so
        two (namespace, name) pairs can never share a path).
        """
        if doc is None:
            return
        meta = doc["metadata"]
        stem = f"{meta['namespace']}.{meta['name']}" if per_namespace else meta["name"]
        path = f"{NAME}/{package}/{doc['kind'].lower()}-{stem}.yaml"
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
    _server(index, out)
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
    accounts: set[tuple[str, str]] = set()
    for service in index.project.services:
        out.add(service.package, workload(index, service, ctx, out.report))
        out.add(service.package, service_object(index, service))
        out.add(service.package, headless_service(index, service))
        identity = index.identity(service)
        # Services that declare the same identity share one account: emit it once.
        if (identity.namespace, identity.service_account) not in accounts:
            accounts.add((identity.namespace, identity.service_account))
            out.add(service.package, service_account(index, service), per_namespace=True)
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
    """A PriorityClass and balloons per pool; ResourceQuotas as `ir/quotas.py` places them."""
    balloons = False
    for scoped in index.quotas.scoped:
        pool = index.pools[scoped.pool]
        out.add(pool.package, resource_quota(index, scoped), per_namespace=True)
    for unplaced in index.quotas.unplaced:
        pool = index.pools[unplaced.pool]
        quota = pool.quotas[unplaced.position]
        out.report.unsupported(
            "B0116",
            f"quota of team {_quote(unplaced.team)} in pool `{pool.qualified}` governs no "
            "workload; no ResourceQuota is emitted",
            quota.span or pool.span,
            label="no service or job of this team is placed in the pool",
            help=f'declare `team "{unplaced.team}"` and `pool {pool.name}` on the workloads '
            "it should cap, or remove the quota",
        )
    for pool in index.project.pools:
        out.add(pool.package, priority_class(index, pool, ctx, out.report))
        for position in range(len(pool.reservations)):
            headroom = balloon(index, pool, position, out.report)
            if headroom is not None and not balloons:
                balloons = True
                out.add(pool.package, balloon_class(pool.package))
            out.add(pool.package, headroom)


def _jobs(index: Index, ctx: TargetContext, out: _Emitter) -> None:
    for job in index.project.jobs:
        out.add(job.package, cronjob(index, job, ctx.plan))


def _server(index: Index, out: _Emitter) -> None:
    """The decision server's own objects, when the tree declares one (E1001: at most one)."""
    server = index.server()
    if server is None:
        return
    for doc in server_objects(index, server, out.report):
        out.add(server.package, doc, per_namespace=doc["kind"] == "ServiceAccount")


def _namespaces(index: Index, out: _Emitter) -> None:
    """A Namespace for every namespace the policy owns, in its first user's package.

    Objects may live in `default` or a `kube-` namespace, but the policy does
    not own those (`owns_namespace`): no Namespace object, so applying or
    pruning a build never touches them.
    """
    sources = {name: raw for raw, name in index.namespaces.items() if raw != RESERVATIONS_KEY}
    for namespace, packages in sorted(out.namespace_users.items()):
        if not owns_namespace(namespace):
            continue
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
