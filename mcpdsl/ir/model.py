"""The typed IR: frozen pydantic models for every declaration kind.

Quantities are exact `Decimal`s in base units (cores, bytes, seconds, ratio,
kWh, W, kg, g/kWh, USD); rates keep their amount and period so that targets
can express them without rounding.  Spans are carried for diagnostics but take
no part in equality or hashing: two policies that differ only in layout are
the same policy (this is what `mcpdsl fmt` relies on).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mcpdsl.source import Span


@cache
def _defaults(cls: type[BaseModel]) -> dict[str, Any]:
    return {
        name: field.get_default(call_default_factory=True)
        for name, field in cls.model_fields.items()
        if not field.is_required()
    }


@dataclass(frozen=True)
class _Shape:
    """Per class, what `==` and `hash` read: every field but the excluded ones (`span`).

    `values` fetches those fields from `__dict__` as one tuple (in C); `plain` says
    no field can hold a dict or list, so the tuple is hashable as it is.
    """

    name: str
    values: Callable[[dict[str, Any]], tuple[Any, ...]]
    plain: bool


@cache
def _shape(cls: type[BaseModel]) -> _Shape:
    names = tuple(name for name, field in cls.model_fields.items() if not field.exclude)
    getter = operator.itemgetter(*names) if names else None

    def values(data: dict[str, Any]) -> tuple[Any, ...]:
        if getter is None:
            return ()
        got = getter(data)
        return got if len(names) > 1 else (got,)

    mutable = ("dict", "list", "Any", "Mapping", "Sequence")
    plain = not any(
        word in str(cls.model_fields[name].annotation) for name in names for word in mutable
    )
    return _Shape(cls.__name__, values, plain)


def _hashable(value: Any) -> Any:
    """A hashable stand-in for a field value, equal exactly when the values are equal.

    Nodes hash themselves (span-blind); dicts and lists (free-form payloads of
    tests and transforms) become frozensets and tuples.
    """
    if isinstance(value, dict):
        return frozenset((key, _hashable(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(item) for item in value)
    return value


class Node(BaseModel):
    """Base of every IR node: frozen, no extra fields, span-blind equality."""

    # `defer_build`: a model's validator is built on its first validation, not at import;
    # lowering builds nodes with `fast` (no validation), so `check` builds few or none.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    span: Span | None = Field(default=None, exclude=True, repr=False)

    # `==` and `hash` compare field values directly (nested nodes by their own
    # span-blind `==`): no `model_dump()` per call, which on a 10,000-rule tree
    # cost seconds for one comparison (benchmarks/ir.py).

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        if self is other:
            return True
        values = _shape(type(self)).values
        return values(self.__dict__) == values(other.__dict__)

    def __hash__(self) -> int:
        # Hash what `==` compares: `Decimal("0.200") == Decimal("0.2")` (`200ms` and
        # `0.2s`) hash alike, so values are hashed as they are, never as JSON spellings.
        shape = _shape(type(self))
        values = shape.values(self.__dict__)
        if shape.plain:
            try:
                return hash((shape.name, values))
            except TypeError:  # a list where a tuple is declared (built with `fast`)
                pass
        return hash((shape.name, _hashable(values)))

    @classmethod
    def fast(cls, **values: Any) -> Self:
        """Build without validation, for the hot paths of lowering.

        Lowering produces correctly typed values by construction; on trees of
        10,000 rules `model_construct` alone costs a second.  This does what
        `model_construct` does for models without aliases, private attributes
        or post-init hooks (which IR nodes never have), using per-class
        defaults computed once.
        """
        data = {**_defaults(cls), **values}
        obj = cls.__new__(cls)
        object.__setattr__(obj, "__dict__", data)
        object.__setattr__(obj, "__pydantic_fields_set__", set(values))
        object.__setattr__(obj, "__pydantic_extra__", None)
        object.__setattr__(obj, "__pydantic_private__", None)
        return obj

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


# ------------------------------------------------------------------ values


class Rate(Node):
    """`amount` events every `per` seconds (`100/s`, `6000/m`, `1M/d`)."""

    amount: Decimal
    per: Decimal

    @property
    def per_second(self) -> Decimal:
        return self.amount / self.per


class Ref(Node):
    """A reference to a declaration, `name` or `package.name`.

    `package` is filled by the resolve stage; before it, it is the qualifier
    written by the user (or None).
    """

    package: str | None = None
    name: str

    def __str__(self) -> str:
        return f"{self.package}.{self.name}" if self.package else self.name


class TimeWindow(Node):
    """A daily window `start`–`end` (minutes after midnight) in an IANA zone."""

    start: int
    end: int
    zone: str

    @staticmethod
    def hhmm(minutes: int) -> str:
        return f"{minutes // 60:02d}:{minutes % 60:02d}"


# ------------------------------------------------------------- expressions


class Literal_(Node):
    """A constant.  Numbers always carry a unit (`"number"` when they have none):
    the JSON form writes a Decimal as a string, and the unit is what tells the
    number `5` from the string `"5"` when the IR is read back."""

    kind: Literal["literal"] = "literal"
    value: bool | str | Decimal
    unit: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _numbers_have_units(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        value, unit = data.get("value"), data.get("unit")
        if (
            unit is None
            and isinstance(value, int | float | Decimal)
            and not isinstance(value, bool)
        ):
            return {**data, "unit": "number"}
        if unit is not None and isinstance(value, str):
            try:
                return {**data, "value": Decimal(value)}
            except ArithmeticError:  # not a number: let field validation report it
                return data
        return data


class Attr(Node):
    kind: Literal["attr"] = "attr"
    root: str
    path: tuple[str, ...] = ()

    def dotted(self) -> str:
        return ".".join((self.root, *self.path))


class ListExpr(Node):
    kind: Literal["list"] = "list"
    items: tuple[Expr, ...]


class Not(Node):
    kind: Literal["not"] = "not"
    operand: Expr


class And(Node):
    kind: Literal["and"] = "and"
    operands: tuple[Expr, ...]


class Or(Node):
    kind: Literal["or"] = "or"
    operands: tuple[Expr, ...]


CompareOp = Literal["==", "!=", "<", "<=", ">", ">="]
ArithOp = Literal["+", "-", "*", "/"]
FunctionName = Literal["lower", "upper", "len", "startswith", "endswith", "contains"]


class Compare(Node):
    kind: Literal["compare"] = "compare"
    op: CompareOp
    left: Expr
    right: Expr


class In(Node):
    kind: Literal["in"] = "in"
    item: Expr
    collection: Expr
    negated: bool = False


class InCidr(Node):
    kind: Literal["cidr"] = "cidr"
    operand: Expr
    cidr: str


class Matches(Node):
    kind: Literal["matches"] = "matches"
    operand: Expr
    pattern: str


class Arith(Node):
    kind: Literal["arith"] = "arith"
    op: ArithOp
    left: Expr
    right: Expr


class Default(Node):
    kind: Literal["default"] = "default"
    operand: Expr
    fallback: Expr


class Neg(Node):
    kind: Literal["neg"] = "neg"
    operand: Expr


class Call(Node):
    kind: Literal["call"] = "call"
    function: FunctionName
    args: tuple[Expr, ...]


Expr = Annotated[
    Literal_
    | Attr
    | ListExpr
    | Not
    | And
    | Or
    | Compare
    | In
    | InCidr
    | Matches
    | Arith
    | Default
    | Neg
    | Call,
    Field(discriminator="kind"),
]


# ------------------------------------------------------------ declarations


class Decl(Node):
    package: str
    name: str

    @property
    def qualified(self) -> str:
        return f"{self.package}.{self.name}"


class Storage(Node):
    """`storage { size, class, access, path }`: one volume per pod of a stateful service."""

    size: int  # bytes
    storage_class: str | None = None  # None: the cluster's default StorageClass
    access: Literal["ReadWriteOnce", "ReadWriteOncePod", "ReadOnlyMany", "ReadWriteMany"] = (
        "ReadWriteOnce"
    )
    path: str = "/data"


class Service(Decl):
    kind: Literal["service"] = "service"
    image: str
    port: int
    cpu: Decimal | None = None
    memory: int | None = None
    gpu: int = 0
    tier: str | None = None
    regions: tuple[str, ...] = ()
    identity: str | None = None
    labels: dict[str, str] = {}
    env: dict[str, str] = {}
    pool: Ref | None = None
    namespace: str
    replicas: int | None = None
    stateful: bool = False
    # The team that owns the service (`team "T"`, else `labels.team`): the
    # quotas of that team govern its pods (ir/quotas.py).
    team: str | None = None
    storage: Storage | None = None


class Target(Node):
    """One HPA metric: cpu/memory utilisation or a per-pod custom metric."""

    metric: Literal["cpu", "memory", "pods"]
    name: str | None = None
    value: Decimal


class StepPolicy(Node):
    """One HPA scaling policy: at most `amount` pods or percent per `period` seconds."""

    amount: Decimal
    unit: Literal["percent", "pods"]
    period: Decimal


class ScaleRules(Node):
    """One direction's HPA rules (`behavior.scaleUp`/`scaleDown`).

    No policies means Kubernetes' default policies for the direction; `select`
    is the HPA `selectPolicy` (`max`: the policy allowing the largest change,
    `min`: the smallest, `disabled`: no scaling in this direction)."""

    policies: tuple[StepPolicy, ...] = ()
    select: Literal["max", "min", "disabled"] = "max"
    stabilize: Decimal | None = None


class During(Node):
    days: tuple[int, ...]
    window: TimeWindow
    min_replicas: int | None = None
    max_replicas: int | None = None


class Predict(Node):
    metric: str
    horizon: Decimal
    lookback: Decimal


class Scale(Decl):
    kind: Literal["scale"] = "scale"
    service: Ref
    min_replicas: int
    max_replicas: int
    targets: tuple[Target, ...] = ()
    up: ScaleRules | None = None
    down: ScaleRules | None = None
    during: tuple[During, ...] = ()
    predict: Predict | None = None
    expected: int | None = None


class Resources(Node):
    cpu: Decimal = Decimal(0)
    memory: int = 0
    gpu: int = 0


class NodeShape(Node):
    cpu: Decimal
    memory: int
    gpu: int = 0
    idle_watts: Decimal | None = None
    peak_watts: Decimal | None = None
    cost_per_hour: Decimal | None = None


class Quota(Node):
    team: str
    resources: Resources


class Reservation(Node):
    service: Ref
    resources: Resources


class Pool(Decl):
    kind: Literal["pool"] = "pool"
    tier: str | None = None
    node: NodeShape
    min_nodes: int
    max_nodes: int
    quotas: tuple[Quota, ...] = ()
    reservations: tuple[Reservation, ...] = ()
    regions: tuple[str, ...] = ()


class Affinity(Node):
    source: Literal["cookie", "header"]
    key: str
    ttl: Decimal | None = None


class HealthCheck(Node):
    protocol: Literal["http", "tcp", "grpc"]
    path: str | None = None
    interval: Decimal
    timeout: Decimal
    healthy: int
    unhealthy: int


class Ejection(Node):
    errors: int
    duration: Decimal
    max_percent: Decimal | None = None
    interval: Decimal | None = None  # seconds between ejection sweeps (Envoy default 10s)


class ConnectionPool(Node):
    """`connections { max N, pending N, requests N, per-connection N }` of a `balance`."""

    max_connections: int | None = None
    max_pending: int | None = None
    max_requests: int | None = None
    per_connection: int | None = None  # requests per upstream connection


class Limit(Node):
    rate: Rate
    burst: int | None = None
    key: str | None = None


class Balance(Decl):
    kind: Literal["balance"] = "balance"
    service: Ref
    strategy: Literal["round-robin", "least-request", "ring-hash", "maglev", "random"] = (
        "round-robin"
    )
    affinity: Affinity | None = None
    health: HealthCheck | None = None
    eject: Ejection | None = None
    failover: tuple[str, ...] = ()
    limit: Limit | None = None
    connections: ConnectionPool | None = None


class CarbonRegion(Node):
    region: str
    intensity: Decimal
    renewable: Decimal | None = None
    pue: Decimal | None = None


class Budget(Node):
    mass_kg: Decimal
    period: Literal["day", "week", "month", "year"]


class Carbon(Decl):
    kind: Literal["carbon"] = "carbon"
    budget: Budget | None = None
    renewable_min: Decimal | None = None
    intensity_file: str | None = None
    regions: tuple[CarbonRegion, ...] = ()


class Job(Decl):
    kind: Literal["job"] = "job"
    image: str
    cpu: Decimal | None = None
    memory: int | None = None
    gpu: int = 0
    energy_kwh: Decimal | None = None
    runs: Decimal
    window: TimeWindow
    deadline: Decimal | None = None
    regions: tuple[str, ...] = ()
    carbon: Ref | None = None
    pool: Ref | None = None
    namespace: str
    team: str | None = None  # `team "T"`: whose quota its pods count against


EntityType = Literal["service", "agent", "user", "tool", "group"]


class EntityPattern(Node):
    """`any`, `TYPE any`, `TYPE id` or `TYPE [id, ...]`; ids None means any id."""

    type: EntityType | None = None
    ids: tuple[str, ...] | None = None

    def describe(self) -> str:
        if self.type is None:
            return "any"
        if self.ids is None:
            return f"{self.type} any"
        if len(self.ids) == 1:
            return f"{self.type} {self.ids[0]}"
        return f"{self.type} [{', '.join(self.ids)}]"


class Rule(Node):
    id: str
    effect: Literal["allow", "deny"]
    principal: EntityPattern
    resource: EntityPattern
    actions: tuple[str, ...] = ()
    path: str | None = None
    condition: Expr | None = None
    labelled: bool = False


class RiskTerm(Node):
    weight: Decimal
    condition: Expr


class Requirement(Node):
    obligation: str
    condition: Expr | None = None


class Policy(Decl):
    kind: Literal["policy"] = "policy"
    default: Literal["allow", "deny"] = "deny"
    rules: tuple[Rule, ...] = ()
    risk: tuple[RiskTerm, ...] = ()
    requires: tuple[Requirement, ...] = ()
    # `strict`: a build that cannot enforce a rule as written refuses (B0121/B0122 are
    # errors). A build setting, not evaluation: not in the IR JSON the engine loads.
    strict: bool = Field(default=False, exclude=True)

    def conditions(self) -> Iterator[Expr]:
        """Every expression of the policy: rule conditions, risk terms, `require` conditions."""
        for rule in self.rules:
            if rule.condition is not None:
                yield rule.condition
        for term in self.risk:
            yield term.condition
        for req in self.requires:
            if req.condition is not None:
                yield req.condition


class Retry(Node):
    attempts: int
    backoff_min: Decimal | None = None
    backoff_max: Decimal | None = None
    on: tuple[str, ...] = ()
    per_try_timeout: Decimal | None = None


class Mapping(Node):
    target: tuple[str, ...]
    expr: Expr


class SecretRef(Node):
    """Where the MCP gateway reads an upstream credential at run time (never the tree).

    `env`: the environment variable `name` of the server process; `file`: the file
    at `name` (e.g. a mounted Kubernetes Secret), read when the call is made, so a
    rotated secret is used without a restart.  The value itself never appears in
    the IR, an artifact or a log.
    """

    source: Literal["env", "file"]
    name: str


class UpstreamAuth(Node):
    """`auth bearer env "X"` / `auth header "X-Api-Key" file "/path"` of an integration.

    How the gateway authenticates *itself* to the upstream.  The MCP client's own
    token is never forwarded (no token passthrough, MCP authorization spec).
    """

    scheme: Literal["bearer", "header"]
    header: str = "authorization"  # lower-case; `bearer` sends `authorization: Bearer <v>`
    secret: SecretRef


class Breaker(Node):
    """`breaker N failures open T`: circuit breaking of an integration's upstream.

    N consecutive failed calls (after retries) open the circuit: calls fail at once
    for T seconds, then one probe is let through (half-open); its success closes the
    circuit, its failure opens it again for T.
    """

    failures: int
    open_for: Decimal  # seconds


class Integration(Decl):
    kind: Literal["integration"] = "integration"
    tool: str | None = None
    input: dict[str, str] = {}
    # Fields of `input` marked optional (`name?: type`); every other field is required.
    optional: tuple[str, ...] = ()
    description: str | None = None
    method: str
    url: str
    timeout: Decimal | None = None
    retry: Retry | None = None
    limit: Limit | None = None
    mappings: tuple[Mapping, ...] = ()
    auth: UpstreamAuth | None = None
    breaker: Breaker | None = None
    # `idempotent`: retries apply to this call even when its method is not idempotent
    # (POST, PATCH); None: by the method (GET, HEAD, PUT, DELETE are).
    idempotent: bool | None = None
    # `upstream mcp "URL" [prefix "P"]`: a federated MCP server.  Its tools are
    # discovered at run time and exposed as `P.<tool>` (P defaults to the
    # integration's name); `method` is then "POST" and `url` the MCP endpoint, and
    # `tool`/`input`/`call`/`map` are not allowed.
    upstream: Literal["rest", "mcp"] = "rest"
    prefix: str | None = None


class RouteTarget(Node):
    kind: Literal["service", "integration"]
    ref: Ref


class RouteCondition(Node):
    """`header "NAME" [== | != "VALUE"]` / `query "NAME" [== "VALUE"]` on a route.

    `op` "present": the header (query parameter) is there; "==": it is there
    with exactly VALUE; "!=": it is there with another value (a missing one
    does not match, as Envoy's inverted header matcher).  Header names are
    lower case (Envoy's); query names and values are compared decoded
    (`mcpdsl.evaluate.target.split_target`), the first occurrence counts.
    """

    name: str
    op: Literal["present", "==", "!="] = "present"
    value: str | None = None


class Route(Node):
    path: str
    methods: tuple[str, ...] = ()
    target: RouteTarget
    rewrite: str | None = None
    timeout: Decimal | None = None
    retries: int | None = None
    prefix: bool = False  # `route prefix "P"`: the path (no query) starts with P, as text
    retry: Retry | None = None  # `retry N ... on [...] per try timeout T` (retries = N)
    headers: tuple[RouteCondition, ...] = ()
    query: tuple[RouteCondition, ...] = ()


class Provider(Decl):
    """An OIDC/JWT issuer the policy trusts to vouch for principals (docs/runtime.md).

    A verified token's claims become principal attributes as mapped here; the
    same fields drive Envoy's `jwt_authn`, Istio's `RequestAuthentication`, the
    CheckRequest mapping (evaluator and Rego) and `mcpdsl serve`.
    """

    kind: Literal["provider"] = "provider"
    issuer: str
    jwks_uri: str | None = None  # remote JWKS (https), fetched by the enforcement point
    jwks_file: str | None = None  # local JWKS, relative to the tree root, read at build time
    # The keys of `jwks_file` as read at build time (canonical JSON of `{"keys": [...]}`,
    # public keys only; `mcpdsl.ir.jwks`): the IR carries them, so a build directory, a
    # bare `ir/project.json` or the Kubernetes ConfigMap verifies tokens without the tree.
    jwks_keys: str | None = None
    audiences: tuple[str, ...] = ()  # empty: any audience
    clock_skew: int = 60  # seconds
    principal_type: str = "user"  # the type of the principals it vouches for ...
    type_claim: str | None = None  # ... unless a claim names it per token
    id_claim: str = "sub"
    email_claim: str | None = "email"
    groups_claim: str | None = "groups"
    mfa_claim: str | None = "amr"  # request.auth.mfa is true when this claim holds ...
    mfa_values: tuple[str, ...] = ("mfa",)  # ... one of these values (RFC 8176 `amr`)


class Mesh(Decl):
    """The service mesh whose workload certificates name services (SPIFFE)."""

    kind: Literal["mesh"] = "mesh"
    trust_domain: str


class RedisStore(Node):
    """Where the decision server's replicas share counters and rate-limit buckets.

    Exactly one of `url` (written in the tree, never with a password: E1003) and
    `secret` + `secret_key` (a Secret in the server's namespace holding the URL).
    """

    url: str | None = None
    secret: str | None = None
    secret_key: str | None = None


class McpEndpoint(Node):
    """`mcp resource "URL" accept [providers]` of a server: its MCP gateway (docs/mcp.md).

    `resource` is the gateway's resource identifier (RFC 8707/9728): the audience a
    bearer token must carry, and the `resource` of its protected-resource metadata.
    `providers` are the identity providers whose tokens it verifies, in order.
    """

    resource: str
    providers: tuple[Ref, ...] = ()


class Server(Decl):
    """`server NAME { ... }`: the `mcpdsl serve` deployment that enforces the tree.

    A deployment setting, not evaluation: the Kubernetes target emits the server's
    objects from it and the Envoy and Istio targets point their ext_authz at it
    (docs/serve-kubernetes.md).  One per tree (E1001).
    """

    kind: Literal["server"] = "server"
    image: str
    namespace: str
    min_replicas: int
    max_replicas: int
    targets: tuple[Target, ...] = ()  # HPA metrics, as a `scale` block's
    cpu: Decimal = Decimal("0.5")  # request = limit per replica
    memory: int = 512 * 2**20
    redis: RedisStore | None = None  # None: each replica counts on its own
    on_store_down: Literal["deny", "allow"] = "deny"
    mcp: McpEndpoint | None = None  # the MCP gateway at `/mcp` (None: not served)


class TrustedHeader(Node):
    """A request header the gateway accepts as `context.<attribute>`.

    The gateway strips it from outside traffic, so only a hop inside the trust
    boundary (or the gateway itself) can have set it.
    """

    header: str  # lower-case
    attribute: tuple[str, ...]  # path under `context`
    type: Literal["string", "number", "bool", "list"] = "string"
    # CIDRs of the hops allowed to set it (e.g. the load balancer in front); a
    # request from any other peer address has it stripped / ignored.  Empty:
    # stripped from every request entering the gateway.
    sources: tuple[str, ...] = ()


class GatewayTls(Node):
    """Downstream TLS of a gateway listener."""

    cert_sds: str | None = None  # SDS secret name (e.g. a SPIFFE id served by the mesh agent)
    cert_file: str | None = None
    key_file: str | None = None
    client_certs: Literal["required", "optional", "none"] = "none"
    client_ca_file: str | None = None
    client_ca_sds: str | None = None


class Gateway(Decl):
    kind: Literal["gateway"] = "gateway"
    port: int
    hosts: tuple[str, ...] = ()
    routes: tuple[Route, ...] = ()
    limit: Limit | None = None
    tls: GatewayTls | None = None
    providers: tuple[Ref, ...] = ()  # JWT providers this gateway accepts
    trusted_headers: tuple[TrustedHeader, ...] = ()


class ScaleGiven(Node):
    service: Ref
    replicas: int
    metrics: dict[str, Decimal] = {}
    at: str | None = None


class RouteGiven(Node):
    gateway: Ref
    method: str
    path: str
    headers: dict[str, str] = {}


class TransformGiven(Node):
    integration: Ref
    payload: dict[str, Any]


class Expectation(Node):
    """What a test expects; exactly one group of fields is set per kind."""

    kind: Literal["decision", "risk", "replicas", "route", "no-route", "output", "error"]
    allowed: bool | None = None
    obligations: tuple[str, ...] | None = None
    risk: Decimal | None = None
    replicas: int | None = None
    route: RouteTarget | None = None
    rewrite: str | None = None
    output: dict[str, Any] | None = None
    error: str | None = None


class Test(Decl):
    kind: Literal["test"] = "test"
    request: dict[str, Any] | None = None
    scale: ScaleGiven | None = None
    route: RouteGiven | None = None
    transform: TransformGiven | None = None
    expect: tuple[Expectation, ...] = ()


class Import(Node):
    package: str


class FileUnit(Node):
    """What lowering makes of one file, before cross-file resolution."""

    path: str
    package: str
    imports: tuple[Import, ...] = ()
    decls: tuple[Decl, ...] = ()
    # (kind, name) of declarations that had errors and were dropped: later
    # stages use it to avoid follow-on findings (a service whose broken
    # `scale` block is missing is not "a service without scale").
    failed: tuple[tuple[str, str], ...] = ()


class Project(Node):
    """The whole resolved, typechecked policy tree; tuples sorted by package and name."""

    root: str = Field(default="", exclude=True)
    packages: tuple[str, ...] = ()
    services: tuple[Service, ...] = ()
    scales: tuple[Scale, ...] = ()
    pools: tuple[Pool, ...] = ()
    balances: tuple[Balance, ...] = ()
    carbons: tuple[Carbon, ...] = ()
    jobs: tuple[Job, ...] = ()
    policies: tuple[Policy, ...] = ()
    integrations: tuple[Integration, ...] = ()
    gateways: tuple[Gateway, ...] = ()
    tests: tuple[Test, ...] = ()
    providers: tuple[Provider, ...] = ()
    meshes: tuple[Mesh, ...] = ()
    # Deployment settings, not evaluation: not in the IR JSON the engine loads.
    servers: tuple[Server, ...] = Field(default=(), exclude=True)
    # The MCP gateway's endpoint: the tree's `server { mcp ... }`, copied at resolve.
    # Unlike the rest of the server it decides who may call `/mcp` (the audience and
    # the providers), so it is policy: it travels in the IR JSON (the build's
    # `ir/project.json`, the server's ConfigMap), and changing it rolls the pods.
    mcp: McpEndpoint | None = None


DECL_KINDS: dict[str, str] = {
    "service": "services",
    "scale": "scales",
    "pool": "pools",
    "balance": "balances",
    "carbon": "carbons",
    "job": "jobs",
    "policy": "policies",
    "integration": "integrations",
    "gateway": "gateways",
    "test": "tests",
    "provider": "providers",
    "mesh": "meshes",
    "server": "servers",
}

_RECURSIVE: tuple[type[Node], ...] = (
    ListExpr,
    Not,
    And,
    Or,
    Compare,
    In,
    InCidr,
    Matches,
    Arith,
    Default,
    Neg,
    Call,
    Rule,
    RiskTerm,
    Requirement,
    Mapping,
    Policy,
    Integration,
    FileUnit,
    Project,
)
if not Node.model_config.get("defer_build"):  # deferred: built on first use, names all bound
    for _model in _RECURSIVE:
        _model.model_rebuild()
