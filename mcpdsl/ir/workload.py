"""Who a service is in the cluster: its namespace, service account and SPIFFE id.

One function answers this for every stage that needs it, so that the
ServiceAccount the Kubernetes target generates, the principals an Istio
AuthorizationPolicy or an Envoy RBAC filter matches, the SPIFFE id the
evaluator compares and the diagnostics of the front end can never disagree.

The rule is the one Istio and SPIRE's Kubernetes attestor follow: a pod runs
as the service account `S` of its namespace `N`, and the mesh vouches for it
as `spiffe://TRUST-DOMAIN/ns/N/sa/S`.  A service that declares `identity`
gets that account (so the declared id becomes true once the ServiceAccount
is deployed); one that does not is given an account named after the
workload by the target (`fallback_account`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Istio's and SPIRE's default trust domain when a tree declares none.
DEFAULT_TRUST_DOMAIN = "cluster.local"

# spiffe://<trust domain>/ns/<namespace>/sa/<service account>, nothing more.
K8S_SPIFFE_PATTERN = (
    r"^spiffe://(?P<td>[a-z0-9._-]+)/ns/(?P<ns>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
    r"/sa/(?P<sa>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)$"
)
_K8S_SPIFFE = re.compile(K8S_SPIFFE_PATTERN)


@dataclass(frozen=True, order=True)
class WorkloadIdentity:
    """A Kubernetes workload identity as the mesh certifies it."""

    trust_domain: str
    namespace: str
    service_account: str

    @property
    def spiffe_id(self) -> str:
        """The URI SAN of the workload's certificate."""
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def principal(self) -> str:
        """The form Istio's `source.principal` / `principals` compare against."""
        return f"{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"


def parse_spiffe(uri: str) -> WorkloadIdentity | None:
    """The identity of a Kubernetes-shaped SPIFFE id, or None for any other shape."""
    found = _K8S_SPIFFE.fullmatch(uri)  # not `match`: `$` would accept a final newline
    if found is None:
        return None
    return WorkloadIdentity(found["td"], found["ns"], found["sa"])


def workload_identity(
    *,
    namespace: str,
    declared: str | None,
    fallback_account: str,
    trust_domain: str | None = None,
) -> WorkloadIdentity:
    """The identity a service's pods run as.

    `namespace` is the service's namespace as the target writes it, `declared`
    its `identity` clause (if any), `fallback_account` the name the target
    gives the workload.  A declared Kubernetes-shaped SPIFFE id fixes the
    account and the trust domain; its namespace is the service's namespace
    (a mismatch is a front-end diagnostic, so here the service's namespace
    wins: that is where the pods run).
    """
    parsed = parse_spiffe(declared) if declared is not None else None
    if parsed is not None:
        return WorkloadIdentity(parsed.trust_domain, namespace, parsed.service_account)
    return WorkloadIdentity(trust_domain or DEFAULT_TRUST_DOMAIN, namespace, fallback_account)
