"""The gateway's federated path in process: reloads, errors, the federation's lifecycle, schemas.

The process test (`test_mcp_federated.py`) runs the real federation against a
real upstream; here a `FakeFederation` (the `FederatedCaller` seam) makes the
cases that depend on timing there exact: a reload that removes or changes an
integration while its old connection still offers the tools, upstream failures
of every kind, and the gateway following reloads with new federations.  The
argument checks of `mcpdsl.serve.schemas` are tested against hostile schemas:
a regular expression that would never end, a remote `$ref` (never fetched),
exponential combinators (the step budget), hashed `enum`/`uniqueItems`.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from mcp_support import AGENTS, TestIdp

from mcpdsl.engine import Engine
from mcpdsl.evaluate.checkrequest import principal_reader
from mcpdsl.evaluate.tools import MAX_ARGS_BYTES, InvalidArguments
from mcpdsl.ir import model as m
from mcpdsl.ir.door import claims
from mcpdsl.serve import federation as fed
from mcpdsl.serve.gateway import Gateway, connection
from mcpdsl.serve.oauth import Identity
from mcpdsl.serve.schemas import MAX_VALIDATION_STEPS, arguments_validator, check_arguments
from mcpdsl.serve.state import ServerState

RESOURCE = "http://mcp.test/mcp"

TREE = """\
package gw

provider agents {{
  issuer    "{agents}"
  jwks      file "keys/idp.jwks.json"
  audiences ["{resource}"]
  type      agent
}}
{integration}
policy access {{
  default deny
  {rules}
}}
"""

DOCS = """
integration docs-tools {{
  upstream mcp "{url}" prefix "docs"
  timeout  {timeout}
}}
"""
RULES = """search: allow agent alpha -> tool "docs.search" when args.q != "no"
  other: allow agent alpha -> tool "docs.other\""""


def write(root: Path, url: str = "http://127.0.0.1:9/mcp", timeout: str = "5s",
          present: bool = True) -> None:  # fmt: skip
    integration = DOCS.format(url=url, timeout=timeout) if present else ""
    text = TREE.format(
        agents=AGENTS, resource=RESOURCE, integration=integration,
        rules=RULES if present else "",
    )  # fmt: skip
    (root / "main.mcp").write_text(text)


SEARCH = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}


class FakeFederation:
    """The `FederatedCaller` seam: tools from `federate`, scripted answers, recorded calls."""

    def __init__(self, integrations: tuple[m.Integration, ...] = ()) -> None:
        self.integrations = integrations
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answer: types.CallToolResult | Exception = types.CallToolResult(
            content=[types.TextContent(type="text", text="found")],
            structured_content={"hits": 1},
        )
        self.started = self.closed = False
        self._tools: list[fed.FederatedTool] = []
        for integration in integrations:
            listed = [types.Tool(name="search", input_schema=SEARCH),
                      types.Tool(name="other", input_schema={"type": "object"})]  # fmt: skip
            self._tools += fed.federate(integration, listed)[0]

    def tools(self) -> list[fed.FederatedTool]:
        return sorted(self._tools, key=lambda t: t.name)

    def tool(self, name: str) -> fed.FederatedTool | None:
        return next((t for t in self._tools if t.name == name), None)

    async def proxy(self, name: str, args: dict[str, Any]) -> types.CallToolResult:
        self.calls.append((name, args))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def breaker_state(self, integration: str) -> str | None:
        return "open"

    def status(self) -> dict[str, dict[str, Any]]:
        return {i.qualified: {"tools": 2, "connected": True} for i in self.integrations}

    async def start(self) -> None:
        self.started = True

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, Engine]]:
    idp = TestIdp()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "idp.jwks.json").write_text(json.dumps(idp.jwks()))
    write(tmp_path)
    engine = Engine.load(str(tmp_path))
    yield tmp_path, engine
    engine.close()


def alpha(engine: Engine) -> Identity:
    provider = engine.project.providers[0]
    principal, auth = principal_reader(claims(provider))({"iss": AGENTS, "sub": "alpha"})
    return Identity(principal, auth, provider.qualified, provider.issuer, "alpha", None)


def gateway_with(engine: Engine, federation: FakeFederation) -> Gateway:
    return Gateway(ServerState(engine), resource=RESOURCE, accept=("agents",),
                   federation=federation)  # fmt: skip


def reload(engine: Engine) -> None:
    result = engine.reload()
    assert result.ok, result


def counted(gw: Gateway, tool: str, result: str) -> float:
    value = gw.state.metrics.tool_calls.labels(tool, result)._value.get()
    return float(value)


# ------------------------------------------------------------------ calls


def test_a_federated_call_is_decided_checked_and_proxied(tree: tuple[Path, Engine]) -> None:
    _, engine = tree
    fake = FakeFederation(tuple(i for i in engine.project.integrations))
    gw = gateway_with(engine, fake)
    me = alpha(engine)
    assert [t.name for t in gw.list_for(me)] == ["docs.other", "docs.search"]
    got = asyncio.run(gw.call(me, "docs.search", {"q": "x"}, None))
    assert not got.is_error and got.structured_content == {"hits": 1}
    assert fake.calls == [("docs.search", {"q": "x"})]
    denied = asyncio.run(gw.call(me, "docs.search", {"q": "no"}, None))  # an args.* rule
    assert denied.is_error and fake.calls == [("docs.search", {"q": "x"})]
    with pytest.raises(MCPError) as caught:
        asyncio.run(gw.call(me, "docs.search", {"q": 1}, None))
    assert caught.value.error.data == {"field": "q"}
    assert gw.state.metrics.breaker_open.labels("docs.search")._value.get() == 2  # open


@pytest.mark.parametrize(
    ("error", "reason", "kind"),
    [
        (fed.CallFailed("timeout", "upstream MCP server docs timed out after 5s"),
         "upstream MCP server docs timed out after 5s", "timeout"),
        (fed.CallFailed("breaker-open", "upstream MCP server docs is failing; its circuit is open"),
         "upstream MCP server docs is failing; its circuit is open", "breaker-open"),
        (RuntimeError("Traceback: secret internals"), "the upstream MCP server failed", "internal"),
    ],
)  # fmt: skip
def test_upstream_failures_are_tool_errors_with_a_safe_reason(
    tree: tuple[Path, Engine], error: Exception, reason: str, kind: str
) -> None:
    _, engine = tree
    fake = FakeFederation(tuple(engine.project.integrations))
    fake.answer = error
    gw = gateway_with(engine, fake)
    got = asyncio.run(gw.call(alpha(engine), "docs.search", {"q": "x"}, None))
    assert got.is_error and got.content[0].text == reason  # type: ignore[union-attr]
    assert "secret" not in got.model_dump_json()
    assert gw.state.metrics.tool_upstream_errors.labels("docs.search", kind)._value.get() == 1
    assert counted(gw, "docs.search", "upstream_error") == 1


def test_the_tools_own_error_is_passed_on(tree: tuple[Path, Engine]) -> None:
    _, engine = tree
    fake = FakeFederation(tuple(engine.project.integrations))
    fake.answer = types.CallToolResult(
        content=[types.TextContent(type="text", text="no such page")], is_error=True
    )
    gw = gateway_with(engine, fake)
    got = asyncio.run(gw.call(alpha(engine), "docs.search", {"q": "x"}, None))
    assert got.is_error and got.content[0].text == "no such page"  # type: ignore[union-attr]
    assert counted(gw, "docs.search", "tool_error") == 1


# ------------------------------------------------------------------ reloads


def test_a_removed_integration_is_withdrawn_at_once(tree: tuple[Path, Engine]) -> None:
    root, engine = tree
    fake = FakeFederation(tuple(engine.project.integrations))  # still offers the old tools
    gw = gateway_with(engine, fake)
    me = alpha(engine)
    assert [t.name for t in gw.list_for(me)] == ["docs.other", "docs.search"]
    write(root, present=False)
    reload(engine)
    assert gw.list_for(me) == []
    got = asyncio.run(gw.call(me, "docs.search", {"q": "x"}, None))
    assert got.is_error
    text = got.content[0].text  # type: ignore[union-attr]
    assert text == (
        "tool `docs.search` is withdrawn: integration `docs-tools` is no longer in the policy"
        " in force"
    )
    assert fake.calls == [] and counted(gw, "docs.search", "withdrawn") == 1


@pytest.mark.parametrize("change", [{"url": "http://127.0.0.1:10/mcp"}, {"timeout": "7s"}])
def test_a_changed_connection_is_withdrawn_until_it_reconnects(
    tree: tuple[Path, Engine], change: dict[str, str]
) -> None:
    root, engine = tree
    fake = FakeFederation(tuple(engine.project.integrations))
    gw = gateway_with(engine, fake)
    write(root, **change)  # type: ignore[arg-type]
    reload(engine)
    me = alpha(engine)
    assert gw.list_for(me) == []
    got = asyncio.run(gw.call(me, "docs.search", {"q": "x"}, None))
    assert "withdrawn until integration `docs-tools` reconnects" in got.content[0].text  # type: ignore[union-attr]
    assert fake.calls == []


def test_the_gateway_starts_follows_and_stops_its_federation(tree: tuple[Path, Engine]) -> None:
    root, engine = tree
    made: list[FakeFederation] = []

    def federate(integrations: tuple[m.Integration, ...], on_change: Any) -> FakeFederation:
        made.append(FakeFederation(integrations))
        return made[-1]

    gw = Gateway(ServerState(engine), resource=RESOURCE, accept=("agents",),
                 federate=federate, follow_interval=0.01)  # fmt: skip

    async def go() -> None:
        async with gw.run(1 << 20):
            assert len(made) == 1 and made[0].started and gw.federation is made[0]
            assert [i.name for i in made[0].integrations] == ["docs-tools"]
            assert gw.upstream_status() == {"gw.docs-tools": {"tools": 2, "connected": True}}
            await asyncio.sleep(0.05)
            assert len(made) == 1  # nothing changed: no new federation
            write(root, url="http://127.0.0.1:10/mcp")
            reload(engine)
            async with asyncio.timeout(30):
                while gw.federation is made[0]:
                    await asyncio.sleep(0.01)
            assert made[0].closed and made[1].started
            assert made[1].integrations[0].url == "http://127.0.0.1:10/mcp"
            me = alpha(engine)
            assert [t.name for t in gw.list_for(me)] == ["docs.other", "docs.search"]
            write(root, present=False)
            reload(engine)
            async with asyncio.timeout(30):
                while gw.federation is not None:
                    await asyncio.sleep(0.01)
            assert made[1].closed and len(made) == 2  # no upstream mcp: no federation
        assert gw.federation is None

    asyncio.run(go())


def test_connection_ignores_what_needs_no_reconnect() -> None:
    a = m.Integration(package="p", name="d", method="POST", url="http://u/mcp", upstream="mcp",
                      prefix="d")  # fmt: skip
    limited = a.model_copy(
        update={"limit": m.Limit(rate=m.Rate(amount=1, per=1)), "description": "x"}
    )
    assert connection(limited) == connection(a)
    assert connection(a.model_copy(update={"prefix": "e"})) != connection(a)


# ------------------------------------------------------------------ schemas


def check(schema: dict[str, Any], args: Any) -> dict[str, Any]:
    assert fed.check_schema(schema) is None
    return check_arguments(schema, args, arguments_validator(schema))


def test_regular_expressions_are_not_run() -> None:
    """`(a+)+$` on 30,000 characters would take longer than the universe has left."""
    schema = {"type": "object", "properties": {"q": {"type": "string", "pattern": "^(a+)+$"}},
              "patternProperties": {"^(b+)+$": {"type": "string"}},
              "additionalProperties": False}  # fmt: skip
    assert check(schema, {"q": "a" * 30_000 + "!"}) == {"q": "a" * 30_000 + "!"}
    assert check(schema, {"b" * 5_000 + "!": "x"})  # additionalProperties left to the upstream


class _Hits(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = json.dumps({"type": "string"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


def test_a_remote_ref_is_never_fetched() -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Hits)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/schema.json"
        schema = {"type": "object", "properties": {"q": {"$ref": url}}}
        with pytest.raises(InvalidArguments, match="cannot be applied"):
            check(schema, {"q": 1})
        assert _Hits.hits == []
    finally:
        server.shutdown()
        server.server_close()


def test_exponential_schemas_stop_at_the_budget() -> None:
    branch = {"$ref": "#/$defs/t"}
    schema = {"type": "object", "properties": {"q": branch},
              "$defs": {"t": {"type": "array", "items": {"anyOf": [branch, branch, branch]}}}}  # fmt: skip
    nested: Any = 1
    for _ in range(14):
        nested = [nested]
    with pytest.raises(InvalidArguments, match="too costly"):
        check(schema, {"q": nested})
    assert MAX_VALIDATION_STEPS <= 100_000


def test_self_referencing_schemas_are_refused() -> None:
    schema = {"type": "object", "properties": {"q": {"$ref": "#/$defs/x"}},
              "$defs": {"x": {"$ref": "#/$defs/x"}}}  # fmt: skip
    with pytest.raises(InvalidArguments):
        check(schema, {"q": 1})


def test_hashed_comparisons_keep_json_equality() -> None:
    unique = {"type": "object", "properties": {"a": {"type": "array", "uniqueItems": True}}}
    with pytest.raises(InvalidArguments, match="non-unique"):
        check(unique, {"a": [1, 1.0]})
    with pytest.raises(InvalidArguments, match="non-unique"):
        check(unique, {"a": [{"x": [1, 2]}, {"x": [1.0, 2]}]})
    assert check(unique, {"a": [1, True, "1", None, 0, False]})  # true is not 1
    many = {"a": [{"k": i} for i in range(4000)]}
    assert check(unique, many) == many  # hashed: not 16 million comparisons
    enum = {"type": "object",
            "properties": {"e": {"type": "array", "items": {"enum": [f"v{i}" for i in range(3000)]}}}}  # fmt: skip
    assert check(enum, {"e": ["v1"] * 5000})
    with pytest.raises(InvalidArguments) as caught:
        check(enum, {"e": ["v1", "zz"]})
    assert caught.value.field == "e"
    const = {"type": "object", "properties": {"c": {"const": {"a": [1, 2.0]}}}}
    assert check(const, {"c": {"a": [1.0, 2]}})


@pytest.mark.parametrize(
    ("args", "field"),
    [({}, "q"), ({"q": 1}, "q"), ({"q": "x", "z": 1}, "z"), ([], ""), ({"q": "x" * MAX_ARGS_BYTES}, "")],
)  # fmt: skip
def test_the_offending_argument_is_named(args: Any, field: str) -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"],
              "additionalProperties": False}  # fmt: skip
    with pytest.raises(InvalidArguments) as caught:
        check(schema, args)
    assert caught.value.field == field
