"""The MCP gateway of `mcpdsl serve`: `/mcp`, Streamable HTTP, tools behind policy (docs/mcp.md).

The protocol is the official SDK's: a low-level `mcp.server.lowlevel.Server`
with handlers for `tools/list` and `tools/call` (initialize, ping and protocol
version negotiation are the SDK's own) behind a `StreamableHTTPSessionManager`
whose `run()` context lives in the app's lifespan.  Sessions are *stateless*:
every POST is authenticated, listed or decided on its own, so replicas behind a
Kubernetes Service need no sticky sessions and a reload applies to the next
message; the gateway never sends server-initiated requests, so it loses nothing
(clients list again instead of waiting for `list_changed`).  Answers are JSON
(`json_response`), not SSE streams.

In front of the SDK, `McpHttp` is the OAuth 2.1 resource server (`oauth`): no
valid bearer token, no MCP.  Then, per message:

* `tools/list`: the tools of the policy in force that some call by this
  principal could be allowed (`mcpdsl.evaluate.visibility`), with their JSON
  Schemas (`mcpdsl.evaluate.tools`), plus the federated tools of the `upstream
  mcp` integrations (`mcpdsl.serve.federation`) under the same rule;
* `tools/call`: unknown tool -> MCP error; arguments checked against the schema
  and the bounds -> MCP invalid-params error naming the field; the canonical
  request decided by `ServerState.authorize(transport="mcp")` (server-side
  stats, the integration's limits per caller and global, metrics); a deny is a
  tool error with the verdict's reason; `require mfa` unmet is a tool error
  carrying the RFC 9470 challenge (`insufficient_user_authentication`) in
  `_meta`; then the upstream (`Upstreams`, injected), its payload mapped by the
  integration's `map` (the evaluator's transform); one decision-log line per
  call with the argument digest and the upstream's status.

Nothing from the upstream but the mapped object reaches the client: an upstream
failure is the upstream error's reason, never its body or a traceback.

Federated tools (`P.x` of an `upstream mcp "URL" prefix "P"` integration) take
the same path: listed by the same rule, arguments checked against the schema
the upstream listed (`mcpdsl.serve.schemas`: jsonschema draft 2020-12, bounded,
in a worker thread), decided with `resource = {type: tool, id: "P.x"}`, limited
by the integration's `limit`, proxied by the `Federation` (its own credential,
timeout, breaker), logged and counted.  The gateway owns the federation when it
is given a factory (`federate`): it starts it in the app's lifespan, stops it on
shutdown, and follows reloads -- a federated tool whose integration the policy in
force no longer has (or has with another URL, prefix, credential, timeout or
breaker) is hidden and refused with a reason at once, and a new federation for
the policy's `upstream mcp` integrations replaces the old one once connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import mcp_types as types
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from mcpdsl._version import __version__
from mcpdsl.engine.decision_log import canonical, mask_request
from mcpdsl.evaluate.tools import InvalidArguments, Tool, catalog, validate
from mcpdsl.evaluate.transform import TransformError
from mcpdsl.evaluate.visibility import INVOKE, Visibility
from mcpdsl.ir import model as m
from mcpdsl.serve.oauth import Authenticator, Identity, TokenRejected, challenge, metadata_document
from mcpdsl.serve.schemas import check_arguments
from mcpdsl.serve.state import ServerState, Verdict, principal_key

if TYPE_CHECKING:
    from mcpdsl.evaluate.project import PreparedProject

_log = logging.getLogger("mcpdsl.serve.mcp")

METADATA_PATH = "/.well-known/oauth-protected-resource"
IDENTITY_KEY = "mcpdsl.identity"
#: `_meta` key of a step-up answer: the RFC 9470 challenge, as a `WWW-Authenticate` value.
CHALLENGE_META = "mcpdsl/www-authenticate"
UNKNOWN_TOOL_LABEL = "(unknown)"
#: How often the gateway looks for a reload that changed the `upstream mcp` integrations.
FOLLOW_INTERVAL = 1.0


# ------------------------------------------------------------------ the seams


class UpstreamCaller(Protocol):
    """What the gateway needs of `mcpdsl.serve.upstream.Upstreams` (REST upstreams)."""

    async def call(self, integration: m.Integration, args: dict[str, Any]) -> Any: ...

    def breaker_state(self, name: str) -> str: ...

    async def aclose(self) -> None: ...


class FederatedCaller(Protocol):
    """What the gateway needs of `mcpdsl.serve.federation.Federation` (MCP upstreams).

    Tools are `FederatedTool`s (name, integration, description, input_schema,
    validator).  `proxy` answers the tool's result or raises an exception with a
    `reason` for the agent and a `kind` for metrics (`federation.CallFailed`).
    """

    def tools(self) -> list[Any]: ...

    def tool(self, name: str) -> Any | None: ...

    async def proxy(self, name: str, args: dict[str, Any]) -> types.CallToolResult: ...

    def breaker_state(self, integration: str) -> str | None: ...

    def status(self) -> dict[str, dict[str, Any]]: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


#: Makes the federation of some `upstream mcp` integrations; the callback is its `on_change`.
FederationFactory = Callable[[tuple[m.Integration, ...], Callable[[], None]], FederatedCaller]


def connection(integration: m.Integration) -> tuple[Any, ...]:
    """What a federation's connection to an integration's upstream depends on.

    A reload that changes any of it (URL, prefix, credential source, timeout,
    breaker) needs a new connection; a change of `limit` or of the rules does not.
    """
    return (
        integration.qualified, integration.url, integration.prefix, integration.auth,
        integration.timeout, integration.breaker,
    )  # fmt: skip


def connections(integrations: Iterable[m.Integration]) -> tuple[tuple[Any, ...], ...]:
    return tuple(sorted((connection(i) for i in integrations), key=lambda c: str(c[0])))


@dataclass(frozen=True)
class EndpointConfig:
    """The `/mcp` endpoint: its resource identifier and the providers it accepts."""

    resource: str
    providers: tuple[m.Provider, ...]

    @property
    def metadata_url(self) -> str:
        """RFC 9728 section 3.1: the well-known suffix inserted before the resource's path."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.resource)
        path = parts.path.rstrip("/")
        return f"{parts.scheme}://{parts.netloc}{METADATA_PATH}{path}"


def endpoint_config(
    project: m.Project, resource: str | None = None, accept: tuple[str, ...] = ()
) -> EndpointConfig | None:
    """The endpoint of the project's `server { mcp ... }`, overridden by `--mcp-resource`/`--mcp-accept`.

    None when neither declares a resource: `/mcp` is then not served.  A provider
    name that names no provider is skipped (the front end reports it for the
    server block; `serve` checks the flags at start).
    """
    declared = next((s.mcp for s in project.servers if s.mcp is not None), None)
    if declared is None:
        declared = project.mcp  # the IR alone (a ConfigMap, a bare project.json)
    chosen = resource or (declared.resource if declared is not None else None)
    if chosen is None:
        return None
    names: list[tuple[str | None, str]] = (
        [(None, n) for n in accept]
        if accept
        else [(r.package, r.name) for r in (declared.providers if declared else ())]
    )
    providers: list[m.Provider] = []
    for package, name in names:
        found = next(
            (p for p in project.providers
             if (p.qualified == name or p.name == name) and package in (None, p.package)),
            None,
        )  # fmt: skip
        if found is not None and found not in providers:
            providers.append(found)
    return EndpointConfig(chosen, tuple(providers))


# ------------------------------------------------------------------ per policy


@dataclass(frozen=True)
class View:
    """What the gateway derives once from the policy in force (rebuilt after a reload)."""

    prepared: PreparedProject
    tools: dict[str, Tool]
    visibility: Visibility
    endpoint: EndpointConfig | None
    authenticator: Authenticator | None
    federated: dict[str, m.Integration] = field(default_factory=dict)  # `upstream mcp`, by name


def federated_of(project: m.Project) -> dict[str, m.Integration]:
    """The project's `upstream mcp` integrations by qualified name (the first of a name wins)."""
    out: dict[str, m.Integration] = {}
    for integration in project.integrations:
        if integration.upstream == "mcp" and integration.prefix is not None:
            out.setdefault(integration.qualified, integration)
    return out


def withdrawn(view: View, tool: Any) -> str | None:
    """Why the policy in force no longer lets a federated tool be called, or None.

    The federation connected with the integration as it was; after a reload that
    removed it or changed its connection, its tools must not be reached through
    the old connection, nor listed.
    """
    integration: m.Integration = tool.integration
    current = view.federated.get(integration.qualified)
    if current is None:
        return (
            f"tool `{tool.name}` is withdrawn: integration `{integration.name}` is no longer"
            " in the policy in force"
        )
    if connection(current) != connection(integration):
        return (
            f"tool `{tool.name}` is withdrawn until integration `{integration.name}` reconnects"
            " after a policy change"
        )
    return None


def args_digest(args: dict[str, Any], mask_paths: tuple[tuple[str, ...], ...]) -> str:
    """SHA-256 of the canonical JSON of the arguments, masked as the log masks `args.*`."""
    masked, _ = mask_request({"args": args}, mask_paths)
    return "sha256:" + hashlib.sha256(canonical(masked["args"]).encode()).hexdigest()


def tool_request(
    identity: Identity, tool: str, args: dict[str, Any], peer: str | None
) -> dict[str, Any]:
    """The canonical request of a tool call (the shape of a `.mcp` test's tool request)."""
    return {
        "principal": dict(identity.principal),
        "action": INVOKE,
        "resource": {"type": "tool", "id": tool},
        "request": {"auth": dict(identity.auth)},
        "args": args,
        "source": {"ip": peer} if peer else {},
        "context": {},
    }


def step_up_challenge(obligations: tuple[str, ...], metadata_url: str) -> str:
    """RFC 9470 section 3: the challenge of a call allowed once the user authenticates more."""
    required = " ".join(obligations)
    return (
        f'Bearer error="insufficient_user_authentication", '
        f'error_description="required: {", ".join(obligations)}", '
        f'acr_values="{required}", resource_metadata="{metadata_url}"'
    )


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def tool_error(
    reason: str, meta: dict[str, Any] | None = None, **extra: Any
) -> types.CallToolResult:
    """A tool error (`isError: true`): the reason as text and as structured content."""
    structured = {"error": reason, **extra}
    return types.CallToolResult(
        content=[types.TextContent(text=reason)],
        structured_content=structured,
        is_error=True,
        _meta=meta,
    )


@dataclass
class Gateway:
    """The MCP gateway of one server state (module doc)."""

    state: ServerState
    resource: str | None = None  # `--mcp-resource`
    accept: tuple[str, ...] = ()  # `--mcp-accept`
    upstreams: UpstreamCaller | None = None
    federation: FederatedCaller | None = None  # injected as is (its owner starts and stops it)
    federate: FederationFactory | None = None  # or made, started and followed by the gateway
    clock: Callable[[], float] = time.perf_counter
    follow_interval: float = FOLLOW_INTERVAL
    _views: list[View] = field(default_factory=list)
    _manager: StreamableHTTPSessionManager | None = None
    _wanted: tuple[tuple[Any, ...], ...] | None = None  # the connections of the federation

    # ------------------------------------------------------------ views

    def view(self, prepared: PreparedProject | None = None) -> View:
        """The view of `prepared` (default: the policy in force), built once per policy."""
        if prepared is None:
            prepared = self.state.engine.compiled
        views = self._views
        if views and views[0].prepared is prepared:
            return views[0]
        project = prepared.project
        endpoint = endpoint_config(project, self.resource, self.accept)
        old = views[0].authenticator if views else None
        auth = None
        if endpoint is not None:
            if old is not None and (old.resource, old.providers) == (
                endpoint.resource, endpoint.providers
            ):  # fmt: skip
                auth = old  # keep its fetched keys
            else:
                auth = Authenticator(endpoint.resource, endpoint.providers, prepared.root)
        view = View(
            prepared, catalog(project), Visibility(prepared.policies), endpoint, auth,
            federated_of(project),
        )  # fmt: skip
        views[:] = [view]
        return view

    # ------------------------------------------------------------ tools/list

    def list_for(self, identity: Identity, view: View | None = None) -> list[types.Tool]:
        """The tools this caller may see (REST-backed, then federated), by name."""
        v = view or self.view()
        out: list[types.Tool] = []
        for name in v.visibility.visible(identity.principal, identity.auth, sorted(v.tools)):
            tool = v.tools[name]
            out.append(
                types.Tool(name=name, description=tool.description, input_schema=tool.schema)
            )
        federation = self.federation
        if federation is not None:
            for ft in federation.tools():  # sorted by name
                if ft.name in v.tools or withdrawn(v, ft) is not None:
                    continue  # a declared tool wins; a withdrawn one is not offered
                if v.visibility.may_allow(identity.principal, identity.auth, ft.name):
                    out.append(
                        types.Tool(
                            name=ft.name, description=ft.description or "",
                            input_schema=ft.input_schema,
                        )
                    )  # fmt: skip
        return out

    # ------------------------------------------------------------ tools/call

    async def call(
        self, identity: Identity, name: str, arguments: Any, peer: str | None
    ) -> types.CallToolResult:
        """One `tools/call` (module doc); raises MCPError for protocol errors."""
        start = self.clock()
        view = self.view()
        federation = self.federation  # once: a swap after a reload does not split this call
        tool = view.tools.get(name)
        federated = None
        if tool is None and federation is not None:
            federated = federation.tool(name)
        if tool is None and federated is None:
            self._count(UNKNOWN_TOOL_LABEL, "unknown_tool")
            raise MCPError(types.INVALID_PARAMS, f"unknown tool `{name[:200]}`")
        if federated is not None:
            gone = withdrawn(view, federated)
            if gone is not None:
                self._count(name, "withdrawn")
                return tool_error(gone)
        try:
            if tool is not None:
                args = validate(tool.schema, arguments)
            else:
                assert federated is not None
                # jsonschema is slow (a 64 KiB argument object: ~0.1 s); off the event loop.
                args = await asyncio.to_thread(
                    check_arguments, federated.input_schema, arguments, federated.validator
                )
        except InvalidArguments as exc:
            self._count(name, "invalid")
            data = {"field": exc.field} if exc.field else None
            raise MCPError(types.INVALID_PARAMS, f"invalid arguments: {exc}", data) from None
        request = tool_request(identity, name, args, peer)
        verdict = await self.state.authorize(request, "mcp", prepared=view.prepared, log=False)
        metadata_url = view.endpoint.metadata_url if view.endpoint is not None else ""
        extra: dict[str, Any] = {
            "tool": name,
            "principal": principal_key(request),
            "args_digest": args_digest(args, self._mask_paths()),
        }
        if not verdict.allowed:
            d = verdict.decision
            if d.allowed and not d.enforced and verdict.limited is None and not verdict.unavailable:
                result = "step_up"
                text = step_up_challenge(d.obligations, metadata_url)
                answer = tool_error(
                    verdict.reason, {CHALLENGE_META: text},
                    required=list(d.obligations), challenge=text,
                )  # fmt: skip
            else:
                result = (
                    "limited" if verdict.limited is not None
                    else "unavailable" if verdict.unavailable
                    else "denied"
                )  # fmt: skip
                answer = tool_error(verdict.reason)
            return self._done(verdict, name, result, start, extra, answer)
        if federated is not None:
            assert federation is not None
            return await self._federated(verdict, federation, federated, args, start, extra)
        assert tool is not None
        return await self._rest(verdict, view, tool, args, start, extra)

    async def _rest(
        self, verdict: Verdict, view: View, tool: Tool, args: dict[str, Any], start: float,
        extra: dict[str, Any],
    ) -> types.CallToolResult:  # fmt: skip
        name = tool.name
        if self.upstreams is None:
            extra["upstream"] = {"error": "unavailable"}
            answer = tool_error("upstream calls are not configured on this server")
            return self._done(verdict, name, "upstream_error", start, extra, answer)
        try:
            got = await self.upstreams.call(tool.integration, args)
        except Exception as exc:  # UpstreamError carries a safe reason; anything else is a bug
            reason = getattr(exc, "reason", None)
            kind = getattr(exc, "kind", None)
            status = getattr(exc, "status", None)
            if not isinstance(reason, str) or not isinstance(kind, str):
                _log.exception("upstream call of `%s` failed", name)
                reason, kind = "the upstream call failed", "internal"
            self.state.metrics.tool_upstream_errors.labels(name, kind).inc()
            extra["upstream"] = {"error": kind, "status": status}
            return self._done(verdict, name, "upstream_error", start, extra, tool_error(reason))
        finally:
            self._breaker(tool)
        extra["upstream"] = {
            "status": getattr(got, "status", None),
            "attempts": getattr(got, "attempts", None),
            "elapsed_ms": getattr(got, "elapsed_ms", None),
        }
        transform = view.prepared.transforms.get(tool.integration.qualified) or (
            view.prepared.transforms.get(tool.integration.name)
        )
        payload = getattr(got, "payload", None)
        try:
            mapped = transform.apply(payload) if transform is not None else payload
        except TransformError as exc:
            self.state.metrics.tool_upstream_errors.labels(name, "map").inc()
            reason = f"the upstream's answer has no usable `{exc.field}`"
            extra["upstream"]["error"] = "map"
            return self._done(verdict, name, "upstream_error", start, extra, tool_error(reason))
        answer = types.CallToolResult(
            content=[types.TextContent(text=_text(mapped))],
            structured_content=mapped,
        )
        return self._done(verdict, name, "ok", start, extra, answer)

    async def _federated(
        self, verdict: Verdict, federation: FederatedCaller, tool: Any, args: dict[str, Any],
        start: float, extra: dict[str, Any],
    ) -> types.CallToolResult:  # fmt: skip
        name = tool.name
        integration: m.Integration = tool.integration
        upstream: dict[str, Any] = {"mcp": integration.qualified}
        extra["upstream"] = upstream
        began = self.clock()
        try:
            answer = await federation.proxy(name, args)
        except Exception as exc:  # CallFailed carries a safe reason; anything else is a bug
            reason = getattr(exc, "reason", None)
            kind = getattr(exc, "kind", None)
            if not isinstance(reason, str) or not isinstance(kind, str):
                _log.exception("federated call of `%s` failed", name)
                reason, kind = "the upstream MCP server failed", "internal"
            self.state.metrics.tool_upstream_errors.labels(name, kind).inc()
            upstream["error"] = kind
            return self._done(verdict, name, "upstream_error", start, extra, tool_error(reason))
        finally:
            self._federated_breaker(federation, tool)
        upstream["is_error"] = bool(answer.is_error)
        upstream["elapsed_ms"] = round((self.clock() - began) * 1000.0, 3)
        result = "tool_error" if answer.is_error else "ok"
        return self._done(verdict, name, result, start, extra, answer)

    # ------------------------------------------------------------ bookkeeping

    def _mask_paths(self) -> tuple[tuple[str, ...], ...]:
        log = self.state.log
        return log.paths if log is not None else ()

    def _count(self, tool: str, result: str) -> None:
        self.state.metrics.tool_calls.labels(tool, result).inc()

    def _breaker(self, tool: Tool) -> None:
        if self.upstreams is None:
            return
        try:
            state = self.upstreams.breaker_state(tool.integration.qualified)
        except Exception:
            return
        self._breaker_gauge(tool.name, state)

    def _federated_breaker(self, federation: FederatedCaller, tool: Any) -> None:
        try:
            state = federation.breaker_state(tool.integration.qualified)
        except Exception:
            return
        if state is not None:
            self._breaker_gauge(tool.name, state)

    def _breaker_gauge(self, tool: str, state: Any) -> None:
        value = {"closed": 0, "half-open": 1, "half_open": 1, "open": 2}.get(str(state))
        if value is not None:
            self.state.metrics.breaker_open.labels(tool).set(value)

    def _done(
        self, verdict: Verdict, tool: str, result: str, start: float, extra: dict[str, Any],
        answer: types.CallToolResult,
    ) -> types.CallToolResult:  # fmt: skip
        elapsed = self.clock() - start
        self._count(tool, result)
        self.state.metrics.tool_latency.labels(tool).observe(elapsed)
        extra["result"] = result
        self.state.record(verdict, "mcp", elapsed * 1e6, extra)
        return answer

    # ------------------------------------------------------------ the SDK

    def server(self) -> Server[Any]:
        """The SDK's low-level server with this gateway's handlers."""

        async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
            identity = _identity_of(ctx)
            return types.ListToolsResult(tools=self.list_for(identity))

        async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
            identity = _identity_of(ctx)
            request = ctx.request
            peer = None
            if isinstance(request, Request) and request.client is not None:
                peer = request.client.host
            try:
                return await self.call(identity, params.name, params.arguments, peer)
            except MCPError:
                raise
            except Exception:  # a bug is an internal error, never a traceback to the client
                _log.exception("tools/call of `%s` failed", params.name[:200])
                raise MCPError(types.INTERNAL_ERROR, "the gateway failed to answer") from None

        return Server(
            "mcpdsl", version=__version__, on_list_tools=list_tools, on_call_tool=call_tool
        )

    def manager(self, max_body: int) -> StreamableHTTPSessionManager:
        if self._manager is None:
            self._manager = StreamableHTTPSessionManager(
                self.server(), stateless=True, json_response=True,
                max_request_body_size=max_body,
            )  # fmt: skip
        return self._manager

    @contextlib.asynccontextmanager
    async def run(self, max_body: int) -> AsyncIterator[None]:
        """The gateway's lifetime (the app's lifespan): the SDK's session manager and,
        with a `federate` factory, the federation -- connected before the first
        request, followed across reloads, closed after the last; then the upstreams."""
        follow: asyncio.Task[None] | None = None
        try:
            async with self.manager(max_body).run():
                if self.federate is not None:
                    try:
                        await self._refederate()
                    except Exception:  # a bug: serve the rest; the follower tries again
                        _log.exception("the federated MCP upstreams could not be started")
                    follow = asyncio.create_task(self._follow(), name="mcpdsl federation")
                try:
                    yield
                finally:
                    if follow is not None:
                        follow.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await follow
                    if self.federate is not None and self.federation is not None:
                        owned, self.federation = self.federation, None
                        with contextlib.suppress(Exception):
                            await owned.aclose()
        finally:
            if self.upstreams is not None:
                with contextlib.suppress(Exception):
                    await self.upstreams.aclose()

    def upstream_status(self) -> dict[str, dict[str, Any]] | None:
        """The federated upstreams' status (`Federation.status`), None without federation."""
        federation = self.federation
        return federation.status() if federation is not None else None

    async def _follow(self) -> None:
        """Replace the federation when a reload changed the `upstream mcp` integrations."""
        while True:
            await asyncio.sleep(self.follow_interval)
            try:
                await self._refederate()
            except asyncio.CancelledError:
                raise
            except Exception:  # never end the follower: the next reload tries again
                _log.exception("the federation could not follow the policy")

    async def _refederate(self) -> None:
        """Make the federation of the policy in force's `upstream mcp` integrations, if it
        differs from the running one: start the new one, then swap, then close the old.

        Meanwhile the old one serves its unchanged integrations; the tools of a removed
        or changed one are withdrawn by `withdrawn` from the moment the policy changed.
        """
        assert self.federate is not None
        view = self.view()
        wanted = connections(view.federated.values())
        if wanted == self._wanted:
            return
        new = None
        if view.federated:
            integrations = tuple(view.federated[k] for k in sorted(view.federated))
            new = self.federate(integrations, self._federation_changed)
            try:
                await new.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await new.aclose()
                raise
        old, self.federation, self._wanted = self.federation, new, wanted
        if old is not None:
            _log.info("the federated MCP upstreams follow the policy in force")
            for name in old.status():
                self.state.metrics.federated_tools.labels(name).set(0)
            await old.aclose()
        self._federation_changed()

    def _federation_changed(self) -> None:
        """`on_change` of the federation: the next `tools/list` reads the new tools (the
        sessions are stateless); here only the per-upstream gauge follows."""
        federation = self.federation
        if federation is None:
            return
        for name, status in federation.status().items():
            self.state.metrics.federated_tools.labels(name).set(int(status.get("tools", 0)))


def _identity_of(ctx: Any) -> Identity:
    request = getattr(ctx, "request", None)
    identity = request.scope.get(IDENTITY_KEY) if isinstance(request, Request) else None
    if not isinstance(identity, Identity):  # McpHttp admits no request without one
        raise MCPError(types.INVALID_REQUEST, "not authenticated")
    return identity


# ------------------------------------------------------------------ HTTP


class McpHttp:
    """ASGI app of `/mcp`: the bearer token first (401 with the challenge), then the SDK."""

    def __init__(self, gateway: Gateway, max_body: int) -> None:
        self.gateway = gateway
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        view = self.gateway.view()
        if view.endpoint is None or view.authenticator is None:
            await JSONResponse({"error": "not_found"}, 404)(scope, receive, send)
            return
        request = Request(scope)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        url = view.endpoint.metadata_url
        if not header or scheme.lower() != "bearer" or not token.strip():
            await _unauthorized(challenge(url), "a bearer token is required", "unauthorized")(
                scope, receive, send
            )
            return
        try:
            identity = await view.authenticator.verify(token.strip())
        except TokenRejected as exc:
            value = challenge(url, "invalid_token", str(exc))
            await _unauthorized(value, str(exc))(scope, receive, send)
            return
        scope[IDENTITY_KEY] = identity
        scope["user"] = AuthenticatedUser(
            AccessToken(
                token="",  # the token itself is not kept (nor ever forwarded)
                client_id=principal_key({"principal": identity.principal}),
                scopes=[],
                expires_at=identity.expires_at,
                resource=view.endpoint.resource,
                subject=identity.subject,
                claims={"iss": identity.issuer},
            )
        )
        await self.gateway.manager(self.max_body).handle_request(scope, receive, send)


def _unauthorized(value: str, reason: str, error: str = "invalid_token") -> Response:
    return JSONResponse(
        {"error": error, "error_description": reason}, 401,
        headers={"www-authenticate": value},
    )  # fmt: skip


def metadata_endpoint(gateway: Gateway) -> Callable[[Request], Any]:
    """`GET /.well-known/oauth-protected-resource[/path]` (RFC 9728)."""

    async def metadata(_: Request) -> Response:
        view = gateway.view()
        if view.endpoint is None or view.authenticator is None:
            return JSONResponse({"error": "not_found"}, 404)
        body = metadata_document(view.endpoint.resource, view.authenticator.issuers)
        return JSONResponse(body, headers={"cache-control": "max-age=300"})

    return metadata


__all__ = [
    "CHALLENGE_META",
    "EndpointConfig",
    "FederatedCaller",
    "FederationFactory",
    "Gateway",
    "McpHttp",
    "UpstreamCaller",
    "args_digest",
    "connection",
    "endpoint_config",
    "metadata_endpoint",
    "step_up_challenge",
    "tool_request",
    "withdrawn",
]
