"""The door mapping: which verified facts of a CheckRequest become which request attributes.

An Envoy gateway (ext_authz) and an Istio sidecar (CUSTOM) ask for a decision
with a `CheckRequest`; the evaluator (`mcpdsl.evaluate.checkrequest`) and the
generated Rego (`targets/opa/envoy.rego.j2`, reading `data.mcp.meta.doors`)
turn it into the canonical request of docs/semantics.md.  Both read this one
frozen table, built from the IR by `door_mapping`, so they cannot drift; and
the Envoy target derives from the same table which attributes a gateway's
door provides (`DoorMapping.provides`), which is what its enforcement table
reports (docs/runtime.md).

It lives in `ir` (not in `evaluate`) because the evaluator and the target
compilers both need it and may not import each other (docs/architecture.md).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from mcpdsl.ir import model as m
from mcpdsl.ir.workload import DEFAULT_TRUST_DOMAIN, parse_spiffe, workload_identity

#: The dynamic-metadata namespace in which Envoy's jwt_authn filter leaves each verified
#: payload, under the key of the provider's qualified name (`payload_in_metadata`).
JWT_NAMESPACE = "envoy.filters.http.jwt_authn"
#: The per-route ext_authz context extensions the Envoy target sets (compile/envoy.py).
GATEWAY_KEY = "mcpdsl.gateway"
ROUTE_KEY = "mcpdsl.route"
#: The door of east-west traffic (Istio CUSTOM, no gateway extension) in `doors`.
MESH_DOOR = ""

#: Bounds on what a CheckRequest may carry: a longer string, or more headers, is
#: refused (a deny with a reason), never evaluated.
MAX_TEXT = 65536
MAX_HEADERS = 512
MAX_GROUPS = 1024

#: A trusted `number` header: a decimal without exponent, short enough that every
#: evaluator (Python, OPA's `to_number`) reads the same exact value.
NUMBER_PATTERN = r"^-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?$"

#: More query parameters than this are refused (bounds the work of every evaluator).
MAX_QUERY_PARAMETERS = 256
#: `mcpdsl.route`: a route index in decimal, no sign, no leading zero.
INDEX_PATTERN = r"^(0|[1-9][0-9]{0,5})$"
#: A `%` not followed by two hex digits (a malformed escape in a query component).
BAD_ESCAPE_PATTERN = r"%([^0-9A-Fa-f]|[0-9A-Fa-f]([^0-9A-Fa-f]|$)|$)"

#: Why a CheckRequest is refused, checked in this order by the evaluator and the Rego
#: (`{}` is the kind of a non-object input, or a provider's qualified name).
REFUSALS: dict[str, str] = {
    "not_object": "the CheckRequest is {}, not a JSON object",
    "no_attributes": "the CheckRequest has no `attributes` object",
    "bad_extensions": "`attributes.contextExtensions` is not an object",
    "unknown_gateway": "the CheckRequest's `mcpdsl.gateway` names no gateway of this tree",
    "no_http": "the CheckRequest has no `attributes.request.http` object",
    "bad_method": "`attributes.request.http.method` is not a string",
    "bad_path": "`attributes.request.http.path` is not a string",
    "bad_headers": "`attributes.request.http.headers` is not an object",
    "many_headers": f"the request has more than {MAX_HEADERS} headers",
    "bad_header": "a header value is not a string",
    "bad_peer": "`attributes.source.principal` is not a string",
    "bad_ip": "`attributes.source.address.socketAddress.address` is not a string",
    "bad_destination": "`attributes.destination.principal` is not a string",
    "too_long": f"a request value is longer than {MAX_TEXT} characters",
    "many_parameters": f"the request's query has more than {MAX_QUERY_PARAMETERS} parameters",
    "bad_query": "the request's query is not valid percent-encoded UTF-8",
    "unknown_route": "the CheckRequest's `mcpdsl.route` names no route of its gateway",
    "bad_metadata": "`attributes.metadataContext.filterMetadata` is not an object",
    "bad_jwt": f"the `{JWT_NAMESPACE}` metadata is not an object",
    "bad_payload": "the verified payload of provider `{}` is not an object",
}

#: Principal attributes every door provides (the mesh identity), and those a provider adds.
MESH_PRINCIPAL = frozenset({"type", "id", "identity"})
TOKEN_PRINCIPAL = frozenset({"type", "id", "provider", "issuer"})


@dataclass(frozen=True)
class Claims:
    """How one accepted provider's verified payload becomes a principal (m.Provider)."""

    provider: str  # qualified name: the payload's key in the jwt_authn metadata
    issuer: str
    principal_type: str
    type_claim: str | None
    id_claim: str
    email_claim: str | None
    groups_claim: str | None
    mfa_claim: str | None
    mfa_values: tuple[str, ...]


@dataclass(frozen=True)
class Trusted:
    """A trusted header: where its value goes under `context`, typed, and from whom."""

    header: str
    attribute: tuple[str, ...]
    type: str
    sources: tuple[str, ...]  # normalised CIDRs; empty: stripped at ingress, so always trusted
    pointer: str  # JSON pointer of the attribute under `context` (for the Rego side)
    parents: tuple[str, ...]  # JSON pointers of its enclosing objects, outermost first


@dataclass(frozen=True)
class DoorMapping:
    """Everything a door needs to build the canonical request; never mutated after building.

    `identities` maps a SPIFFE id to `(service name, namespace)`; `routes` the
    route index of `mcpdsl.route` to the route's resource `(type, id)` (or None
    when the route's requests are about nothing the policy can name).
    """

    gateway: str | None
    providers: tuple[Claims, ...]
    trusted: tuple[Trusted, ...]
    identities: dict[str, tuple[str, str]]
    routes: tuple[tuple[str, str] | None, ...]
    #: What a reader of this table derived from it once (the evaluator keeps its
    #: compiled forms of the door here, keyed by a name or by the set of attributes
    #: read, `mcpdsl.evaluate.checkrequest`): a cache of pure functions of the
    #: fields above, so never part of the table's value.
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    # ------------------------------------------------------------ facts

    @property
    def principal_fields(self) -> frozenset[str]:
        """The principal attributes this door can fill."""
        fields = set(MESH_PRINCIPAL)
        for c in self.providers:
            fields |= TOKEN_PRINCIPAL
            fields |= {"email"} if c.email_claim else set()
            fields |= {"groups"} if c.groups_claim else set()
        return frozenset(fields)

    @property
    def auth_fields(self) -> frozenset[str]:
        """The `request.auth` attributes (proven obligations) this door can fill."""
        return frozenset({"mfa"} if any(c.mfa_claim for c in self.providers) else ())

    def provides(self, attr: m.Attr) -> bool:
        """Whether an attribute can be present in a request this door builds."""
        root, path = attr.root, attr.path
        if root in ("action", "risk", "now"):
            return True
        if root == "principal":
            return not path or path[0] in self.principal_fields
        if root == "resource":
            return path in ((), ("type",), ("id",))
        if root == "source":
            return path in ((), ("ip",), ("namespace",))
        if root == "request":
            if not path:
                return True
            if path[0] in ("path", "query", "headers"):
                return len(path) <= (1 if path[0] == "path" else 2)
            if path[0] == "auth":
                return len(path) == 1 or (len(path) == 2 and path[1] in self.auth_fields)
            return False
        if root == "context":
            # a trusted value is a string, number, boolean or list: nothing below it
            return any(path == t.attribute[: len(path)] for t in self.trusted)
        return False

    def as_data(self) -> dict[str, Any]:
        """The table as JSON data, for `data.mcp.meta.doors` (`doors_data`; the Rego reads it)."""
        return {
            "gateway": self.gateway,
            "providers": [
                {
                    "provider": c.provider,
                    "issuer": c.issuer,
                    "principal_type": c.principal_type,
                    "type_claim": c.type_claim,
                    "id_claim": c.id_claim,
                    "email_claim": c.email_claim,
                    "groups_claim": c.groups_claim,
                    "mfa_claim": c.mfa_claim,
                    "mfa_values": list(c.mfa_values),
                }
                for c in self.providers
            ],
            "trusted": [
                {
                    "header": t.header,
                    "type": t.type,
                    "sources": list(t.sources),
                    "pointer": t.pointer,
                    "parents": list(t.parents),
                }
                for t in self.trusted
            ],
            "routes": [None if r is None else {"type": r[0], "id": r[1]} for r in self.routes],
        }


def _pointer(parts: tuple[str, ...]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def trusted_headers(headers: tuple[m.TrustedHeader, ...]) -> tuple[Trusted, ...]:
    """The trusted headers as the door reads them.

    A header named twice, or an attribute path that is the prefix of another
    one (`context.device` and `context.device.managed` cannot both be set),
    keeps its first declaration: the front end reports the conflict, the door
    stays deterministic.
    """
    out: list[Trusted] = []
    for h in headers:
        name = h.header.lower()
        attr = tuple(h.attribute)
        if not attr or any(t.header == name for t in out):
            continue
        if any(attr[: len(t.attribute)] == t.attribute or t.attribute[: len(attr)] == attr
               for t in out):  # fmt: skip
            continue
        sources = tuple(str(ipaddress.ip_network(s, strict=False)) for s in h.sources)
        parents = tuple(_pointer(attr[:i]) for i in range(1, len(attr)))
        out.append(Trusted(name, attr, h.type, sources, _pointer(attr), parents))
    return tuple(out)


def claims(provider: m.Provider) -> Claims:
    return Claims(
        provider=provider.qualified,
        issuer=provider.issuer,
        principal_type=provider.principal_type,
        type_claim=provider.type_claim,
        id_claim=provider.id_claim,
        email_claim=provider.email_claim,
        groups_claim=provider.groups_claim,
        mfa_claim=provider.mfa_claim,
        mfa_values=tuple(provider.mfa_values),
    )


def trust_domain(project: m.Project) -> str:
    """The mesh's trust domain (the first declared mesh), else Istio's default."""
    return project.meshes[0].trust_domain if project.meshes else DEFAULT_TRUST_DOMAIN


def service_identities(project: m.Project) -> dict[str, tuple[str, str]]:
    """SPIFFE id -> (service name, namespace): declared identities first, then the
    workload identity every service runs as (`workload_identity`, account = its name)."""
    out: dict[str, tuple[str, str]] = {}
    for s in project.services:
        if s.identity and s.identity not in out:
            parsed = parse_spiffe(s.identity)
            out[s.identity] = (s.name, parsed.namespace if parsed else s.namespace)
    domain = trust_domain(project)
    for s in project.services:
        ident = workload_identity(
            namespace=s.namespace, declared=s.identity, fallback_account=s.name, trust_domain=domain
        )
        out.setdefault(ident.spiffe_id, (s.name, s.namespace))
    return out


def route_resource(project: m.Project, route: m.Route) -> tuple[str, str] | None:
    """What a route's requests are about: `service NAME`, `tool "T"` or nothing nameable."""
    ref = route.target.ref
    if route.target.kind == "service":
        return ("service", ref.name)
    for i in project.integrations:
        if i.name == ref.name and i.package == (ref.package or i.package):
            return ("tool", i.tool) if i.tool else None
    return None


def _providers(project: m.Project, refs: tuple[m.Ref, ...]) -> tuple[Claims, ...]:
    by_name = {(p.package, p.name): p for p in project.providers}
    out: list[Claims] = []
    for ref in refs:
        found = by_name.get((ref.package or "", ref.name))
        if found is None:  # an unqualified ref the resolver left alone: match by name
            found = next((p for p in project.providers if p.name == ref.name), None)
        if found is not None and all(c.provider != found.qualified for c in out):
            out.append(claims(found))
    return tuple(out)


def door_mapping(project: m.Project, gateway: m.Gateway | None) -> DoorMapping:
    """The door of `gateway` (its accepted providers in order, its trusted headers,
    its routes' resources), or the east-west door of the mesh when None."""
    identities = service_identities(project)
    if gateway is None:
        return DoorMapping(None, (), (), identities, ())
    return DoorMapping(
        gateway=gateway.qualified,
        providers=_providers(project, gateway.providers),
        trusted=trusted_headers(gateway.trusted_headers),
        identities=identities,
        routes=tuple(route_resource(project, r) for r in gateway.routes),
    )


def doors(project: m.Project) -> dict[str, DoorMapping]:
    """Every door of the project: gateway qualified name -> door, and `MESH_DOOR`."""
    out = {MESH_DOOR: door_mapping(project, None)}
    for g in project.gateways:
        out.setdefault(g.qualified, door_mapping(project, g))
    return out


def doors_data(table: dict[str, DoorMapping]) -> dict[str, Any]:
    """`data.mcp.meta.doors`: the SPIFFE ids once, and every door's table by gateway."""
    identities = table[MESH_DOOR].identities
    return {
        "identities": {k: {"name": v[0], "namespace": v[1]} for k, v in sorted(identities.items())},
        "gateways": {name: table[name].as_data() for name in sorted(table)},
    }


def rego_constants() -> dict[str, Any]:
    """What the Rego template spells from this module (limits, patterns, keys, reasons)."""
    from mcpdsl.ir.workload import K8S_SPIFFE_PATTERN

    return {
        "jwt_namespace": JWT_NAMESPACE,
        "gateway_key": GATEWAY_KEY,
        "route_key": ROUTE_KEY,
        "mesh_door": MESH_DOOR,
        "max_text": MAX_TEXT,
        "max_headers": MAX_HEADERS,
        "max_groups": MAX_GROUPS,
        "max_query_parameters": MAX_QUERY_PARAMETERS,
        "number_pattern": NUMBER_PATTERN,
        "index_pattern": INDEX_PATTERN,
        "bad_escape_pattern": BAD_ESCAPE_PATTERN,
        "spiffe_pattern": K8S_SPIFFE_PATTERN,
        "refusals": {k: v.replace("{}", "%s") for k, v in REFUSALS.items()},
    }
