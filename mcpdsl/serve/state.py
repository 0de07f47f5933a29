"""`ServerState`: the one place `mcpdsl serve` makes a decision.

Every transport (gRPC ext_authz, the OPA Data API, later the MCP endpoint)
turns what it received into a call of `check` (a CheckRequest as protojson
data) or `authorize` (a canonical request, OPA's `input`), and turns the
`Verdict` back into its own response.  Here, once per request:

1. the engine's prepared project is read ONCE (a reload swaps it atomically,
   so a request is mapped, decided and limited by one policy, never a mix);
2. a CheckRequest is mapped by its door (`mcpdsl.evaluate.checkrequest`);
3. the server-side behaviour signals are added as `stats.principal` (whatever
   the caller sent under `stats` is replaced: the server is their only source).
   With the in-memory store and a policy that reads no `stats` they are not
   kept at all (nothing could read them; `stats` is then absent): a reload to a
   policy that reads them starts counting then;
4. the policy decides; an allowed request then takes a token from the shared
   bucket of the limit that governs it (gateway or balance `limit`);
5. the decision is logged and counted.

When the store is unreachable the request is denied with a reason (fail
closed), unless the server was started with `on_unavailable="allow"`, which
then decides without signals and without limits.
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mcpdsl.evaluate.checkrequest import Refused, mapped
from mcpdsl.evaluate.policy import Decision, refused
from mcpdsl.ir.args import tool_integration
from mcpdsl.serve.metrics import Metrics
from mcpdsl.serve.store import MemoryStore, Store, StoreUnavailable

if TYPE_CHECKING:
    from mcpdsl.engine import Engine
    from mcpdsl.engine.decision_log import DecisionLog
    from mcpdsl.evaluate.limits import BucketSpec
    from mcpdsl.evaluate.policy import PreparedPolicies
    from mcpdsl.evaluate.project import PreparedProject

Transport = Literal["grpc", "http", "mcp"]
OnUnavailable = Literal["deny", "allow"]

STORE_DOWN = "the decision server's shared store is unreachable (fail closed)"
STORE_SPLIT = (
    "the policy reads `stats` or declares a `limit`, and this server runs several workers"
    " without a shared store (`--redis`): its counters would be split (fail closed)"
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision as the server made it.

    `request` is the canonical request that was decided (None when the input was
    refused before mapping); `limited` names the limit that refused an allowed
    request (the decision is then a deny); `decision_id` identifies the log line.
    """

    decision: Decision
    request: dict[str, Any] | None
    decision_id: str
    limited: str | None = None
    unavailable: bool = False

    @property
    def allowed(self) -> bool:
        return self.decision.enforced and self.limited is None and not self.unavailable

    @property
    def reason(self) -> str:
        """Why a denied request was denied, for the response (empty when allowed)."""
        d = self.decision
        if self.unavailable:
            return STORE_DOWN
        if self.limited is not None:
            return f"rate limited by {self.limited}"
        if d.refusal is not None:
            return f"request refused: {d.refusal}"
        if d.allowed and not d.enforced:
            return "required: " + ", ".join(d.obligations)
        if d.allowed:
            return ""
        if d.default_applied:
            return "denied: no rule allows this request"
        return "denied by " + ", ".join(d.rules)


def principal_key(request: dict[str, Any]) -> str:
    """The principal a request's counters belong to: `type:id`, else its identity."""
    p = request.get("principal")
    if isinstance(p, dict):
        kind, ident = p.get("type"), p.get("id")
        if isinstance(kind, str) and isinstance(ident, str):
            return f"{kind}:{ident}"
        identity = p.get("identity")
        if isinstance(identity, str) and identity:
            return f"identity:{identity}"
    return "anonymous"


def resource_key(request: dict[str, Any]) -> str:
    """The resource a request is for (`type:id`), else its path: what "distinct" counts."""
    r = request.get("resource")
    if isinstance(r, dict) and isinstance(r.get("type"), str) and isinstance(r.get("id"), str):
        return f"{r['type']}:{r['id']}"
    http = request.get("request")
    path = http.get("path") if isinstance(http, dict) else None
    return f"path:{path}" if isinstance(path, str) else ""


def limit_for(
    prepared: PreparedProject, door: str | None, request: dict[str, Any]
) -> tuple[str, BucketSpec] | None:
    """The shared bucket an allowed request takes a token from, if a limit governs it.

    `door` is the gateway (qualified name) the request came through; None for
    the mesh and for requests decided without a door (the Data API).

    At a gateway door: the gateway's `limit` (`gateway:<name>`, per client address
    with `per client-ip`); on the mesh door: the destination service's `balance`
    limit (`service:<name>`).  One global bucket across every replica is what the
    policy's rate means; Envoy's local limit applies per proxy instance.
    """
    project = prepared.project
    source = request.get("source")
    ip = source.get("ip") if isinstance(source, dict) else None
    if door is not None:
        gw = next((g for g in project.gateways if g.qualified == door), None)
        if gw is None or gw.limit is None:
            return None
        key = f"gateway:{gw.name}"
        limit = gw.limit
    else:
        resource = request.get("resource")
        if not isinstance(resource, dict) or resource.get("type") != "service":
            return None
        balance = next((b for b in project.balances if b.service.name == resource.get("id")), None)
        if balance is None or balance.limit is None:
            return None
        key = f"service:{balance.service.name}"
        limit = balance.limit
    spec = prepared.limits.get(key)
    if spec is None:
        return None
    if limit.key == "client-ip":
        key = f"{key}:{ip if isinstance(ip, str) and ip else 'unknown'}"
    return key, spec


def tool_limits(prepared: PreparedProject, request: dict[str, Any]) -> list[tuple[str, BucketSpec]]:
    """The buckets a tool call (MCP gateway) takes a token from: its integration's `limit`.

    The integration behind the tool (`resource.id`: the one exposing it, or the
    federated MCP server whose prefix names it, `mcpdsl.ir.args.tool_integration`)
    limits it twice, with the same rate: per caller (`integration:<name>:<principal>`, or per client
    address with `per client-ip`) and globally (`integration:<name>`), so one
    agent cannot use up everyone's share and all agents together stay within
    what the upstream was promised.
    """
    resource = request.get("resource")
    if not isinstance(resource, dict) or resource.get("type") != "tool":
        return []
    tool = resource.get("id")
    if not isinstance(tool, str):
        return []
    integ = tool_integration(prepared.project.integrations, tool)
    if integ is None or integ.limit is None:
        return []
    key = f"integration:{integ.name}"
    spec = prepared.limits.get(key)
    if spec is None:
        return []
    if integ.limit.key == "client-ip":
        source = request.get("source")
        ip = source.get("ip") if isinstance(source, dict) else None
        mine = f"{key}:ip:{ip if isinstance(ip, str) and ip else 'unknown'}"
    else:
        mine = f"{key}:principal:{principal_key(request)}"
    return [(mine, spec), (key, spec)]


class ServerState:
    """The engine, the store, the log and the metrics of one server, and its decisions."""

    def __init__(
        self,
        engine: Engine,
        *,
        store: Store | None = None,
        log: DecisionLog | None = None,
        metrics: Metrics | None = None,
        on_unavailable: OnUnavailable = "deny",
        clock: Any = time.time,
        workers: int = 1,
    ) -> None:
        self.engine = engine
        self.store: Store = store if store is not None else MemoryStore()
        # A `MemoryStore` never fails, and its counters are read by nobody but the
        # policy: when the policy in force reads no `stats` they need not be kept
        # (a fifth of a Check's cost).  A shared store's failure is a deny (fail
        # closed), so with one every request keeps asking it, as it always did.
        self._local = type(self.store) is MemoryStore  # exactly: a subclass may fail
        # Several worker processes with one in-memory store each would split every
        # counter and limit N ways: a policy that needs them is refused (`STORE_SPLIT`).
        self._split = self._local and workers > 1
        self.log = log
        self.metrics = metrics if metrics is not None else Metrics()
        self.on_unavailable: OnUnavailable = on_unavailable
        self._clock = clock
        self.metrics.ready.set(1)
        self.metrics.policy_revision.set(clock())
        # Per-request costs kept off the hot path: a labelled metric child is looked
        # up once per label set (prometheus-client hashes and locks on every
        # `labels()`), and decision ids are a random per-process prefix plus a
        # counter, in the shape of a UUID (uuid4 reads the OS's randomness per call).
        self._children: dict[tuple[str, ...], Any] = {}
        self._id_prefix = str(uuid.uuid4())[:19]
        self._sequence = itertools.count()

    @property
    def never_waits(self) -> bool:
        """Whether a decision can complete without waiting (the in-memory store's case).

        The gRPC listener then decides inside its reading callback, with no task.
        """
        return self._local

    @property
    def prepared(self) -> PreparedProject:
        return self.engine.compiled

    async def check(self, check: Any, transport: Transport = "grpc") -> Verdict:
        """Decide an Envoy/Istio CheckRequest (protojson data)."""
        start = time.perf_counter_ns()
        prepared = self.engine.compiled  # once: the whole request sees one policy
        try:
            door, request = mapped(prepared.doors, check)
        except Refused as exc:
            return self._finish(refused(str(exc)), None, None, transport, start)
        except RecursionError:
            return self._finish(refused("the CheckRequest is nested too deeply"), None, None,
                                transport, start)  # fmt: skip
        return await self._decide(prepared, request, door.gateway, transport, start)

    def refuse(self, reason: str, transport: Transport = "grpc") -> Verdict:
        """A deny for input no mapping can read (e.g. bytes that are not a CheckRequest).

        It goes through `_finish` like every decision: logged, counted as `refused`.
        """
        return self._finish(refused(reason), None, None, transport, time.perf_counter_ns())

    async def authorize(
        self,
        request: Any,
        transport: Transport = "http",
        *,
        prepared: PreparedProject | None = None,
        policies: PreparedPolicies | None = None,
        log: bool = True,
    ) -> Verdict:
        """Decide a canonical request (OPA's `input`: the caller is a trusted PEP).

        `policies` decides instead of every policy combined (the Data API's
        per-policy packages); it must come from `prepared`, the policy the
        caller read once (default: the one in force now).  `log=False` leaves
        the decision-log line to the caller (`record`), who knows more once the
        request has been served (the MCP gateway: the upstream's status).
        """
        start = time.perf_counter_ns()
        if prepared is None:
            prepared = self.engine.compiled
        if not isinstance(request, dict):
            chosen = prepared.policies if policies is None else policies
            decision = chosen.authorize(request)  # the evaluator's own refusal
            return self._finish(decision, None, None, transport, start, log=log)
        return await self._decide(
            prepared, dict(request), None, transport, start, policies, log=log
        )

    async def _decide(
        self,
        prepared: PreparedProject,
        request: dict[str, Any],
        door: str | None,
        transport: Transport,
        start: int,
        policies: PreparedPolicies | None = None,
        *,
        log: bool = True,
    ) -> Verdict:
        now = self._clock()
        principal = principal_key(request)
        unavailable = False
        counted = not self._local or prepared.policies.reads_stats
        if self._split and (counted or prepared.limits):
            return self._finish(refused(STORE_SPLIT), request, None, transport, start, log=log)
        if not counted:
            # Nothing reads the counters (see `__init__`); the caller's `stats` still
            # goes: the server is their only source, in the decision log too.
            request.pop("stats", None)
        else:
            try:
                stats = await self.store.observe(principal, resource_key(request), now)
            except StoreUnavailable:
                unavailable = True
                # Nobody counted this call: `stats` is absent (never the caller's, never
                # zeros), so with `on_unavailable="allow"` a deny written `unless
                # stats.principal.calls_1m <= N` still refuses it (fails closed).
                request.pop("stats", None)
            else:
                request["stats"] = {"principal": stats.as_data()}
        decision = (prepared.policies if policies is None else policies).authorize(request)
        if unavailable:
            self.metrics.store_errors.inc()
            if self.on_unavailable == "deny":
                return self._finish(decision, request, None, transport, start, unavailable=True,
                                    log=log)  # fmt: skip
            return self._finish(decision, request, None, transport, start, log=log)
        limited: str | None = None
        if decision.enforced:
            if transport == "mcp":
                buckets = tool_limits(prepared, request)
            else:
                bucket = limit_for(prepared, door, request)
                buckets = [] if bucket is None else [bucket]
            for key, spec in buckets:
                try:
                    if not await self.store.take(key, spec, now):
                        limited = spec.source
                        break
                except StoreUnavailable:
                    self.metrics.store_errors.inc()
                    if self.on_unavailable == "deny":
                        return self._finish(decision, request, None, transport, start,
                                            unavailable=True, log=log)  # fmt: skip
                    break
        if counted:
            try:
                denied = not decision.enforced or limited is not None
                await self.store.outcome(principal, denied, now)
            except StoreUnavailable:
                self.metrics.store_errors.inc()
        return self._finish(decision, request, limited, transport, start, log=log)

    def _decision_id(self) -> str:
        """A decision id unique across processes (random prefix) and within one (counter)."""
        n = next(self._sequence)
        return f"{self._id_prefix}{n >> 48 & 0xFFFF:04x}-{n & 0xFFFFFFFFFFFF:012x}"

    def _child(self, metric: Any, name: str, *labels: str) -> Any:
        """`metric.labels(*labels)`, cached (rule names are a bounded set per policy)."""
        key = (name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _finish(
        self,
        decision: Decision,
        request: dict[str, Any] | None,
        limited: str | None,
        transport: Transport,
        start: int,
        *,
        unavailable: bool = False,
        log: bool = True,
    ) -> Verdict:
        verdict = Verdict(decision, request, self._decision_id(), limited, unavailable)
        elapsed = time.perf_counter_ns() - start
        m = self.metrics
        result = (
            "unavailable" if unavailable
            else "limited" if limited is not None
            else "refused" if decision.refusal is not None
            else "allow" if verdict.allowed
            else "deny"
        )  # fmt: skip
        self._child(m.decisions, "decisions", transport, result).inc()
        for rule in decision.rules:
            self._child(m.rule_hits, "rule", rule, result).inc()
        self._child(m.latency, "latency", transport).observe(elapsed / 1e9)
        if log:
            self.record(verdict, transport, elapsed / 1000)
        return verdict

    def record(
        self,
        verdict: Verdict,
        transport: Transport,
        latency_us: float,
        extra: dict[str, Any] | None = None,
        request: dict[str, Any] | None = None,
    ) -> None:
        """The decision-log line of a verdict (once per decision; `authorize(log=False)`).

        `extra` adds fields (the MCP gateway: tool, argument digest, upstream
        status); `request` replaces the logged input (default: the verdict's).
        """
        if self.log is None:
            return
        fields: dict[str, Any] = {"decision_id": verdict.decision_id, "transport": transport}
        if verdict.limited is not None:
            fields["limited"] = verdict.limited
        if verdict.unavailable:
            fields["unavailable"] = True
        if extra:
            fields.update(extra)
        logged = request if request is not None else verdict.request
        before = self.log.dropped  # record never raises: it counts what it could not write
        self.log.record(logged if logged is not None else {}, verdict.decision, latency_us, fields)
        if self.log.dropped > before:
            self.metrics.log_drops.inc(self.log.dropped - before)
