"""The Istio target: east-west zero trust for the workloads the Kubernetes target runs.

    istio/<namespace>/peerauthentication-default.yaml        mTLS STRICT, per namespace
    istio/<namespace>/requestauthentication-<svc>-jwt.yaml   the declared JWT providers
    istio/<namespace>/authorizationpolicy-<svc>-ext-authz.yaml  CUSTOM -> ext_authz
    istio/<namespace>/authorizationpolicy-<svc>-deny.yaml    DENY, the exact deny rules
    istio/<namespace>/authorizationpolicy-<svc>-allow.yaml   ALLOW, when every allow is exact
    istio/mesh-config.yaml                                   the ext_authz extension provider

Per workload (one per `service`, selected by the labels of its Deployment,
named by `kubernetes_index`), the rules that can reach it are split as the
Envoy target splits a route's (`envoy_authz`): if every relevant rule is
exactly expressible (`istio_rules`) and no obligation can attach to an allow,
Istio decides alone (DENY with every deny rule, ALLOW with the allow rules of
the `default deny` policies, ANDed across policies); otherwise a CUSTOM policy
sends every request to ext_authz, which decides on everything, and DENY keeps
the exactly expressible deny rules (deny overrides, so this is safe).  The
allow side is never encoded partially.  Istio evaluates CUSTOM, then DENY,
then ALLOW; a workload with an ALLOW policy denies what matches none of it.

Principals are workload identities (`mcpdsl.ir.workload.workload_identity`),
the very names the Kubernetes target gives the ServiceAccounts.  What is
supported and why: targets/istio/README.md.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcpdsl.compile import Artifact, Enforcement, Status, TargetContext, TargetOutput
from mcpdsl.compile.envoy_authz import Resource, delegated_status, resource_matches
from mcpdsl.compile.istio_rules import (
    TRUE,
    Dnf,
    Facts,
    Inexpressible,
    Translator,
    dnf_and,
    dnf_or,
    istio_rules,
    rule_dnf,
)
from mcpdsl.compile.kubernetes_common import (
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_PART_OF,
    MANAGED_BY,
    label_value,
    selector,
    source_of,
)
from mcpdsl.compile.kubernetes_index import Index, build_index
from mcpdsl.compile.kubernetes_workloads import SERVICE_COMPONENT
from mcpdsl.compile.serialize import dump_yaml
from mcpdsl.compile.server import SERVER
from mcpdsl.ir import model as m
from mcpdsl.ir.door import DoorMapping, door_mapping
from mcpdsl.ir.reads import attrs, reads_risk
from mcpdsl.ir.workload import WorkloadIdentity, workload_identity

NAME = "istio"

#: The extension provider the CUSTOM policies name (meshConfig.extensionProviders).
EXT_AUTHZ_PROVIDER = "mcpdsl-ext-authz"
#: Where it is when the tree declares no `server`: the OPA-Envoy plugin's gRPC port, as
#: the Envoy target's `opa` cluster (with a `server`, its Service: `mcpdsl serve` answers
#: the same Check API); how long the sidecar waits (fail closed).
EXT_AUTHZ_SERVICE = "opa.mcpdsl-system.svc.cluster.local"
EXT_AUTHZ_PORT = 9191
EXT_AUTHZ_TIMEOUT = "0.5s"
#: Istio rules one AuthorizationPolicy may hold; beyond, the workload goes to ext_authz.
MAX_POLICY_RULES = 512
#: Istio's JWT clock skew (RequestAuthentication has no field for it).
ISTIO_CLOCK_SKEW = 60

SECURITY = "security.istio.io/v1"
ANNOTATION_RULES = "mcpdsl.io/rules"
ANNOTATION_SOURCE = "mcpdsl.io/source"
_TOKEN_PRINCIPALS = ("user", "agent", "group", "tool")
_CLAIM = re.compile(r"^[A-Za-z0-9_:-]+$")
_URI = re.compile(r"^https?://[^\s]+$")


# ------------------------------------------------------------------ entry


def compile(project: m.Project, ctx: TargetContext) -> TargetOutput:
    """PeerAuthentication, RequestAuthentication and AuthorizationPolicies (docstring)."""
    out = TargetOutput()
    if not project.services:
        return out
    mesh = _Mesh.of(project, out)
    if not project.policies:
        out.report(
            "B0117",
            "every workload's sidecar denies every request: the tree declares no access `policy`",
            project.services[0].span,
            label="its sidecar refuses every request, as do the other workloads'",
            help="declare who may call what, e.g. `policy open { default allow }` to open "
            "the workloads deliberately, or `allow` rules for the intended callers",
        )
    docs: dict[str, dict[str, Any]] = {}
    for namespace in sorted({mesh.index.namespace(s.namespace) for s in project.services}):
        _add(docs, _peer_authentication(namespace))
    custom = False
    for service in project.services:
        workload = _Workload(mesh, service, out)
        for doc in workload.documents():
            _add(docs, doc)
        custom = custom or workload.delegated
    artifacts = [Artifact(path, dump_yaml(doc)) for path, doc in sorted(docs.items())]
    if custom:
        provider = mesh.index.server_grpc()
        artifacts.append(Artifact(f"{NAME}/mesh-config.yaml", dump_yaml(mesh_config(provider))))
    out.artifacts.extend(sorted(artifacts, key=lambda a: a.path))
    return out


def _add(docs: dict[str, dict[str, Any]], doc: dict[str, Any]) -> None:
    meta = doc["metadata"]
    path = f"{NAME}/{meta['namespace']}/{doc['kind'].lower()}-{meta['name']}.yaml"
    if path in docs:
        raise AssertionError(f"istio target produced {path} twice")
    docs[path] = doc


def mesh_config(provider: tuple[str, int] | None = None) -> dict[str, Any]:
    """The IstioOperator overlay declaring the ext_authz provider CUSTOM policies name.

    `provider` is the tree's decision server (`Index.server_grpc()`: the Service the
    Kubernetes target emits for its `server`); without one, the OPA-Envoy plugin.
    """
    service, port = provider if provider is not None else (EXT_AUTHZ_SERVICE, EXT_AUTHZ_PORT)
    return {
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "metadata": {"name": EXT_AUTHZ_PROVIDER, "namespace": "istio-system"},
        "spec": {
            "meshConfig": {
                "extensionProviders": [
                    {
                        "name": EXT_AUTHZ_PROVIDER,
                        "envoyExtAuthzGrpc": {
                            "service": service,
                            "port": port,
                            "timeout": EXT_AUTHZ_TIMEOUT,
                            "failOpen": False,
                        },
                    }
                ]
            }
        },
    }


def _peer_authentication(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": SECURITY,
        "kind": "PeerAuthentication",
        "metadata": {
            "name": "default",
            "namespace": namespace,
            "labels": {LABEL_MANAGED_BY: MANAGED_BY},
        },
        "spec": {"mtls": {"mode": "STRICT"}},
    }


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


# ------------------------------------------------------------- the mesh


@dataclass
class _Mesh:
    """What every workload shares: names, identities, providers, policies."""

    project: m.Project
    index: Index
    identity: dict[str, WorkloadIdentity]  # qualified service -> identity
    principals: dict[str, tuple[str, ...]]  # service name -> principals ("" = shared)
    namespaces_exact: bool
    jwt_rules: list[dict[str, Any]]
    mfa_claim: tuple[str, tuple[str, ...]] | None
    door: DoorMapping  # what CUSTOM -> ext_authz sees: the east-west door (docs/runtime.md)
    policies: list[tuple[str, m.Policy]] = field(default_factory=list)

    @staticmethod
    def of(project: m.Project, out: TargetOutput) -> _Mesh:
        index = build_index(project)
        domains = sorted({mesh.trust_domain for mesh in project.meshes})
        if len(domains) > 1:
            out.report(
                "B0163",
                f"the tree declares {len(domains)} mesh trust domains; workload identities use "
                f"{_quote(domains[0])}",
                project.meshes[0].span,
                help="declare one `mesh` per tree",
            )
        identity = {
            s.qualified: workload_identity(
                namespace=index.namespace(s.namespace),
                declared=s.identity,
                fallback_account=index.service_name(s),
                trust_domain=domains[0] if domains else None,
            )
            for s in project.services
        }
        owners: dict[str, list[m.Service]] = {}
        for s in project.services:
            owners.setdefault(identity[s.qualified].principal, []).append(s)
        principals: dict[str, tuple[str, ...]] = {}
        for principal, group in sorted(owners.items()):
            shared = len({s.name for s in group}) > 1
            if shared:
                _shared_identity(group, principal, out)
            for s in group:
                known = principals.get(s.name, ())
                principals[s.name] = tuple(sorted({*known, "" if shared else principal}))
        names = Counter(p.name for p in project.policies)
        return _Mesh(
            project=project,
            index=index,
            identity=identity,
            principals=principals,
            namespaces_exact=all(
                index.namespace(s.namespace) == s.namespace for s in project.services
            ),
            jwt_rules=_jwt_rules(project, out),
            mfa_claim=_mfa_claim(project.providers),
            door=door_mapping(project, None),
            policies=[(p.name if names[p.name] == 1 else p.qualified, p) for p in project.policies],
        )


def _shared_identity(group: list[m.Service], principal: str, out: TargetOutput) -> None:
    names = ", ".join(f"`{n}`" for n in sorted({s.name for s in group}))
    out.unsupported(
        "B0161",
        f"services {names} run as one workload identity, {_quote(principal)}; the mesh cannot "
        "tell them apart",
        group[0].span,
        help="give each service its own service account (`identity`)",
        notes=(
            "rules naming these services as principals are decided by ext_authz, which sees "
            "the same shared identity",
        ),
    )


def _mfa_claim(providers: tuple[m.Provider, ...]) -> tuple[str, tuple[str, ...]] | None:
    """The one (claim, values) every provider maps `request.auth.mfa` from, if there is one."""
    mappings = {(p.mfa_claim, tuple(sorted(set(p.mfa_values)))) for p in providers}
    if len(mappings) != 1:
        return None
    claim, values = next(iter(mappings))
    if claim is None or not _CLAIM.match(claim) or not values:
        return None
    if any("*" in v or not v for v in values):
        return None
    return claim, values


def _jwt_rules(project: m.Project, out: TargetOutput) -> list[dict[str, Any]]:
    """One `jwtRules` entry per provider Istio can verify; a coded warning for the others."""
    rules: list[dict[str, Any]] = []
    issuers: dict[str, str] = {}
    for provider in project.providers:
        try:
            if provider.issuer in issuers:
                raise ValueError(
                    f"its issuer is also provider `{issuers[provider.issuer]}`'s, and a "
                    "sidecar verifies one key set per issuer"
                )
            rules.append(_jwt_rule(project, provider))
            issuers[provider.issuer] = provider.name
        except ValueError as exc:
            out.unsupported(
                "B0160",
                f"provider `{provider.name}` cannot be verified by Istio: {exc}",
                provider.span,
                help="give the provider an `https://` JWKS URL or a JWKS file inside the tree",
                notes=(
                    "tokens it issues are not verified at the sidecars, so they prove "
                    "nothing there",
                ),
            )
            continue
        if provider.clock_skew != ISTIO_CLOCK_SKEW:
            out.report(
                "B0164",
                f"provider `{provider.name}` allows {provider.clock_skew}s of clock skew; "
                f"Istio's sidecars allow {ISTIO_CLOCK_SKEW}s",
                provider.span,
            )
    return rules


def _jwt_rule(project: m.Project, provider: m.Provider) -> dict[str, Any]:
    if not provider.issuer or any(c.isspace() for c in provider.issuer):
        raise ValueError(f"the issuer {_quote(provider.issuer)} is not a usable issuer")
    rule: dict[str, Any] = {"issuer": provider.issuer, "forwardOriginalToken": True}
    if provider.audiences:
        rule["audiences"] = list(provider.audiences)
    if provider.jwks_uri is not None:
        if not _URI.match(provider.jwks_uri):
            raise ValueError(f"the JWKS URL {_quote(provider.jwks_uri)} is not an http(s) URL")
        rule["jwksUri"] = provider.jwks_uri
    elif provider.jwks_file is not None:
        rule["jwks"] = _read_jwks(project.root, provider.jwks_file)
    return rule


def _read_jwks(root: str, name: str) -> str:
    """The JWKS file as compact JSON, read with the tree's file rules (`mcpdsl.reader`)."""
    from mcpdsl.reader import Refused, read_source

    if not root:
        raise ValueError(f"the JWKS file {_quote(name)} has no tree root to be read from")
    base = Path(root)
    try:
        data = read_source(base, base / name)
        keys = json.loads(data.decode("utf-8"))
    except Refused as exc:
        raise ValueError(f"the JWKS file {_quote(name)} is not read: {exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"the JWKS file {_quote(name)} is not JSON ({exc})") from None
    if not isinstance(keys, dict) or not isinstance(keys.get("keys"), list):
        raise ValueError(f"the JWKS file {_quote(name)} has no `keys` list")
    return json.dumps(keys, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# ------------------------------------------------------------ a workload


_Row = tuple[str, m.Rule, Dnf | None, str]  # rule key, rule, alternatives, why not


class _Workload:
    """The Istio configuration of one service's pods."""

    def __init__(self, mesh: _Mesh, service: m.Service, out: TargetOutput) -> None:
        self.mesh = mesh
        self.service = service
        self.out = out
        self.name = mesh.index.service_name(service)
        self.namespace = mesh.index.namespace(service.namespace)
        self.where = f"workload {self.namespace}/{self.name}"
        self.resource = Resource("service", service.name)
        self.relevant = [
            (label, policy, rule)
            for label, policy in mesh.policies
            for rule in policy.rules
            if resource_matches(rule.resource, self.resource)
        ]
        self.verifies = bool(mesh.jwt_rules) and any(
            _needs_token(rule, policy) for _, policy, rule in self.relevant
        )
        self.facts = Facts(
            service=service.name,
            identities=mesh.principals,
            namespaces_exact=mesh.namespaces_exact,
            verifies_tokens=self.verifies,
            mfa_claim=mesh.mfa_claim,
        )
        self.deny: list[tuple[str, Dnf]] = []
        self.allow: list[dict[str, object]] | None = None
        self.delegated = False
        self.reason = ""
        self.keys: list[str] = []
        if mesh.policies:
            self._decide()
        else:  # no policy allows anything: an ALLOW policy without rules refuses every request
            self.allow = []

    # ---- decision

    def _decide(self) -> None:
        rows: dict[str, list[_Row]] = {}
        reasons: list[str] = []
        obligations: dict[str, list[str]] = {}
        for label, _policy, rule in self.relevant:
            key = f"{label}/{rule.id}"
            try:
                rows.setdefault(label, []).append((key, rule, rule_dnf(rule, self.facts), ""))
            except Inexpressible as exc:
                rows.setdefault(label, []).append((key, rule, None, str(exc)))
                reasons.append(f"{key} {exc}")
        for label, policy in self.mesh.policies:
            mine = rows.get(label, [])
            can_allow = policy.default == "allow" or any(r.effect == "allow" for _, r, _, _ in mine)
            applies = sorted({q.obligation for q in policy.requires if self._requires(q)})
            obligations[label] = applies
            if can_allow and applies:
                reasons.append(
                    f"{label} may require {', '.join(applies)}, which Istio cannot verify"
                )
        deny = [
            (key, dnf)
            for r in rows.values()
            for key, rule, dnf, _ in r
            if rule.effect == "deny" and dnf is not None
        ]
        if sum(len(d) for _, d in deny) > MAX_POLICY_RULES:
            reasons.append(f"its deny rules expand to more than {MAX_POLICY_RULES} Istio rules")
            self._too_large("deny")
            deny = []
        allow: list[dict[str, object]] | None = None
        if not reasons:
            try:
                allow = self._allow_rules(rows)
            except Inexpressible as exc:
                reasons.append(f"the allow rules {exc}")
                self._too_large("allow")
        self.delegated = bool(reasons)
        self.reason = reasons[0] if reasons else ""
        self.deny = deny
        self.allow = None if self.delegated else allow
        self._records(rows, obligations)

    def _requires(self, req: m.Requirement) -> bool:
        if req.condition is None:
            return True
        try:
            return Translator(self.facts).condition(req.condition) != []
        except Inexpressible:
            return True

    def _allow_rules(self, rows: dict[str, list[_Row]]) -> list[dict[str, object]] | None:
        """The ALLOW rules (AND over `default deny` policies), None when no ALLOW policy."""
        per_policy: list[Dnf] = []
        for label, policy in self.mesh.policies:
            if policy.default == "allow":
                continue
            alternatives = [d for _, r, d, _ in rows.get(label, []) if r.effect == "allow"]
            per_policy.append(dnf_or([d for d in alternatives if d is not None], MAX_POLICY_RULES))
        if not per_policy:
            return None
        both = dnf_and(per_policy, MAX_POLICY_RULES)
        return istio_rules(both) if both != TRUE else [{}]

    def _too_large(self, side: str) -> None:
        self.out.report(
            "B0162",
            f"the {side} rules reaching service `{self.service.name}` do not fit one Istio "
            f"AuthorizationPolicy ({MAX_POLICY_RULES} rules); ext_authz decides for {self.where}",
            self.service.span,
        )

    # ---- records

    def _records(self, rows: dict[str, list[_Row]], obligations: dict[str, list[str]]) -> None:
        by_label = dict(self.mesh.policies)
        for label, policy_rows in rows.items():
            policy = by_label[label]
            for key, rule, dnf, why in policy_rows:
                span = rule.span or policy.span
                if (
                    rule.effect == "deny"
                    and dnf is not None
                    and any(k == key for k, _ in self.deny)
                ):
                    self._record(key, f"istio deny, {self.where}", span)
                    self.keys.append(key)
                elif self.delegated:
                    self._delegated(key, rule, policy, obligations[label], why, span)
                elif policy.default == "allow":
                    self._record(key, f"default allow (no istio allow needed), {self.where}", span)
                elif dnf is not None:
                    self._record(key, f"istio allow, {self.where}", span)
                    self.keys.append(key)

    def _record(self, key: str, where: str, span: Any) -> None:
        self.out.enforced(Enforcement(rule=key, target=NAME, where=where), span)

    def _delegated(
        self,
        key: str,
        rule: m.Rule,
        policy: m.Policy,
        obligations: list[str],
        why: str,
        span: Any,
    ) -> None:
        because = why or f"workload delegated: {self.reason}"
        where = f"istio custom -> ext_authz, {self.where} ({because})"
        status, missing = delegated_status(rule, policy, obligations, self.mesh.door)
        if rule.principal.type in _TOKEN_PRINCIPALS and not self.mesh.jwt_rules:
            status = Status.NOT_ENFORCED if rule.effect == "deny" else Status.NARROWED
            missing = (
                *missing,
                f"no `provider` Istio can verify is declared, so no token names a "
                f"`{rule.principal.type}` at the sidecar",
            )
        record = Enforcement(rule=key, target=NAME, where=where, status=status)
        if SERVER.needs(rule, policy) and self.mesh.index.server_grpc() is None:
            site = f"at the sidecar of {self.where}"
            SERVER.finding(self.out, record, rule, policy, span, site, missing)
            return
        if status is Status.ENFORCED:
            self.out.enforced(record, span)
            return
        verb = "is not enforced" if status is Status.NOT_ENFORCED else "is narrowed"
        fails = "fails open" if status is Status.NOT_ENFORCED else "fails closed"
        self.out.enforced(
            record,
            span,
            message=f"{rule.effect} rule `{key}` {verb} at the sidecar of {self.where} ({fails})",
            why=(*missing, f"there: {where}"),
            help="enforce it where the attributes exist (the embedded engine, or OPA queried "
            "with the whole request), or decide on what the sidecar sees",
        )

    # ---- documents

    def documents(self) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        if self.verifies:
            docs.append(
                self._doc("RequestAuthentication", "jwt", {"jwtRules": self.mesh.jwt_rules})
            )
        if self.delegated:
            docs.append(
                self._doc(
                    "AuthorizationPolicy",
                    "ext-authz",
                    {"action": "CUSTOM", "provider": {"name": EXT_AUTHZ_PROVIDER}, "rules": [{}]},
                )
            )
        deny_rules = istio_rules([term for _, dnf in self.deny for term in dnf])
        if deny_rules:
            keys = [k for k, _ in self.deny]
            docs.append(
                self._doc(
                    "AuthorizationPolicy", "deny", {"action": "DENY", "rules": deny_rules}, keys
                )
            )
        if self.allow is not None:
            spec: dict[str, Any] = {"action": "ALLOW"}
            if self.allow:
                spec["rules"] = self.allow
            keys = [k for k in self.keys if k not in {d for d, _ in self.deny}]
            docs.append(self._doc("AuthorizationPolicy", "allow", spec, keys))
        return docs

    def _doc(
        self, kind: str, suffix: str, spec: dict[str, Any], keys: list[str] | None = None
    ) -> dict[str, Any]:
        labels = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_NAME: self.name}
        part_of = label_value(self.service.package)
        if part_of:
            labels[LABEL_PART_OF] = part_of
        annotations: dict[str, str] = {}
        source = source_of(self.service.span)
        if source is not None:
            annotations[ANNOTATION_SOURCE] = source
        if keys:
            annotations[ANNOTATION_RULES] = ", ".join(keys)
        meta: dict[str, Any] = {
            "name": f"{self.name}-{suffix}",
            "namespace": self.namespace,
            "labels": labels,
        }
        if annotations:
            meta["annotations"] = annotations
        body = {"selector": {"matchLabels": selector(self.name, SERVICE_COMPONENT)}, **spec}
        return {"apiVersion": SECURITY, "kind": kind, "metadata": meta, "spec": body}


def _needs_token(rule: m.Rule, policy: m.Policy) -> bool:
    """Whether deciding the rule needs a verified token at the sidecar."""
    if rule.principal.type in _TOKEN_PRINCIPALS:
        return True
    if rule.effect == "allow" and policy.requires:
        return True
    reads = [rule.condition] if rule.condition is not None else []
    if reads_risk(rule.condition):
        reads.extend(term.condition for term in policy.risk)
    return any(_reads(expr, "request.auth") for expr in reads)


def _reads(expr: m.Node | None, prefix: str) -> bool:
    """Whether `expr` reads the attribute `prefix` or one under it."""
    return any(a.dotted() == prefix or a.dotted().startswith(prefix + ".") for a in attrs(expr))
