"""Zero-trust policies -> NetworkPolicy (networking.k8s.io/v1): L3/L4 narrowing only.

A NetworkPolicy sees a TCP connection (source pod, namespace, port), not a
request: no principal attributes, method, path, risk or obligation.  So it can
only *narrow* — admit a superset of the sources that some request allowed at L7
could come from — and every decision stays with Envoy/OPA.  The rules used here:

* Per policy, the sources that may reach service S: OPEN if the policy
  defaults to allow; otherwise the union over its allow rules whose resource
  can be S of: the pods of X for `service X` principals, and OPEN for any
  other principal (`any`, `agent`, `user`, `tool`, `group`, `service any`).
  Conditions never narrow (a `source.ip in cidr` test reads the L7 view of
  the client, which behind a proxy is not the L3 peer address).
* Gateways that route to S add their pods to any policy that admits anything
  for S (a routed request arrives from the gateway's pods).
* An unconditional deny covering every request to S from `any` empties the
  policy's set; from `service X` it removes X from a finite set.  Other denies
  stay at L7.
* A request passes only if every policy allows it, so the final set is the
  intersection over policies.  An empty set is a default-deny ingress.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcpdsl.compile import Enforcement
from mcpdsl.compile.kubernetes_common import (
    LABEL_COMPONENT,
    LABEL_NAME,
    NAMESPACE_KEY,
    dns_label,
    metadata,
    selector,
    source_of,
)
from mcpdsl.compile.kubernetes_index import Index
from mcpdsl.compile.kubernetes_workloads import SERVICE_COMPONENT
from mcpdsl.ir import model as m

GATEWAY_COMPONENT = "gateway"
ENFORCEMENT = (
    "L3/L4 narrowing only: admits a superset of the sources the access policies can allow; "
    "principals, actions, paths, conditions, risk and obligations are enforced at L7 by "
    "Envoy/OPA"
)

Peer = tuple[str, str]  # ("service", qualified name) | ("gateway", qualified name)


@dataclass(frozen=True)
class Sources:
    """Who may open a connection: everybody (`open`) or exactly `peers`."""

    open: bool
    peers: frozenset[Peer] = frozenset()

    @property
    def empty(self) -> bool:
        return not self.open and not self.peers

    def union(self, other: Sources) -> Sources:
        if self.open or other.open:
            return OPEN
        return Sources(False, self.peers | other.peers)

    def intersect(self, other: Sources) -> Sources:
        if self.open:
            return other
        if other.open:
            return self
        return Sources(False, self.peers & other.peers)


OPEN = Sources(True)
NOBODY = Sources(False)


def matches_service(pattern: m.EntityPattern, service: m.Service) -> bool:
    """Whether an entity pattern can match the resource `service <name>`."""
    if pattern.type is None:
        return True
    return pattern.type == "service" and (pattern.ids is None or service.name in pattern.ids)


def rule_sources(rule: m.Rule, index: Index) -> Sources:
    """The L3 sources of requests an allow rule may admit (principal only)."""
    principal = rule.principal
    if principal.type != "service" or principal.ids is None:
        return OPEN
    services = _services_named(index, principal.ids)
    if len(services) < len(set(principal.ids)):  # not all workloads of this tree
        return OPEN
    return Sources(False, frozenset(("service", s.qualified) for s in services))


def _services_named(index: Index, names: tuple[str, ...]) -> list[m.Service]:
    """Services by their tree-unique name (policies name services without package)."""
    if not index.by_name:
        for service in index.project.services:
            index.by_name.setdefault(service.name, []).append(service)
    return [s for name in dict.fromkeys(names) for s in index.by_name.get(name, [])]


def _total_deny(rule: m.Rule, service: m.Service) -> bool:
    """A deny that fires on every request to `service` from its principal."""
    return (
        rule.effect == "deny"
        and rule.condition is None
        and not rule.actions
        and rule.path is None
        and matches_service(rule.resource, service)
    )


def _candidates(index: Index, position: int, policy: m.Policy, service: m.Service) -> list[m.Rule]:
    """The rules of `policy` whose resource pattern can match `service`, in source order."""
    table = index.rules_reaching.get(position)
    if table is None:
        table = {}
        for rule in policy.rules:
            resource = rule.resource
            if resource.type is None or (resource.type == "service" and resource.ids is None):
                table.setdefault("", []).append(rule)
            elif resource.type == "service" and resource.ids is not None:
                for name in dict.fromkeys(resource.ids):
                    table.setdefault(name, []).append(rule)
        index.rules_reaching[position] = table
    found = table.get("", []) + table.get(service.name, [])
    if table.get("") and table.get(service.name):
        order = {id(rule): i for i, rule in enumerate(policy.rules)}
        found.sort(key=lambda rule: order[id(rule)])
    return found


def policy_sources(
    policy: m.Policy, service: m.Service, index: Index, position: int = -1
) -> tuple[Sources, list[tuple[m.Rule, Sources]]]:
    """One policy's superset of sources for `service`, and its reaching allow rules."""
    rules = _candidates(index, position, policy, service) if position >= 0 else list(policy.rules)
    reaching = [
        (rule, rule_sources(rule, index))
        for rule in rules
        if rule.effect == "allow" and matches_service(rule.resource, service)
    ]
    sources = OPEN if policy.default == "allow" else NOBODY
    for _rule, found in reaching:
        sources = sources.union(found)
    if not sources.empty:
        gateways = index.gateways_to.get(service.qualified, [])
        sources = sources.union(
            Sources(False, frozenset(("gateway", g.qualified) for g in gateways))
        )
    for rule in rules:
        if not _total_deny(rule, service):
            continue
        if rule.principal.type is None:
            sources = NOBODY
        elif rule.principal.type == "service" and rule.principal.ids and not sources.open:
            denied = {("service", s.qualified) for s in _services_named(index, rule.principal.ids)}
            sources = Sources(False, sources.peers - denied)
    return sources, [(rule, found) for rule, found in reaching if not found.empty]


def _peer(index: Index, peer: Peer) -> dict[str, Any]:
    """A NetworkPolicyPeer selecting a service's pods in its namespace, or a gateway's pods."""
    if peer[0] == "service":
        service = index.services[peer[1]]
        name = index.service_name(service)
        return {
            "namespaceSelector": {
                "matchLabels": {NAMESPACE_KEY: index.namespace(service.namespace)}
            },
            "podSelector": {"matchLabels": selector(name, SERVICE_COMPONENT)},
        }
    gateway_name = dns_label(peer[1].rpartition(".")[2])
    return {
        "namespaceSelector": {},
        "podSelector": {
            "matchLabels": {LABEL_COMPONENT: GATEWAY_COMPONENT, LABEL_NAME: gateway_name}
        },
    }


@dataclass
class NetworkResult:
    doc: dict[str, Any]
    enforcement: list[Enforcement]


def final_sources(index: Index, service: m.Service) -> tuple[Sources, list[str]]:
    """The intersection over all policies, and the `POLICY/ID`s of the rules it reflects.

    A rule contributes when the final set is not empty and the rule admits
    some of it: an open rule admits all of it, a rule naming services admits
    the ones that survived the intersection.
    """
    final = OPEN
    reaching: list[tuple[str, Sources]] = []
    for position, policy in enumerate(index.project.policies):
        sources, rules = policy_sources(policy, service, index, position)
        final = final.intersect(sources)
        reaching.extend((f"{policy.name}/{rule.id}", found) for rule, found in rules)
    if final.empty:
        return final, []
    ids = {rid for rid, found in reaching if final.open or found.open or found.peers & final.peers}
    return final, sorted(ids)


def _ingress(index: Index, final: Sources, port: int) -> list[dict[str, Any]]:
    """No rule (default deny), one open rule on the port, or one rule listing the peers."""
    ports = [{"port": port, "protocol": "TCP"}]
    if final.empty:
        return []
    if final.open:
        return [{"ports": ports}]
    return [{"from": [_peer(index, p) for p in sorted(final.peers)], "ports": ports}]


def network_policy(index: Index, service: m.Service) -> NetworkResult:
    """The NetworkPolicy of one service and the rules it (partly) enforces."""
    final, ids = final_sources(index, service)
    name = index.service_name(service)
    namespace = index.namespace(service.namespace)
    annotations = {"mcpdsl.io/enforcement": ENFORCEMENT}
    if ids:
        annotations["mcpdsl.io/rules"] = ", ".join(ids)
    spans = sorted({s for p in index.project.policies if (s := source_of(p.span))})
    doc = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(
            name,
            package=service.package,
            component=SERVICE_COMPONENT,
            namespace=namespace,
            source=", ".join(spans) if spans else None,
            source_name=service.name,
            annotations=annotations,
        ),
        "spec": {
            "ingress": _ingress(index, final, service.port),
            "podSelector": {"matchLabels": selector(name, SERVICE_COMPONENT)},
            "policyTypes": ["Ingress"],
        },
    }
    where = f"networkpolicy {namespace}/{name} (L3/L4 narrowing only)"
    enforcement = [Enforcement(rule=i, target="kubernetes", where=where) for i in ids]
    return NetworkResult(doc, enforcement)
