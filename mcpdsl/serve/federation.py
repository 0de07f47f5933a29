"""Federated MCP upstreams: other MCP servers' tools, discovered and governed by the policy.

An integration declared `upstream mcp "URL" [prefix "P"]` names an MCP server
reachable over Streamable HTTP.  The gateway connects to it with the official SDK
client (`mcp.Client` over `mcp.client.streamable_http`, a `ClientSession` inside),
lists its tools (every page), and exposes each as `P.<tool>` — the name agents see
and rules name (`tool "docs.search"`).  The listing is refreshed when the upstream
says it changed (`notifications/tools/list_changed`: the standing GET stream of a
handshake-era session, a `subscriptions/listen` stream on a 2026-07-28 one) and
after every reconnect.

Why the care: an upstream MCP server is a third party.  Whatever it lists or
answers — thousands of tools, names with `/` or spaces, schemas that are not
objects or are megabytes deep, a list or call that hangs, a result of gigabytes,
a stream closed halfway — must cost the gateway a bounded amount of memory and
time, and end as a skipped tool (logged with its reason), an absent upstream
(retried with backoff, reported by `status()`), or a tool error for the one call.
Never a crash, never an upstream's internals in what the agent reads.

Credentials: the gateway authenticates *itself* to the upstream with the
integration's declared secret (environment variable or file, read per request so
a rotated file is used without a restart).  Nothing of the agent — its token, its
headers — ever reaches this module, so nothing of it can be forwarded.

The circuit breaker is the REST upstreams' (`mcpdsl.serve.breaker`): one
`BreakerState` per federated integration, moved by the same pure `admit`,
`settle` and `abandon`, so `breaker N failures open T` means one thing whatever
the upstream speaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ListenNotSupportedError, SubscriptionLost
from mcp.shared.exceptions import MCPError

from mcpdsl._version import __version__
from mcpdsl.ir import model as m
from mcpdsl.serve import breaker as br
from mcpdsl.serve.schemas import (
    MAX_SCHEMA_BYTES,
    MAX_SCHEMA_DEPTH,
    arguments_validator,
    check_schema,
)

_log = logging.getLogger("mcpdsl.serve.federation")

#: Bounds on what one upstream may make the gateway hold (hostile upstreams).
MAX_TOOLS = 1024  # tools kept per upstream; the rest are skipped
MAX_PAGES = 64  # tools/list pages followed per refresh
MAX_NAME = 128  # characters of an upstream tool name (MCP's own limit)
MAX_DESCRIPTION = 2048  # characters kept of a description (longer ones are cut)
MAX_RESULT_BYTES = 1024 * 1024  # a tools/call result, as compact JSON
MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # one HTTP response to a request (not the event streams)
MAX_SSE_EVENT = 1024 * 1024  # one server-sent event
MAX_SECRET_BYTES = 16 * 1024  # a credential file

_NAME = re.compile(rf"[A-Za-z0-9_.-]{{1,{MAX_NAME}}}")
_HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*")


@dataclass(frozen=True)
class FederatedTool:
    """One tool of an upstream MCP server, as the gateway exposes it."""

    name: str  # "<prefix>.<upstream tool name>": what agents and rules see
    upstream_name: str  # the upstream's own name, used when proxying the call
    integration: m.Integration
    description: str | None
    input_schema: dict[str, Any]  # the upstream's inputSchema, checked by `check_tool`
    # Built once per listing (`schemas.arguments_validator`); not part of `==`.
    validator: Any = field(default=None, compare=False, repr=False)


def prefix_of(integration: m.Integration) -> str:
    """The namespace of an integration's federated tools (`prefix`, else its name)."""
    return integration.prefix or integration.name


def _description(text: str | None) -> str | None:
    """A description bounded to `MAX_DESCRIPTION` characters (cut, marked with an ellipsis)."""
    if text is None:
        return None
    if len(text) <= MAX_DESCRIPTION:
        return text
    return text[: MAX_DESCRIPTION - 1] + "…"


def check_tool(tool: types.Tool) -> str | None:
    """Why an upstream tool is skipped, or None when it is federated."""
    if not _NAME.fullmatch(tool.name):
        return f"its name is not 1-{MAX_NAME} characters of [A-Za-z0-9_.-]"
    return check_schema(tool.input_schema)


def federate(
    integration: m.Integration, listed: Iterable[types.Tool]
) -> tuple[tuple[FederatedTool, ...], tuple[tuple[str, str], ...]]:
    """The federated tools of one upstream listing, and the skipped ones with their reason.

    Pure: the same listing gives the same tools, sorted by name.  At most
    `MAX_TOOLS` are kept; a name listed twice keeps its first definition.
    """
    prefix = prefix_of(integration)
    kept: dict[str, FederatedTool] = {}
    skipped: list[tuple[str, str]] = []
    for tool in listed:
        shown = tool.name[:MAX_NAME] if isinstance(tool.name, str) else "?"
        reason = check_tool(tool)
        if reason is None and tool.name in kept:
            reason = "the upstream lists this name twice"
        if reason is None and len(kept) >= MAX_TOOLS:
            reason = f"the upstream lists more than {MAX_TOOLS} tools"
        if reason is not None:
            skipped.append((shown, reason))
            continue
        kept[tool.name] = FederatedTool(
            name=f"{prefix}.{tool.name}",
            upstream_name=tool.name,
            integration=integration,
            description=_description(tool.description),
            input_schema=tool.input_schema,
            validator=arguments_validator(tool.input_schema),
        )
    return tuple(sorted(kept.values(), key=lambda t: t.name)), tuple(skipped)


# --- credentials and the HTTP client -----------------------------------------------


class UpstreamError(Exception):
    """A failure talking to an upstream, worded for status and logs (no secrets, no bodies)."""


class CallFailed(Exception):
    """A federated call that got no answer from the tool (`Federation.proxy`).

    `reason` is for the agent (short, no upstream text); `kind` is for metrics and
    the decision log: `unavailable` (no such tool now), `not-connected`,
    `breaker-open`, `timeout`, `unreachable`, `rpc-error`, `too-large`.
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def secret_value(ref: m.SecretRef, env: Mapping[str, str]) -> str:
    """The credential `ref` names, read now (a rotated file is picked up)."""
    if ref.source == "env":
        value = env.get(ref.name)
        if value is None:
            raise UpstreamError(f"the credential's environment variable {ref.name} is not set")
    else:
        try:
            with open(ref.name, "rb") as handle:
                raw = handle.read(MAX_SECRET_BYTES + 1)
        except OSError as exc:
            raise UpstreamError(
                f"the credential file {ref.name} cannot be read ({exc.strerror})"
            ) from None
        if len(raw) > MAX_SECRET_BYTES:
            raise UpstreamError(
                f"the credential file {ref.name} is larger than {MAX_SECRET_BYTES} bytes"
            )
        try:
            value = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise UpstreamError(f"the credential file {ref.name} is not UTF-8") from None
    value = value.strip()
    if not value or not _HEADER_VALUE.fullmatch(value):
        raise UpstreamError(
            f"the credential from {ref.source} {ref.name} is empty or not a header value"
        )
    return value


def auth_headers(auth: m.UpstreamAuth | None, env: Mapping[str, str]) -> dict[str, str]:
    """The headers that authenticate the gateway to an upstream (none without `auth`)."""
    if auth is None:
        return {}
    value = secret_value(auth.secret, env)
    if auth.scheme == "bearer":
        return {"authorization": f"Bearer {value}"}
    return {auth.header: value}


class _SecretAuth(httpx2.Auth):
    """Adds the integration's credential to every request, read at that moment."""

    def __init__(self, auth: m.UpstreamAuth | None, env: Mapping[str, str]) -> None:
        self._auth = auth
        self._env = env

    def auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        for name, value in auth_headers(self._auth, self._env).items():
            request.headers[name] = value
        yield request


class _CappedStream(httpx2.AsyncByteStream):
    """A response body that fails once it passes `cap` bytes (a hostile upstream's giant body)."""

    def __init__(self, inner: httpx2.AsyncByteStream, cap: int) -> None:
        self._inner = inner
        self._cap = cap

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._cap:
                raise httpx2.ReadError(f"response larger than {self._cap} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def _is_listen(request: httpx2.Request) -> bool:
    """Is this POST a `subscriptions/listen` request (whose response is a long-lived stream)?"""
    try:
        body = json.loads(request.content)
    except (ValueError, httpx2.RequestNotRead):
        return False
    return isinstance(body, dict) and body.get("method") == "subscriptions/listen"


class _CappedTransport(httpx2.AsyncBaseTransport):
    """Caps the bytes of every response that answers one request.

    The standing GET stream and `subscriptions/listen` streams carry events for
    as long as the connection lives; each of their events is bounded by the SDK
    (`max_sse_event_size`) instead.
    """

    def __init__(self, inner: httpx2.AsyncBaseTransport, cap: int) -> None:
        self._inner = inner
        self._cap = cap

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        if request.method == "POST" and not _is_listen(request):
            stream = response.stream
            assert isinstance(stream, httpx2.AsyncByteStream)
            response.stream = _CappedStream(stream, self._cap)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _http_client(
    integration: m.Integration, env: Mapping[str, str], timeout: float
) -> httpx2.AsyncClient:
    """The HTTP client of one upstream: its credential, bounded bodies, no redirects off origin.

    The read timeout stays long because event streams are held open; requests
    are bounded by the caller's deadline instead.
    """
    inner = httpx2.AsyncHTTPTransport(
        limits=httpx2.Limits(max_connections=32, max_keepalive_connections=8), trust_env=False
    )
    return httpx2.AsyncClient(
        transport=_CappedTransport(inner, MAX_RESPONSE_BYTES),
        auth=_SecretAuth(integration.auth, env),
        timeout=httpx2.Timeout(timeout, read=300.0),
        trust_env=False,
    )


# --- the federation --------------------------------------------------------------


def _error(reason: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=reason)], is_error=True
    )


def _describe(exc: BaseException) -> str:
    """A short, body-free account of a failure (for status, logs and tool errors)."""
    if isinstance(exc, UpstreamError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, MCPError):
        return f"answered JSON-RPC error {exc.code}"
    if isinstance(exc, SubscriptionLost):
        return "closed its change stream"
    if isinstance(
        exc, httpx2.HTTPError | OSError | anyio.BrokenResourceError | anyio.ClosedResourceError
    ):
        return "is unreachable or closed the connection"
    if isinstance(exc, BaseExceptionGroup):
        inner = exc.exceptions[0] if exc.exceptions else None
        return _describe(inner) if inner is not None else "failed"
    return f"failed ({type(exc).__name__})"


@dataclass
class _Upstream:
    """The run-time state of one federated integration (owned by its supervisor task)."""

    integration: m.Integration
    timeout: float
    breaker: br.BreakerState = field(default_factory=br.BreakerState)
    client: Client | None = None
    tools: tuple[FederatedTool, ...] = ()
    connected: bool = False
    last_error: str | None = None
    last_refresh: float | None = None  # wall-clock seconds of the last successful listing
    skipped: tuple[tuple[str, str], ...] = ()
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    first_attempt: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class Federation:
    """The federated MCP upstreams of a policy: their tools, their status, and calls to them.

    `start()` launches one supervisor task per upstream and returns once each has
    made its first attempt (bounded by `timeout`); an upstream that is down is
    retried with exponential backoff (`retry_initial` doubling to `retry_max`
    seconds) and its tools are absent meanwhile.  A connected upstream that has
    been quiet for `health_interval` seconds is pinged; no answer is a reconnect.  `on_change` is called (in the
    event loop) whenever the snapshot `tools()` returns changes.
    """

    def __init__(
        self,
        integrations: Sequence[m.Integration],
        *,
        env: Mapping[str, str] | None = None,
        on_change: Callable[[], None] | None = None,
        timeout: float = 10.0,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        health_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._env: Mapping[str, str] = os.environ if env is None else env
        self._on_change = on_change
        self._timeout = timeout
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._health_interval = health_interval
        self._clock = clock
        self._closed = False
        self._upstreams: dict[str, _Upstream] = {}
        for integration in integrations:
            if integration.upstream != "mcp":
                continue
            declared = float(integration.timeout) if integration.timeout is not None else timeout
            self._upstreams[integration.qualified] = _Upstream(
                integration=integration,
                timeout=declared if math.isfinite(declared) and declared > 0 else timeout,
            )
        self._by_name: dict[str, tuple[_Upstream, FederatedTool]] = {}

    # -- lifecycle

    async def start(self) -> None:
        for upstream in self._upstreams.values():
            upstream.task = asyncio.create_task(
                self._supervise(upstream), name=f"mcp upstream {upstream.integration.qualified}"
            )
        waits = [upstream.first_attempt.wait() for upstream in self._upstreams.values()]
        if waits:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timeout * 3 + 1):
                    await asyncio.gather(*waits)

    async def aclose(self) -> None:
        self._closed = True
        tasks = [u.task for u in self._upstreams.values() if u.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- snapshot

    def tools(self) -> list[FederatedTool]:
        return sorted((tool for _, tool in self._by_name.values()), key=lambda t: t.name)

    def status(self) -> dict[str, dict[str, Any]]:
        return {
            key: {
                "url": up.integration.url,
                "prefix": prefix_of(up.integration),
                "connected": up.connected,
                "tools": len(up.tools),
                "skipped": [{"name": name, "reason": reason} for name, reason in up.skipped],
                "last_error": up.last_error,
                "last_refresh": up.last_refresh,
                "breaker": self._breaker_state(up),
            }
            for key, up in sorted(self._upstreams.items())
        }

    def breaker_state(self, integration: str) -> str | None:
        """The breaker of the federated integration `package.name` now (None: no breaker)."""
        up = self._upstreams.get(integration)
        return self._breaker_state(up) if up is not None else None

    def _breaker_state(self, up: _Upstream) -> str | None:
        spec = up.integration.breaker
        if spec is None:
            return None
        return br.state_at(up.breaker, self._clock(), float(spec.open_for))

    def _publish(self, upstream: _Upstream, tools: tuple[FederatedTool, ...]) -> None:
        """Replace one upstream's tools; tell `on_change` when the snapshot changed."""
        if tools == upstream.tools:
            return
        upstream.tools = tools
        by_name = {name: entry for name, entry in self._by_name.items() if entry[0] is not upstream}
        for tool in tools:
            by_name[tool.name] = (upstream, tool)
        self._by_name = by_name
        if self._on_change is not None:
            try:
                self._on_change()
            except Exception:
                _log.exception("the federation's on_change callback failed")

    # -- one upstream's life

    async def _supervise(self, upstream: _Upstream) -> None:
        """Connect, list, follow changes; on any failure drop its tools and retry with backoff."""
        delay = self._retry_initial
        name = upstream.integration.qualified
        while not self._closed:
            try:
                await self._session(upstream)
                upstream.last_error = "closed the connection"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a hostile upstream must never end the supervisor
                _log.debug("MCP upstream %s failed", name, exc_info=True)
                upstream.last_error = _describe(exc)
                if upstream.connected:
                    delay = self._retry_initial
            was_connected = upstream.connected
            upstream.connected = False
            upstream.client = None
            self._publish(upstream, ())
            upstream.first_attempt.set()
            level = logging.WARNING if was_connected else logging.INFO
            _log.log(
                level, "MCP upstream %s %s; retrying in %.1fs", name, upstream.last_error, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max)

    async def _session(self, upstream: _Upstream) -> None:
        """One connection to an upstream, until it fails (raises) or ends."""

        async def on_message(message: Any) -> None:
            # Runs inside the session's receive loop: only signal, never do I/O here.
            if isinstance(message, types.ToolListChangedNotification | Exception):
                upstream.wake.set()

        integration = upstream.integration
        secret_check = auth_headers(integration.auth, self._env)  # fail early on a missing secret
        del secret_check
        async with contextlib.AsyncExitStack() as stack:
            http = await stack.enter_async_context(
                _http_client(integration, self._env, upstream.timeout)
            )
            client = Client(
                streamable_http_client(
                    integration.url, http_client=http, max_sse_event_size=MAX_SSE_EVENT
                ),
                message_handler=on_message,
                read_timeout_seconds=upstream.timeout,
                client_info=types.Implementation(name="mcpdsl", version=__version__),
                cache=None,
            )
            # The handshake is bounded by `read_timeout_seconds` (a cancel scope
            # around entering would wrap the client's task group and break nesting).
            await stack.enter_async_context(client)
            upstream.wake.clear()
            await self._refresh(upstream, client)
            upstream.client = client
            upstream.connected = True
            upstream.last_error = None
            upstream.first_attempt.set()
            _log.info(
                "MCP upstream %s connected: %d tools", integration.qualified, len(upstream.tools)
            )
            async with anyio.create_task_group() as group:
                capabilities = client.server_capabilities
                if capabilities.tools is not None and capabilities.tools.list_changed:
                    group.start_soon(self._listen, upstream, client)
                while True:
                    try:
                        async with asyncio.timeout(self._health_interval):
                            await upstream.wake.wait()
                    except TimeoutError:
                        # Quiet for a while: check the upstream is still there (a
                        # dropped event stream does not always surface as an error).
                        with anyio.fail_after(upstream.timeout):
                            await client.session.send_ping()
                        continue
                    upstream.wake.clear()
                    await self._refresh(upstream, client)

    async def _listen(self, upstream: _Upstream, client: Client) -> None:
        """Hold a `subscriptions/listen` stream open (2026-07-28); its events wake the refresh.

        On a handshake-era session the changes arrive on the standing GET stream
        instead (the message handler sees them), so there is nothing to hold.
        """
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _event in subscription:
                    upstream.wake.set()
        except ListenNotSupportedError:
            return
        except MCPError as exc:
            _log.info(
                "MCP upstream %s refused to stream changes (%s)",
                upstream.integration.qualified,
                exc.code,
            )
            return
        raise SubscriptionLost("the change stream ended")

    async def _refresh(self, upstream: _Upstream, client: Client) -> None:
        """List every page of the upstream's tools (bounded) and publish the checked ones."""
        listed: list[types.Tool] = []
        cursor: str | None = None
        truncated = False
        with anyio.fail_after(upstream.timeout):
            for _ in range(MAX_PAGES):
                page = await client.list_tools(cursor=cursor, cache_mode="refresh")
                listed.extend(page.tools)
                cursor = page.next_cursor
                if cursor is None:
                    break
                if len(listed) > MAX_TOOLS:
                    truncated = True
                    break
            else:
                truncated = cursor is not None
        tools, skipped = federate(upstream.integration, listed)
        if truncated:
            skipped += (("…", f"the listing was cut after {len(listed)} tools"),)
        upstream.skipped = skipped[:64]
        for name, reason in skipped[:16]:
            _log.warning(
                "MCP upstream %s: tool %r skipped: %s", upstream.integration.qualified, name, reason
            )
        if len(skipped) > 16:
            _log.warning(
                "MCP upstream %s: %d more tools skipped",
                upstream.integration.qualified,
                len(skipped) - 16,
            )
        upstream.last_refresh = time.time()
        self._publish(upstream, tools)

    # -- calls

    def tool(self, name: str) -> FederatedTool | None:
        """The federated tool `name` of the current snapshot, if any."""
        entry = self._by_name.get(name)
        return entry[1] if entry is not None else None

    async def call(self, name: str, args: Mapping[str, Any]) -> types.CallToolResult:
        """Proxy `tools/call` of a federated tool; every failure is a tool error with a reason."""
        try:
            return await self.proxy(name, args)
        except CallFailed as exc:
            return _error(exc.reason)

    async def proxy(self, name: str, args: Mapping[str, Any]) -> types.CallToolResult:
        """Proxy `tools/call` of a federated tool: its (bounded) result, or CallFailed.

        The result may be the tool's own error (`isError: true`): that is the
        tool's answer, passed on, and it counts as a success for the breaker.
        """
        entry = self._by_name.get(name)
        if entry is None:
            raise CallFailed(
                "unavailable", f"tool {name} is not available from its upstream MCP server"
            )
        upstream, tool = entry
        client = upstream.client
        label = f"upstream MCP server {prefix_of(upstream.integration)}"
        if client is None:
            raise CallFailed("not-connected", f"{label} is not connected")
        spec = upstream.integration.breaker
        ticket: br.Ticket | None = None
        if spec is not None:
            upstream.breaker, ticket = br.admit(
                upstream.breaker, self._clock(), float(spec.open_for)
            )
            if ticket is None:
                raise CallFailed("breaker-open", f"{label} is failing; its circuit is open")
        try:
            with anyio.fail_after(upstream.timeout):
                result = await client.call_tool(tool.upstream_name, dict(args))
        except Exception as exc:
            self._settle(upstream, ticket, ok=False)
            if not isinstance(exc, MCPError):
                upstream.wake.set()  # let the supervisor check the connection
            reason = _describe(exc)
            kind = "rpc-error" if isinstance(exc, MCPError) else "unreachable"
            if isinstance(exc, TimeoutError):
                reason, kind = f"timed out after {upstream.timeout:g}s", "timeout"
            _log.warning(
                "MCP upstream %s: call %s %s", upstream.integration.qualified, name, reason
            )
            raise CallFailed(kind, f"{label} {reason}") from None
        except BaseException:  # cancelled: no verdict, a probe gives its slot back
            if ticket is not None:
                upstream.breaker = br.abandon(upstream.breaker, ticket)
            raise
        self._settle(upstream, ticket, ok=True)
        return _bounded(result, label)

    def _settle(self, upstream: _Upstream, ticket: br.Ticket | None, *, ok: bool) -> None:
        """The breaker after an admitted call's verdict (a tool's own `isError` is `ok`)."""
        spec = upstream.integration.breaker
        if ticket is None or spec is None:
            return
        upstream.breaker = br.settle(
            upstream.breaker, ticket, ok=ok, now=self._clock(), failures=spec.failures,
            open_for=float(spec.open_for),
        )  # fmt: skip


def _bounded(result: types.CallToolResult, label: str) -> types.CallToolResult:
    """The upstream's result without its `_meta`, or a tool error when it is too large."""
    clean = types.CallToolResult(
        content=result.content,
        structured_content=result.structured_content,
        is_error=result.is_error,
    )
    size = len(clean.model_dump_json(by_alias=True, exclude_none=True))
    if size > MAX_RESULT_BYTES:
        raise CallFailed(
            "too-large", f"{label} answered a result of {size} bytes (limit {MAX_RESULT_BYTES})"
        )
    return clean


__all__ = [
    "MAX_DESCRIPTION",
    "MAX_RESULT_BYTES",
    "MAX_SCHEMA_BYTES",
    "MAX_SCHEMA_DEPTH",
    "MAX_TOOLS",
    "CallFailed",
    "FederatedTool",
    "Federation",
    "UpstreamError",
    "auth_headers",
    "check_schema",
    "check_tool",
    "federate",
    "prefix_of",
    "secret_value",
]
