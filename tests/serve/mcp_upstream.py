"""A real MCP server for the federation tests: the SDK's low-level `Server`, mutable tools.

`Upstream` records every call and the headers of every HTTP request it gets (to
prove what the gateway forwards and what it never does), and can tell its clients
that its tools changed in both protocol eras.  `tests/serve/test_federation.py`
serves it in the test's event loop; `ThreadedUpstream` serves it from a thread on
a free loopback port, for a `mcpdsl serve` process to federate.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
import uvicorn
from mcp.server.lowlevel import Server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send


def tool(name: str, description: str | None = None, schema: Any = None) -> types.Tool:
    return types.Tool(
        name=name,
        description=description,
        input_schema=schema if schema is not None else {"type": "object"},
    )


@dataclass
class Upstream:
    """A real MCP server with mutable tools, recording the headers it receives."""

    tools: dict[str, types.Tool] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    legacy_sessions: list[Any] = field(default_factory=list)
    bus: InMemorySubscriptionBus = field(default_factory=InMemorySubscriptionBus)
    handler: Callable[[str, dict[str, Any]], Awaitable[types.CallToolResult]] | None = None
    lister: Callable[[], Awaitable[types.ListToolsResult]] | None = None
    legacy_only: bool = False

    def app(self) -> ASGIApp:
        async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
            if ctx.protocol_version < "2026" and ctx.session not in self.legacy_sessions:
                self.legacy_sessions.append(ctx.session)
            if self.lister is not None:
                return await self.lister()
            return types.ListToolsResult(tools=list(self.tools.values()))

        async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
            args = dict(params.arguments or {})
            self.calls.append((params.name, args))
            if self.handler is not None:
                return await self.handler(params.name, args)
            return types.CallToolResult(
                content=[
                    types.TextContent(type="text", text=f"{params.name}:{sorted(args.items())}")
                ],
                structured_content={"echo": args},
            )

        server = Server(
            "upstream",
            on_list_tools=list_tools,
            on_call_tool=call_tool,
            on_subscriptions_listen=ListenHandler(self.bus),
        )
        inner = server.streamable_http_app()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
                self.headers.append(headers)
                if self.legacy_only and headers.get("mcp-method") == "server/discover":
                    await Response("no discover here", status_code=400)(scope, receive, send)
                    return
            await inner(scope, receive, send)

        return app

    async def changed(self) -> None:
        """Tell clients the tool list changed, in both protocol eras."""
        await self.bus.publish(ToolsListChanged())
        for session in self.legacy_sessions:
            with contextlib.suppress(Exception):
                await session.send_tool_list_changed()


class ThreadedUpstream:
    """`Upstream` served by uvicorn in a thread with its own event loop, on a free port."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def _run(self) -> None:
        assert self._server is not None
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.run_until_complete(self._server.serve(sockets=[self._sock]))
        loop.close()

    def __enter__(self) -> ThreadedUpstream:
        config = uvicorn.Config(self.upstream.app(), log_level="error", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the upstream MCP server did not start")
            time.sleep(0.01)
        return self

    def changed(self) -> None:
        """Tell the upstream's clients that its tools changed (from any thread)."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self.upstream.changed(), self._loop).result(30)

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._server.force_exit = True
        self._thread.join(30)
        self._sock.close()
