"""Federated MCP upstreams (`mcpdsl.serve.federation`) against real SDK servers on loopback.

Each upstream is an `mcp.server.lowlevel.Server` served by uvicorn on a random
loopback port inside the test's event loop; the federation talks to it with the
SDK client over Streamable HTTP.  Waits are on conditions (bounded by a generous
deadline so a broken build fails instead of hanging), never timed assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from mcp_upstream import Upstream, tool
from starlette.types import ASGIApp

from mcpdsl.ir import model as m
from mcpdsl.serve import breaker as br
from mcpdsl.serve import federation as fed
from mcpdsl.serve.federation import Federation

DEADLINE = 60.0  # a bound for a wait that should take milliseconds, not an assertion


def integration(
    url: str,
    *,
    name: str = "docs",
    prefix: str | None = None,
    auth: m.UpstreamAuth | None = None,
    timeout: str | None = None,
    breaker: m.Breaker | None = None,
) -> m.Integration:
    return m.Integration(
        package="tools",
        name=name,
        method="POST",
        url=url,
        upstream="mcp",
        prefix=prefix,
        auth=auth,
        timeout=Decimal(timeout) if timeout else None,
        breaker=breaker,
    )


BEARER = m.UpstreamAuth(scheme="bearer", secret=m.SecretRef(source="env", name="DOCS_TOKEN"))


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Serve `app` on a loopback socket in this event loop; yield its MCP URL."""
    sock = sock or free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(DEADLINE):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        server.force_exit = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(DEADLINE):
                await task


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(DEADLINE):
        while not condition():
            await asyncio.sleep(0.02)


def names(federation: Federation) -> list[str]:
    return [t.name for t in federation.tools()]


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


# --- discovery, calls, credentials ---------------------------------------------------


def test_discovery_call_and_credentials() -> None:
    upstream = Upstream(
        tools={
            "search": tool(
                "search",
                "Search the docs",
                {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
            ),
            "fetch": tool(
                "fetch", None, {"type": "object", "properties": {"id": {"type": "integer"}}}
            ),
        }
    )

    async def go() -> None:
        async with serving(upstream.app()) as url:
            federation = Federation([integration(url, auth=BEARER)], env={"DOCS_TOKEN": "s3cret"})
            await federation.start()
            try:
                assert names(federation) == ["docs.fetch", "docs.search"], federation.status()
                search = federation.tools()[1]
                assert search.upstream_name == "search"
                assert search.description == "Search the docs"
                assert search.input_schema["required"] == ["q"]
                assert search.integration.name == "docs"
                status = federation.status()["tools.docs"]
                assert status["connected"] and status["tools"] == 2 and status["last_error"] is None
                assert status["last_refresh"] is not None

                result = await federation.call("docs.search", {"q": "breaker"})
                assert not result.is_error
                assert result.structured_content == {"echo": {"q": "breaker"}}
                assert result.content[0].text == "search:[('q', 'breaker')]"  # type: ignore[union-attr]
                assert result.meta is None  # the upstream's _meta is not passed on
                assert upstream.calls == [("search", {"q": "breaker"})]
            finally:
                await federation.aclose()
        # Every request carried the integration's credential and nothing of an agent.
        assert upstream.headers
        for headers in upstream.headers:
            assert headers["authorization"] == "Bearer s3cret"
            assert not {h for h in headers if h.startswith("x-")}
            assert set(headers) <= {
                "host",
                "accept",
                "accept-encoding",
                "connection",
                "user-agent",
                "content-type",
                "content-length",
                "authorization",
                "mcp-session-id",
                "mcp-protocol-version",
                "mcp-method",
                "mcp-name",
                "last-event-id",
            }

    run(go())


def test_header_credential_from_a_file_and_prefix(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("k-1\n")
    auth = m.UpstreamAuth(
        scheme="header", header="x-api-key", secret=m.SecretRef(source="file", name=str(secret))
    )
    upstream = Upstream(tools={"a": tool("a")})

    async def go() -> None:
        async with serving(upstream.app()) as url:
            federation = Federation([integration(url, prefix="kb", auth=auth)], env={})
            await federation.start()
            try:
                assert names(federation) == ["kb.a"]
                secret.write_text("k-2\n")  # rotated: read per request
                await federation.call("kb.a", {})
            finally:
                await federation.aclose()
        keys = [h.get("x-api-key") for h in upstream.headers]
        assert keys[0] == "k-1" and keys[-1] == "k-2"
        assert all("authorization" not in h for h in upstream.headers)

    run(go())


def test_a_missing_secret_is_reported_without_a_value() -> None:
    async def go() -> None:
        federation = Federation(
            [integration("http://127.0.0.1:9/mcp", auth=BEARER)], env={}, retry_initial=60
        )
        await federation.start()
        try:
            status = federation.status()["tools.docs"]
            assert not status["connected"]
            assert "DOCS_TOKEN" in status["last_error"]
            assert federation.tools() == []
            result = await federation.call("docs.anything", {})
            assert result.is_error
        finally:
            await federation.aclose()

    run(go())


# --- changes ----------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["2026-07-28", "handshake-era"])
def test_list_changed_adds_and_removes_tools(legacy: bool) -> None:
    upstream = Upstream(tools={"search": tool("search")}, legacy_only=legacy)
    changes: list[int] = []

    async def go() -> None:
        async with serving(upstream.app()) as url:
            federation = Federation([integration(url)], on_change=lambda: changes.append(1))
            await federation.start()
            try:
                assert names(federation) == ["docs.search"]
                if legacy:
                    await until(lambda: bool(upstream.legacy_sessions))
                else:
                    await until(lambda: bool(upstream.bus._listeners))
                before = len(changes)
                upstream.tools["summarize"] = tool("summarize", "Summarize")
                await upstream.changed()
                await until(lambda: names(federation) == ["docs.search", "docs.summarize"])
                assert len(changes) == before + 1
                del upstream.tools["search"]
                await upstream.changed()
                await until(lambda: names(federation) == ["docs.summarize"])
                result = await federation.call("docs.search", {})
                assert result.is_error
            finally:
                await federation.aclose()

    run(go())


def test_an_unreachable_upstream_comes_up_later() -> None:
    sock = free_socket()  # bound, not listening: connections are refused
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    upstream = Upstream(tools={"search": tool("search")})
    changes: list[int] = []

    async def go() -> None:
        federation = Federation(
            [integration(url)],
            on_change=lambda: changes.append(1),
            retry_initial=0.05,
            retry_max=0.2,
            health_interval=0.2,
        )
        await federation.start()
        try:
            assert federation.tools() == []
            status = federation.status()["tools.docs"]
            assert not status["connected"] and status["last_error"]
            async with serving(upstream.app(), sock):
                await until(lambda: names(federation) == ["docs.search"])
                assert federation.status()["tools.docs"]["connected"]
                assert changes
                assert not (await federation.call("docs.search", {})).is_error
            # The upstream went away: its tools are withdrawn, the error reported.
            await until(lambda: federation.tools() == [])
            assert not federation.status()["tools.docs"]["connected"]
        finally:
            await federation.aclose()

    run(go())


# --- hostile upstreams ---------------------------------------------------------------


def test_hostile_listing_is_bounded_and_skipped() -> None:
    deep: dict[str, Any] = {"type": "object"}
    node = deep
    for _ in range(40):
        node["properties"] = {"x": {"type": "object"}}
        node = node["properties"]["x"]
    listing = [
        tool("ok", "d" * 10_000),
        tool("has space"),
        tool("has/slash"),
        tool(""),
        tool("x" * 200),
        tool("deep", schema=deep),
        tool("giant", schema={"type": "object", "description": "y" * 100_000}),
        tool("bad_schema", schema={"type": "object", "properties": {"a": {"type": 12}}}),
        tool("ok"),  # listed twice
        *(tool(f"t{i:05d}") for i in range(3000)),
    ]
    upstream = Upstream()

    async def lister() -> types.ListToolsResult:
        return types.ListToolsResult(tools=listing)

    upstream.lister = lister

    async def go() -> None:
        async with serving(upstream.app()) as url:
            federation = Federation([integration(url)])
            await federation.start()
            try:
                got = federation.tools()
                assert len(got) == fed.MAX_TOOLS
                assert got[0].name == "docs.ok"
                description = got[0].description
                assert description is not None and len(description) == fed.MAX_DESCRIPTION
                skipped = {
                    s["name"]: s["reason"] for s in federation.status()["tools.docs"]["skipped"]
                }
                for name in ("has space", "has/slash", "", "deep", "giant"):
                    assert name in skipped, name
                assert "x" * fed.MAX_NAME in skipped
                assert "valid JSON Schema" in skipped["bad_schema"]
                assert "nested deeper" in skipped["deep"]
            finally:
                await federation.aclose()

    run(go())


def test_endless_pagination_is_cut() -> None:
    upstream = Upstream()
    pages = 0

    async def lister() -> types.ListToolsResult:
        nonlocal pages
        pages += 1
        return types.ListToolsResult(tools=[tool(f"p{pages}")], next_cursor=f"c{pages}")

    upstream.lister = lister

    async def go() -> None:
        async with serving(upstream.app()) as url:
            federation = Federation([integration(url)])
            await federation.start()
            try:
                assert len(federation.tools()) == fed.MAX_PAGES
                skipped = federation.status()["tools.docs"]["skipped"]
                assert any("cut" in s["reason"] for s in skipped)
            finally:
                await federation.aclose()

    run(go())


def test_hanging_calls_huge_results_and_errors_become_tool_errors() -> None:
    upstream = Upstream(tools={n: tool(n) for n in ("hang", "huge", "boom", "err", "ok")})
    release = asyncio.Event()

    async def handler(name: str, args: dict[str, Any]) -> types.CallToolResult:
        if name == "hang":
            await release.wait()
        if name == "huge":
            return types.CallToolResult(
                content=[types.TextContent(type="text", text="z" * 2_000_000)]
            )
        if name == "boom":
            raise RuntimeError("secret internal path /srv/app/db.py line 12")
        if name == "err":
            return types.CallToolResult(
                content=[types.TextContent(type="text", text="no such doc")], is_error=True
            )
        return types.CallToolResult(content=[types.TextContent(type="text", text="fine")])

    upstream.handler = handler

    async def go() -> None:
        async with serving(upstream.app()) as url:
            federation = Federation([integration(url, timeout="0.5")])
            await federation.start()
            try:
                hung = await federation.call("docs.hang", {})
                assert hung.is_error and "timed out after 0.5s" in hung.content[0].text  # type: ignore[union-attr]
                huge = await federation.call("docs.huge", {})
                assert huge.is_error
                boom = await federation.call("docs.boom", {})
                text = boom.content[0].text  # type: ignore[union-attr]
                assert "/srv/app" not in text and "secret" not in text
                err = await federation.call(
                    "docs.err", {}
                )  # the tool's own error is the agent's to read
                assert err.is_error and err.content[0].text == "no such doc"  # type: ignore[union-attr]
                ok = await federation.call("docs.ok", {})
                assert not ok.is_error
                assert federation.status()["tools.docs"]["connected"]
            finally:
                release.set()
                await federation.aclose()

    run(go())


def test_a_hanging_listing_is_not_fatal() -> None:
    upstream = Upstream()
    gate = asyncio.Event()

    async def lister() -> types.ListToolsResult:
        await gate.wait()
        return types.ListToolsResult(tools=[tool("late")])

    upstream.lister = lister

    async def go() -> None:
        async with serving(upstream.app()) as url:
            federation = Federation(
                [integration(url, timeout="0.3")], retry_initial=0.05, retry_max=0.1
            )
            await federation.start()
            try:
                assert federation.tools() == []
                assert federation.status()["tools.docs"]["last_error"] == "timed out"
                gate.set()
                await until(lambda: names(federation) == ["docs.late"])
            finally:
                await federation.aclose()

    run(go())


def test_breaker_opens_on_failures_and_closes_after_a_probe() -> None:
    upstream = Upstream(tools={"flaky": tool("flaky")})
    failing = True
    release = asyncio.Event()

    async def handler(name: str, args: dict[str, Any]) -> types.CallToolResult:
        if failing:
            await release.wait()
        return types.CallToolResult(content=[types.TextContent(type="text", text="up")])

    upstream.handler = handler

    async def go() -> None:
        nonlocal failing
        async with serving(upstream.app()) as url:
            spec = m.Breaker(failures=2, open_for=Decimal("0.2"))
            federation = Federation([integration(url, timeout="0.3", breaker=spec)])
            await federation.start()
            try:
                for _ in range(2):
                    assert "timed out" in (await federation.call("docs.flaky", {})).content[0].text  # type: ignore[union-attr]
                assert federation.status()["tools.docs"]["breaker"] == "open"
                seen = len(upstream.calls)
                refused = await federation.call("docs.flaky", {})
                assert "circuit is open" in refused.content[0].text  # type: ignore[union-attr]
                assert len(upstream.calls) == seen  # refused without reaching the upstream
                failing = False
                await until(lambda: federation.status()["tools.docs"]["breaker"] == "half-open")
                assert not (await federation.call("docs.flaky", {})).is_error
                assert federation.status()["tools.docs"]["breaker"] == "closed"
            finally:
                release.set()
                await federation.aclose()

    run(go())


# --- pure parts --------------------------------------------------------------------


def test_the_shared_breaker_has_the_semantics_federation_relies_on() -> None:
    """Federation uses `mcpdsl.serve.breaker` (the REST upstreams' breaker): the scenario
    the federation's own breaker was tested with, on the shared pure functions."""
    n, t = 3, 10.0
    state = br.BreakerState()

    def call(now: float, ok: bool) -> bool:
        nonlocal state
        state, ticket = br.admit(state, now, t)
        if ticket is None:
            return False
        state = br.settle(state, ticket, ok=ok, now=now, failures=n, open_for=t)
        return True

    assert call(0, False) and call(0, False) and call(0, True)  # consecutive failures only
    for _ in range(3):
        assert call(0, False)
    assert br.state_at(state, 0, t) == "open" and not call(0, True)
    assert br.state_at(state, 10, t) == "half-open"
    state, probe = br.admit(state, 10, t)
    assert probe == "probe" and br.admit(state, 10, t)[1] is None  # exactly one probe
    state = br.settle(state, probe, ok=False, now=10, failures=n, open_for=t)
    assert br.state_at(state, 10, t) == "open"
    state, probe = br.admit(state, 20, t)
    assert probe == "probe"
    state = br.abandon(state, probe)  # a cancelled probe gives its slot back
    assert call(20, True)
    assert br.state_at(state, 20, t) == "closed" and call(20, True)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=30,
)


@given(json_values, st.text(max_size=300))
def test_federate_never_raises_and_keeps_only_checked_tools(schema: Any, name: str) -> None:
    try:
        listed = types.Tool.model_construct(name=name, input_schema=schema, description=None)
    except Exception:  # pragma: no cover
        return
    kept, skipped = fed.federate(integration("http://127.0.0.1:9/mcp"), [listed])
    assert len(kept) + len(skipped) == 1
    for t in kept:
        assert t.name == f"docs.{name}"
        assert fed.check_schema(t.input_schema) is None
        assert isinstance(t.input_schema, dict) and t.input_schema.get("type") == "object"
