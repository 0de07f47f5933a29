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
    quota_names: dict[Hashable, str] = field(default_factory=dict)
    balloon_names: dict[Hashable, str] = field(default_factory=dict)
    tier_classes: dict[Hashable, str] = field(default_factory=dict)
    # Rules of each policy (by position in project.policies) that can reach a
    # service, keyed by service name; "" holds the rules that reach any service.
    # Filled on first use so that NetworkPolicies cost O(rules), not
    # O(services x rules).
    rules_reaching: dict[int, dict[str, list[m.Rule]]] = field(default_factory=dict)
    # Services by their tree-unique name (policies name services without package).
    by_name: dict[str, list[m.Service]] = field(default_factory=dict)

    def service_name(self, service: m.Service) -> str:
        return self.service_names[service.qualified]

    def namespace(self, raw: str) -> str:
        return self.namespaces[raw]

    def service_ref(self, ref: m.Ref) -> m.Service:
        return self.services[f"{ref.package}.{ref.name}"]

    def pool_ref(self, ref: m.Ref | None) -> m.Pool | None:
        return None if ref is None else self.pools.get(f"{ref.package}.{ref.name}")

    def quota_name(self, pool: m.Pool, position: int) -> str:
        return self.quota_names[(pool.qualified, f"{position:04d}")]

    def balloon_name(self, pool: m.Pool, position: int) -> str:
        return self.balloon_names[(pool.qualified, f"{position:04d}")]

    def priority_class(self, pool: m.Pool) -> str:
        return self.tier_classes[pool_tier(pool)]


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
    index.quota_names = assign_names(
        ((p.qualified, f"{i:04d}"), f"{p.name}-{q.team}")
        for p in project.pools
        for i, q in enumerate(p.quotas)
    )
    # Balloons are Deployments too: they must not take a service's name.
    index.balloon_names = assign_names(
        (
            ((p.qualified, f"{i:04d}"), f"balloon-{p.name}-{r.service.name}")
            for p in project.pools
            for i, r in enumerate(p.reservations)
        ),
        reserved=index.service_names.values(),
    )
    tiers: list[tuple[Hashable, str]] = [
        (t, dns_label(t)) for t in {pool_tier(p) for p in project.pools}
    ]
    # The balloon class is reserved first, so a tier named `balloon` cannot take its name.
    classes = assign_names([(_BALLOON_KEY, "balloon"), *tiers], LABEL_LIMIT - len("mcpdsl-"))
    index.tier_classes = {tier: f"mcpdsl-{name}" for tier, name in classes.items()}
    return index


def _raw_namespaces(project: m.Project) -> set[str]:
    """Every namespace string the tree uses: services, jobs and quota teams."""
    raw = {s.namespace for s in project.services} | {j.namespace for j in project.jobs}
    raw |= {q.team for p in project.pools for q in p.quotas}
    return raw
