"""Whole-tree checks of identity: keys on disk, workload identities, who can vouch for whom.

Run by `typecheck` after names are bound.  Each check is about facts that
only meet across declarations:

* a provider's `jwks file` holds usable public signing keys (E0904);
* a service's SPIFFE `identity` names its own namespace (E0905) and the
  declared mesh's trust domain (E0906), as `workload_identity` will certify it;
* the tree's meshes agree on one trust domain (E0907);
* an access rule that needs a verified user or agent (or reads token claims)
  is not reachable only through gateways that accept no provider (W0111): there
  no principal is ever verified, so the rule can never match as written.
"""

from __future__ import annotations

from collections.abc import Iterator

from mcpdsl.diagnostics import Diagnostic, Label, make
from mcpdsl.diagnostics.wording import shown
from mcpdsl.ir import model as m
from mcpdsl.ir.jwks import JwksCheck, load_jwks
from mcpdsl.ir.workload import parse_spiffe

#: Attributes only a verified token can supply.
_CLAIM_ATTRIBUTES = (("principal", "email"), ("principal", "groups"), ("request", "auth"))


def with_jwks_keys(project: m.Project, check: JwksCheck | None = None) -> m.Project:
    """The project with each `jwks file` provider's usable keys inlined (`Provider.jwks_keys`).

    Read once, at compile time, with the loader `check_identity` and the Envoy
    target use: what the IR says is what the check accepted and what the Envoy
    bootstrap inlines.  An unusable file inlines nothing (E0904 reports it).
    `check` judges a file's bytes (`mcpdsl.ir.jwks.load_jwks`).
    """
    providers = []
    changed = False
    for provider in project.providers:
        if provider.jwks_file is not None:
            keys = load_jwks(project.root, provider.jwks_file, check).text
            if keys != provider.jwks_keys:
                provider = provider.model_copy(update={"jwks_keys": keys})
                changed = True
        providers.append(provider)
    return project.model_copy(update={"providers": tuple(providers)}) if changed else project


def check_identity(project: m.Project, check: JwksCheck | None = None) -> list[Diagnostic]:
    """The whole-tree identity diagnostics; `check` judges a JWKS file's bytes (`load_jwks`)."""
    diags: list[Diagnostic] = []
    for provider in project.providers:
        if provider.jwks_file is not None:
            loaded = load_jwks(project.root, provider.jwks_file, check)
            if loaded.problem is not None:
                diags.append(
                    make(
                        "E0904",
                        f"jwks file `{shown(provider.jwks_file)}` of provider `{provider.name}` "
                        f"is unusable: {loaded.problem}",
                        provider.span,
                        label="tokens of this provider could not be verified",
                        help="export the issuer's public signing keys (RSA, EC or OKP) "
                        "as a JWK set",
                    )
                )
    domain = _check_meshes(project.meshes, diags)
    for service in project.services:
        _check_service_identity(service, domain, diags)
    _check_unverifiable_rules(project, diags)
    return diags


def _check_meshes(meshes: tuple[m.Mesh, ...], diags: list[Diagnostic]) -> m.Mesh | None:
    if not meshes:
        return None
    first = meshes[0]
    for other in meshes[1:]:
        if other.trust_domain != first.trust_domain:
            diags.append(
                make(
                    "E0907",
                    f"meshes `{first.name}` and `{other.name}` name different trust domains "
                    f"(`{first.trust_domain}`, `{other.trust_domain}`)",
                    other.span,
                    secondary=[Label(span=first.span, message="first mesh")] if first.span else [],
                    help="services of one tree share one trust domain; keep one `mesh`",
                )
            )
    return first


def _check_service_identity(
    service: m.Service, mesh: m.Mesh | None, diags: list[Diagnostic]
) -> None:
    if service.identity is None:
        return
    parsed = parse_spiffe(service.identity)
    if parsed is None:
        return
    if parsed.namespace != service.namespace:
        diags.append(
            make(
                "E0905",
                f"service `{service.name}` runs in namespace `{service.namespace}` but its "
                f"identity names namespace `{parsed.namespace}`",
                service.span,
                label="the mesh would certify another identity",
                help=f'write `identity "spiffe://{parsed.trust_domain}/ns/{service.namespace}'
                f'/sa/{parsed.service_account}"` or `namespace "{parsed.namespace}"`',
            )
        )
    if mesh is not None and parsed.trust_domain != mesh.trust_domain:
        diags.append(
            make(
                "E0906",
                f"service `{service.name}` has an identity in trust domain "
                f"`{parsed.trust_domain}`, but mesh `{mesh.name}` is `{mesh.trust_domain}`",
                service.span,
                secondary=[Label(span=mesh.span, message="the mesh")] if mesh.span else [],
                help=f"write the identity as `spiffe://{mesh.trust_domain}/ns/...`",
            )
        )


def _attrs(expr: m.Node) -> Iterator[m.Attr]:
    if isinstance(expr, m.Attr):
        yield expr
        return
    for value in expr.__dict__.values():
        if isinstance(value, m.Node):
            yield from _attrs(value)
        elif isinstance(value, tuple):
            for item in value:
                if isinstance(item, m.Node):
                    yield from _attrs(item)


def needs_verified_principal(rule: m.Rule) -> bool:
    """Whether a rule can only match a principal some provider has verified."""
    if rule.principal.type in ("user", "agent"):
        return True
    if rule.condition is None:
        return False
    return any(
        (a.root, *a.path[:1]) in _CLAIM_ATTRIBUTES
        or (a.root == "request" and a.path[:1] == ("auth",))
        for a in _attrs(rule.condition)
    )


def _check_unverifiable_rules(project: m.Project, diags: list[Diagnostic]) -> None:
    """W0111: rules for verified principals whose resources only gateways without providers route."""
    tools = {i.qualified: i.tool for i in project.integrations if i.tool}
    routed: dict[tuple[str, str], list[m.Gateway]] = {}  # (type, id) -> gateways routing to it
    for gw in project.gateways:
        for route in gw.routes:
            ref = route.target.ref
            if route.target.kind == "service":
                routed.setdefault(("service", ref.name), []).append(gw)
            elif (tool := tools.get(f"{ref.package}.{ref.name}")) is not None:
                routed.setdefault(("tool", tool), []).append(gw)
    for policy in project.policies:
        for rule in policy.rules:
            if not needs_verified_principal(rule) or rule.resource.ids is None:
                continue
            if rule.resource.type not in ("service", "tool"):
                continue
            gateways = [
                gw
                for ident in rule.resource.ids
                for gw in routed.get((rule.resource.type, ident.rpartition(".")[2]), ())
            ] if rule.resource.type == "service" else [
                gw for ident in rule.resource.ids for gw in routed.get(("tool", ident), ())
            ]  # fmt: skip
            if not gateways or any(gw.providers for gw in gateways):
                continue
            names = ", ".join(sorted({f"`{gw.name}`" for gw in gateways}))
            diags.append(
                make(
                    "W0111",
                    f"rule `{rule.id}` needs a verified principal, but its {rule.resource.type} "
                    f"is reached only through gateway {names}, which accepts no identity provider",
                    rule.span,
                    label="can only deny there" if rule.effect == "allow" else "can never fire",
                    help="declare a `provider` and add `accept [NAME]` to the gateway",
                )
            )
