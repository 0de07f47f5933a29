"""The Kubernetes target's view of a project: every object name, decided up front.

Names are assigned once for the whole tree (not per file or per package) so
that two declarations can never be compiled to the same object or the same
artifact path, and so that every reference (a Service selecting a Deployment,
a NetworkPolicy peer, an HPA target) uses the very same string.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from mcpdsl.compile.kubernetes_common import CRONJOB_LIMIT, LABEL_LIMIT, assign_names, dns_label
from mcpdsl.ir import model as m
from mcpdsl.ir.quotas import QuotaPlan, quota_plan
from mcpdsl.ir.workload import WorkloadIdentity, workload_identity

#: PriorityClass values per pool tier (README: "Priority classes").
TIER_PRIORITY: dict[str, int] = {
    "platinum": 1_000_000,
    "gold": 100_000,
    "silver": 50_000,
    "standard": 10_000,
    "bronze": 5_000,
    "batch": 1_000,
    "default": 1_000,
}
DEFAULT_TIER = "default"
BALLOON_PRIORITY = -10
BALLOON_CLASS = "mcpdsl-balloon"
_BALLOON_KEY = "\x00balloon"
#: Balloons live outside every team namespace, so that no ResourceQuota counts them
#: (a quota is checked at pod creation and would stop the service the headroom is for).
RESERVATIONS_NAMESPACE = "mcpdsl-reservations"
RESERVATIONS_KEY = "\x00reservations"
#: The cluster's DNS domain (kubelet `--cluster-domain`); Envoy resolves Services under it.
CLUSTER_DOMAIN = "cluster.local"
#: The decision server's ports (`mcpdsl serve --addr` / `--grpc-addr` in its pods, and
#: its Service): HTTP (OPA Data API, health, metrics) and gRPC (Envoy ext_authz Check).
SERVER_HTTP_PORT = 8181
SERVER_GRPC_PORT = 9191
#: Namespaces every cluster has and the policy never owns (README: "Namespaces").
SYSTEM_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})


def owns_namespace(namespace: str) -> bool:
    """Whether the build creates (and so may delete) the Namespace object.

    A policy owns the namespaces its objects live in, except the ones
    Kubernetes itself creates in every cluster (`default`, `kube-system`,
    `kube-public`, `kube-node-lease`) and any other `kube-` name, a prefix
    Kubernetes reserves for its own: applying or pruning those must never be
    the policy's business.
    """
    return namespace not in SYSTEM_NAMESPACES and not namespace.startswith("kube-")


def pool_tier(pool: m.Pool) -> str:
    return pool.tier or DEFAULT_TIER


@dataclass
class Index:
    """Lookups by qualified name plus the Kubernetes name of every object."""

    project: m.Project
    services: dict[str, m.Service] = field(default_factory=dict)
    pools: dict[str, m.Pool] = field(default_factory=dict)
    balances: dict[str, m.Balance] = field(default_factory=dict)
    scales: dict[str, m.Scale] = field(default_factory=dict)
    gateways_to: dict[str, list[m.Gateway]] = field(default_factory=dict)
    service_names: dict[Hashable, str] = field(default_factory=dict)
    job_names: dict[Hashable, str] = field(default_factory=dict)
    pool_names: dict[Hashable, str] = field(default_factory=dict)
    namespaces: dict[Hashable, str] = field(default_factory=dict)
    balloon_names: dict[Hashable, str] = field(default_factory=dict)
    pool_classes: dict[Hashable, str] = field(default_factory=dict)
    # Services with a headless Service (StatefulSet governing Service, or the
    # per-pod DNS an Envoy cluster balances over), by qualified name.
    headless_names: dict[Hashable, str] = field(default_factory=dict)
    quotas: QuotaPlan = field(default_factory=lambda: QuotaPlan((), ()))
    trust_domain: str | None = None
    # Rules of each policy (by position in project.policies) that can reach a
    # service, keyed by service name; "" holds the rules that reach any service.
    # Filled on first use so that NetworkPolicies cost O(rules), not
    # O(services x rules).
    rules_reaching: dict[int, dict[str, list[m.Rule]]] = field(default_factory=dict)
    # Services by their tree-unique name (policies name services without package).
    by_name: dict[str, list[m.Service]] = field(default_factory=dict)
    # The decision server's objects (Deployment, Service, ...) by qualified name.
    server_names: dict[Hashable, str] = field(default_factory=dict)

    def service_name(self, service: m.Service) -> str:
        return self.service_names[service.qualified]

    def namespace(self, raw: str) -> str:
        return self.namespaces[raw]

    def service_ref(self, ref: m.Ref) -> m.Service:
        return self.services[f"{ref.package}.{ref.name}"]

    def pool_ref(self, ref: m.Ref | None) -> m.Pool | None:
        return None if ref is None else self.pools.get(f"{ref.package}.{ref.name}")

    def balloon_name(self, pool: m.Pool, position: int) -> str:
        return self.balloon_names[(pool.qualified, f"{position:04d}")]

    def priority_class(self, pool: m.Pool) -> str:
        """The pool's own PriorityClass (its tier's value): the scope of its quotas."""
        return self.pool_classes[pool.qualified]

    def identity(self, service: m.Service) -> WorkloadIdentity:
        """Namespace and service account of the service's pods (the one naming function)."""
        return workload_identity(
            namespace=self.namespace(service.namespace),
            declared=service.identity,
            fallback_account=self.service_name(service),
            trust_domain=self.trust_domain,
        )

    def server(self) -> m.Server | None:
        """The tree's decision server (E1001 keeps it to one), if it declares one."""
        return self.project.servers[0] if self.project.servers else None

    def server_name(self, server: m.Server) -> str:
        return self.server_names[server.qualified]

    def server_grpc(self) -> tuple[str, int] | None:
        """Where ext_authz reaches the decision server: its Service's FQDN and gRPC port.

        The one address the Envoy and Istio targets point at, so it is the very
        Service the Kubernetes target emits.  None when the tree declares no server.
        """
        server = self.server()
        if server is None:
            return None
        namespace = self.namespace(server.namespace)
        return f"{self.server_name(server)}.{namespace}.svc.{CLUSTER_DOMAIN}", SERVER_GRPC_PORT

    def headless_name(self, service: m.Service) -> str | None:
        return self.headless_names.get(service.qualified)

    def headless_fqdn(self, service: m.Service, region: str | None = None) -> str:
        """The DNS name that resolves to the service's ready pods (one A record per pod).

        Envoy clusters resolve it (STRICT_DNS) so that their load balancing,
        hash affinity and outlier detection act on pods, not on a virtual IP.
        Every service a gateway routes to or a `balance` declares has one.
        With `region`, the same headless Service as the region's cluster exports
        it (`<headless>.<namespace>.<region>.svc.cluster.local`, the multi-cluster
        DNS convention of `targets/envoy/README.md`): failover localities then
        balance over that region's pods too, under the same collision-safe names.
        """
        name = self.headless_names.get(service.qualified)
        if name is None:
            raise KeyError(f"service {service.qualified} has no headless Service")
        zone = "" if region is None else f".{region}"
        return f"{name}.{self.namespace(service.namespace)}{zone}.svc.{CLUSTER_DOMAIN}"


def build_index(project: m.Project) -> Index:
    """Look-ups and names for every object the target will emit."""
    index = Index(project=project)
    index.services = {s.qualified: s for s in project.services}
    index.pools = {p.qualified: p for p in project.pools}
    index.balances = {f"{b.service.package}.{b.service.name}": b for b in project.balances}
    index.scales = {f"{s.service.package}.{s.service.name}": s for s in project.scales}
    for gateway in project.gateways:
        for route in gateway.routes:
            if route.target.kind == "service":
                key = f"{route.target.ref.package}.{route.target.ref.name}"
                routed = index.gateways_to.setdefault(key, [])
                if gateway not in routed:
                    routed.append(gateway)
    index.service_names = assign_names((s.qualified, s.name) for s in project.services)
    index.job_names = assign_names(((j.qualified, j.name) for j in project.jobs), CRONJOB_LIMIT)
    index.pool_names = assign_names((p.qualified, p.name) for p in project.pools)
    raw_namespaces = [(raw, raw) for raw in _raw_namespaces(project)]
    if any(p.reservations for p in project.pools):
        raw_namespaces.append((RESERVATIONS_KEY, RESERVATIONS_NAMESPACE))
    index.namespaces = assign_names(raw_namespaces)
    headless = sorted(
        s.qualified
        for s in project.services
        if s.stateful or s.qualified in index.balances or s.qualified in index.gateways_to
    )
    # Headless Services are Services too: never a ClusterIP Service's name.
    index.headless_names = assign_names(
        ((q, f"{index.services[q].name}-headless") for q in headless),
        reserved=index.service_names.values(),
    )
    index.quotas = quota_plan(project)
    # The server's Deployment and Service share namespaces with services': never their names.
    index.server_names = assign_names(
        ((s.qualified, s.name) for s in project.servers),
        reserved=[*index.service_names.values(), *index.headless_names.values()],
    )
    index.trust_domain = project.meshes[0].trust_domain if project.meshes else None
    # Balloons are Deployments too: they must not take a service's name.
    index.balloon_names = assign_names(
        (
            ((p.qualified, f"{i:04d}"), f"balloon-{p.name}-{r.service.name}")
            for p in project.pools
            for i, r in enumerate(p.reservations)
        ),
        reserved=index.service_names.values(),
    )
    pools: list[tuple[Hashable, str]] = [(p.qualified, dns_label(p.name)) for p in project.pools]
    # The balloon class is reserved first, so a pool named `balloon` cannot take its name.
    classes = assign_names([(_BALLOON_KEY, "balloon"), *pools], LABEL_LIMIT - len("mcpdsl-"))
    index.pool_classes = {key: f"mcpdsl-{name}" for key, name in classes.items()}
    return index


def _raw_namespaces(project: m.Project) -> set[str]:
    """Every namespace string the tree uses: those of its services, jobs and server.

    Quotas live in their members' namespaces (ir/quotas.py), never in one
    named after the team.
    """
    return (
        {s.namespace for s in project.services}
        | {j.namespace for j in project.jobs}
        | {s.namespace for s in project.servers}
    )
