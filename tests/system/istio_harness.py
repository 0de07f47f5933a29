"""RUNTIME.md §5 east-west: Istio's policies (CUSTOM, DENY, ALLOW) against `Engine.authorize`.

The tree is built with the kubernetes, istio and opa targets.  For each
service with a generated workload (its Deployment/StatefulSet: namespace and
pod labels), requests arrive at its sidecar from another service of the tree
(mTLS, the caller's workload identity), from an unknown workload, or in
plaintext; with or without a bearer token (`credentials.TOKEN_VARIANTS`).
istio_model decides from the generated `istio/**` documents; a matching
CUSTOM policy sends the CheckRequest the sidecar would send (source and
destination principals as SPIFFE URIs, no context extensions) to the OPA
bundle.  The contract side: principal = the verified peer's service,
`request.auth` from a token verified against the tree's providers (a token
that does not verify: 401), resource = the destination service, the path in
the engine's normal form.  The sidecar's path normalisation is
`meshConfig.pathNormalization` of `istio/mesh-config.yaml` (Istio's default,
BASE, when absent).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import yaml
from credentials import TOKEN_VARIANTS, Credentials
from envoy_matcher import RequestRejected, normalize_path
from envoy_model import HttpRequest, Outcome, Peer, parsed_path, query_of
from expect import Expectation, Expected, verify_token
from harness import NOW, Opa, Report
from istio_model import IstioRequest, decide
from traffic import METHODS, SOURCES, Drawn, _instantiate

from mcpdsl.engine import Engine
from mcpdsl.ir import model as m
from mcpdsl.ir.workload import DEFAULT_TRUST_DOMAIN, workload_identity

__all__ = ["istio_differential"]

_WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")


def _docs(files: Mapping[str, bytes], prefix: str) -> list[dict[str, Any]]:
    out = []
    for path, content in sorted(files.items()):
        if path.startswith(prefix) and path.endswith((".yaml", ".yml")):
            out.extend(d for d in yaml.safe_load_all(content) if isinstance(d, dict))
    return out


def _normalisation(files: Mapping[str, bytes]) -> str:
    for doc in _docs(files, "istio/mesh-config"):
        found = doc.get("pathNormalization") or doc.get("meshConfig", {}).get("pathNormalization")
        if isinstance(found, dict) and "normalization" in found:
            return str(found["normalization"])
    return "BASE"


def _sidecar_path(raw: str, mode: str) -> str:
    if mode == "NONE":
        return raw
    return normalize_path(raw, dots=True, merge_slashes=mode != "BASE")


def istio_differential(
    engine: Engine, files: Mapping[str, bytes], *, requests: int, seed: int
) -> Report:
    """Draw `requests` east-west requests per workload and compare both decisions."""
    project = engine.project
    docs = _docs(files, "istio/")
    workloads = {
        (d["metadata"].get("namespace", "default"), d["metadata"]["name"]): d["spec"]["template"][
            "metadata"
        ].get("labels", {})
        for d in _docs(files, "kubernetes/")
        if d.get("kind") in _WORKLOADS
    }
    opa = Opa(files)
    creds = Credentials.make()
    jwks = creds.jwks()
    mode = _normalisation(files)
    domain = project.meshes[0].trust_domain if project.meshes else DEFAULT_TRUST_DOMAIN

    def identity(s: m.Service) -> str:
        return workload_identity(
            namespace=s.namespace, declared=s.identity, fallback_account=s.name, trust_domain=domain
        ).spiffe_id

    uris = {p.jwks_uri: jwks for p in project.providers if p.jwks_uri}
    served = {p.qualified: jwks for p in project.providers}
    report = Report()
    rng = random.Random(seed)
    callers = list(project.services)
    # callers some allow rule lets reach each destination, drawn more often
    allowed: dict[str, list[m.Service]] = {}
    rules = [r for p in project.policies for r in p.rules if r.effect == "allow"]
    for r in rules:
        if r.principal.type == "service" and r.resource.type == "service":
            for target in r.resource.ids or [s.name for s in callers]:
                allowed.setdefault(target, []).extend(
                    s for s in callers if r.principal.ids is None or s.name in r.principal.ids
                )
    for dest in project.services:
        labels = workloads.get((dest.namespace, dest.name))
        if labels is None:
            continue
        paths = [r.path for p in project.policies for r in p.rules if r.path] or ["/"]
        for _ in range(requests):
            axes: dict[str, str] = {}
            pool = allowed.get(dest.name) if rng.random() < 0.5 else None
            caller = rng.choice(pool) if pool else rng.choice([*callers, None, None])
            mtls = caller is not None or rng.random() < 0.5
            peer_id = identity(caller) if caller is not None else None
            if caller is None and mtls:
                peer_id = f"spiffe://{domain}/ns/elsewhere/sa/stranger"
            axes["peer"] = "service" if caller else "unknown" if mtls else "plaintext"
            raw = _instantiate(rng.choice(paths), rng)
            if rng.random() < 0.2:
                raw = raw.replace("/", "//", 1) if rng.random() < 0.5 else raw + "/./x/.."
                axes["path"] = "non-normal"
            else:
                axes["path"] = "rule"
            actions = sorted(
                {a for r in rules if dest.name in (r.resource.ids or ()) for a in r.actions}
            )
            method = rng.choice(actions) if actions and rng.random() < 0.6 else rng.choice(METHODS)
            headers: dict[str, str] = {"host": dest.name}
            variant = rng.choice(("none", *TOKEN_VARIANTS))
            axes["token"] = variant
            provider = rng.choice(project.providers) if project.providers else None
            if variant != "none":
                token = creds.token(
                    variant,
                    {"sub": "alice", "groups": ["sre"], "amr": ["mfa"]},
                    issuer=provider.issuer if provider else "https://idp.test",
                    audience=provider.audiences[0] if provider and provider.audiences else None,
                    now=NOW,
                    skew=provider.clock_skew if provider else 60,
                )
                headers["authorization"] = f"Bearer {token}"
            source_ip = rng.choice(SOURCES)
            drawn = Drawn(
                HttpRequest(
                    method,
                    raw,
                    tuple(headers.items()),
                    source_ip=source_ip,
                    tls=mtls,
                    peer=Peer(uri_sans=(peer_id,)) if peer_id else None,
                ),
                tuple(sorted({**axes, "destination": dest.name}.items())),
            )
            expected = _expected(engine, project, dest, drawn.request, served, mode)
            try:
                path = _sidecar_path(raw, mode)
            except RequestRejected as exc:
                report.add(drawn, expected, Outcome(exc.status, "sidecar", exc.reason))
                continue
            req = IstioRequest(
                namespace=dest.namespace,
                labels=labels,
                mtls=mtls,
                peer=peer_id.removeprefix("spiffe://") if peer_id else None,
                source_ip=source_ip,
                method=method,
                host=dest.name,
                port=dest.port,
                path=path,
                headers=headers,
            )
            dest_id = identity(dest)

            def ext_authz(r: IstioRequest, peer: str | None = peer_id, to: str = dest_id) -> bool:
                return opa([_check_request(r, peer, to)])[0] is True

            result = decide(docs, req, jwks=uris, now=NOW, ext_authz=ext_authz)
            stage = "istio" if result.status != 0 else "peer-authn"
            report.add(drawn, expected, Outcome(result.status, stage, result.reason))
    return report


def _expected(
    engine: Engine,
    project: m.Project,
    dest: m.Service,
    req: HttpRequest,
    served: Mapping[str, Any],
    mode: str,
) -> Any:
    """The contract's decision east-west (see the module docstring).

    The canonical `request.path` is the path the sidecar hands on after the
    mesh's own normalisation (Istio's default `BASE` keeps `//`), which the
    engine then refuses when it is not in normal form.
    """
    headers = dict(req.headers)
    principal: dict[str, Any] = {}
    auth: dict[str, Any] = {}
    source: dict[str, Any] = {"ip": req.source_ip}
    if req.peer is not None:
        by_id = {
            workload_identity(
                namespace=s.namespace,
                declared=s.identity,
                fallback_account=s.name,
                trust_domain=project.meshes[0].trust_domain
                if project.meshes
                else DEFAULT_TRUST_DOMAIN,
            ).spiffe_id: s
            for s in project.services
        }
        caller = by_id.get(req.peer.uri_sans[0])
        if caller is not None:
            principal = {"type": "service", "id": caller.name}
            source["namespace"] = caller.namespace
    token = headers.get("authorization", "").removeprefix("Bearer ") or None
    if token is not None and project.providers:
        verified = verify_token(token, project.providers, served, NOW)
        if verified is None:
            return Expected(False, "jwt", "the bearer token does not verify")
        _, auth = Expectation._claims_principal(*verified)
    try:
        path = _sidecar_path(req.path, mode)
    except RequestRejected as exc:
        return Expected(False, "hcm", str(exc))
    canonical = {
        "principal": principal,
        "action": req.method,
        "resource": {"type": "service", "id": dest.name},
        "request": {"path": path, "headers": {}, "auth": auth},
        "source": source,
        "context": {},
    }
    decision = engine.authorize(canonical)
    return Expected(decision.enforced, "policy", "", canonical, decision)


def _check_request(req: IstioRequest, peer: str | None, destination: str) -> dict[str, Any]:
    """The CheckRequest an Istio sidecar's ext_authz filter sends for a CUSTOM policy."""
    source: dict[str, Any] = {
        "address": {"socketAddress": {"address": req.source_ip, "portValue": 41000}}
    }
    if peer is not None and req.mtls:
        source["principal"] = peer
    headers = {**req.headers, ":method": req.method, ":path": req.path, ":authority": req.host}
    headers[":scheme"] = "http"
    return {
        "attributes": {
            "source": source,
            "destination": {
                "address": {"socketAddress": {"address": "10.0.0.2", "portValue": req.port}},
                "principal": destination,
            },
            "request": {
                "http": {
                    "method": req.method,
                    "path": req.path,
                    "host": req.host,
                    "headers": headers,
                    "scheme": "http",
                    "protocol": "HTTP/1.1",
                }
            },
            "contextExtensions": {},
            "metadataContext": {},
        },
        "parsed_path": parsed_path(req.path),
        "parsed_query": query_of(req.path),
        "parsed_body": None,
        "truncated_body": False,
        "version": {"encoding": "protojson", "ext_authz": "v3"},
    }
