"""Federated MCP servers behind a real `mcpdsl serve` process, end to end.

An upstream MCP server (the SDK's low-level `Server` under uvicorn, on a free
loopback port, in a thread) is named by `integration docs-tools { upstream mcp
... prefix "docs" auth bearer env "DOCS_TOKEN" }`; the SDK's client talks to the
gateway with agents' tokens signed by a test key.  What is checked: the
namespaced tools are listed per caller by the policy, a call is proxied
(arguments arrive, the result returns), arguments are checked against the schema
the upstream listed, a denied call never reaches the upstream, the upstream sees
the gateway's `DOCS_TOKEN` and never an agent's token, the integration's limit
applies, a tool the upstream adds at run time is in the next `tools/list`, every
call is in the verifiable decision log, and a reload that removes the integration
withdraws its tools at once.

Then the `server` block path: a signed build of a tree whose `server { mcp
resource ... accept [...] }` enables the gateway, served with no MCP flags.

Waits are on conditions, bounded by a generous deadline; no timing is asserted.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_support import AGENTS, TestIdp
from mcp_upstream import ThreadedUpstream, Upstream, tool
from server_process import ServerProcess, server_env, start_server

DOCS_TOKEN = "docs-s3cret-token"
RESOURCE = "http://mcp.test/mcp"
DEADLINE = 60.0  # a bound for a wait that takes well under a second, not an assertion

TREE = """\
package gw

provider agents {{
  issuer    "{agents}"
  jwks      file "keys/idp.jwks.json"
  audiences ["{resource}"]
  skew      30s
  type      agent
}}

integration docs-tools {{
  upstream mcp "{url}" prefix "docs"
  auth     bearer env "DOCS_TOKEN"
  timeout  5s
}}

integration lim-tools {{
  upstream mcp "{url}" prefix "lim"
  auth     bearer env "DOCS_TOKEN"
  limit    1/m burst 2
}}
{extra}
policy access {{
  default deny

  search:   allow agent [alpha, beta] -> tool "docs.search"
  no-beta:  deny agent beta -> tool "docs.search"
  fetch:    allow agent alpha -> tool "docs.fetch" unless args.id == "secret"
  later:    allow agent alpha -> tool "docs.later"
  limited:  allow agent lima -> tool "lim.search"
}}
"""

SEARCH = {
    "type": "object",
    "properties": {"q": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
    "required": ["q"],
    "additionalProperties": False,
}
FETCH = {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}


def write_tree(root: Path, url: str, idp: TestIdp, extra: str = "") -> Path:
    (root / "keys").mkdir(parents=True, exist_ok=True)
    (root / "keys" / "idp.jwks.json").write_text(json.dumps(idp.jwks()))
    text = TREE.format(agents=AGENTS, resource=RESOURCE, url=url, extra=extra)
    (root / "main.mcp").write_text(text)
    return root


def docs_upstream() -> Upstream:
    return Upstream(
        tools={
            "search": tool("search", "Search the docs", SEARCH),
            "fetch": tool("fetch", "Fetch a page", FETCH),
        }
    )


# ------------------------------------------------------------------ the client


async def _session(url: str, token: str, work: Any) -> Any:
    async with (
        httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=30) as client,
        streamable_http_client(url + "/mcp", http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return await work(session)


def run(url: str, token: str, work: Any) -> Any:
    return asyncio.run(_session(url, token, work))


def names(url: str, token: str) -> list[str]:
    async def work(session: ClientSession) -> list[str]:
        return [t.name for t in (await session.list_tools()).tools]

    return list(run(url, token, work))


def call(url: str, token: str, name: str, args: dict[str, Any]) -> types.CallToolResult:
    async def work(session: ClientSession) -> types.CallToolResult:
        return await session.call_tool(name, args)

    result = run(url, token, work)
    assert isinstance(result, types.CallToolResult)
    return result


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def metric(proc: ServerProcess, sample: str) -> float:
    """The value of one sample (`name{labels}`, labels sorted as the exposition writes them)."""
    text = proc.request("GET", "/metrics")[1].decode()
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return 0.0


def mcpdsl(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mcpdsl", *args],
        cwd=cwd, env=server_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


# ------------------------------------------------------------------ one gateway


@pytest.fixture(scope="module")
def idp() -> TestIdp:
    return TestIdp()


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedUpstream]:
    with ThreadedUpstream(docs_upstream()) as up:
        yield up


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, idp: TestIdp, upstream: ThreadedUpstream
) -> Iterator[tuple[ServerProcess, Path]]:
    root = write_tree(tmp_path_factory.mktemp("tree"), upstream.url, idp)
    log = root.parent / "decisions.log"
    proc = start_server(
        root, "--mcp-resource", RESOURCE, "--mcp-accept", "agents",
        "--decision-log", str(log), "--no-watch",
        env={"DOCS_TOKEN": DOCS_TOKEN},
    )  # fmt: skip
    try:
        yield proc, log
    finally:
        proc.stop()


def test_federated_tools_are_listed_per_caller(
    gateway: tuple[ServerProcess, Path], idp: TestIdp
) -> None:
    proc, _ = gateway
    # Started before the server listened: the first listing already has the tools.
    assert names(proc.url, idp.agent("alpha")) == ["docs.fetch", "docs.search"]
    assert names(proc.url, idp.agent("beta")) == []  # its allow is certainly denied
    assert names(proc.url, idp.agent("gamma")) == []  # no rule at all
    assert names(proc.url, idp.agent("lima")) == ["lim.search"]


def test_the_upstream_schema_and_description_are_listed(
    gateway: tuple[ServerProcess, Path], idp: TestIdp
) -> None:
    proc, _ = gateway

    async def work(session: ClientSession) -> dict[str, Any]:
        return {t.name: t for t in (await session.list_tools()).tools}

    listed = run(proc.url, idp.agent("alpha"), work)
    assert listed["docs.search"].description == "Search the docs"
    assert listed["docs.search"].input_schema == SEARCH


def test_an_allowed_call_is_proxied_with_the_gateway_credential(
    gateway: tuple[ServerProcess, Path], idp: TestIdp, upstream: ThreadedUpstream
) -> None:
    proc, _ = gateway
    token = idp.agent("alpha")
    before = len(upstream.upstream.calls)
    result = call(proc.url, token, "docs.search", {"q": "breaker", "limit": 3})
    assert not result.is_error, result
    assert result.structured_content == {"echo": {"q": "breaker", "limit": 3}}
    assert upstream.upstream.calls[before:] == [("search", {"q": "breaker", "limit": 3})]
    # The upstream sees the gateway's credential on every request, never an agent's token.
    assert upstream.upstream.headers
    for headers in upstream.upstream.headers:
        assert headers.get("authorization") == f"Bearer {DOCS_TOKEN}"
        assert token not in json.dumps(headers)


def test_denied_calls_never_reach_the_upstream(
    gateway: tuple[ServerProcess, Path], idp: TestIdp, upstream: ThreadedUpstream
) -> None:
    proc, _ = gateway
    before = len(upstream.upstream.calls)
    denied = call(proc.url, idp.agent("beta"), "docs.search", {"q": "x"})
    assert denied.is_error and denied.content[0].text == "denied by access/no-beta"  # type: ignore[union-attr]
    nobody = call(proc.url, idp.agent("gamma"), "docs.search", {"q": "x"})
    assert nobody.is_error
    assert nobody.content[0].text == "denied: no rule allows this request"  # type: ignore[union-attr]
    secret = call(proc.url, idp.agent("alpha"), "docs.fetch", {"id": "secret"})  # args.* rule
    assert secret.is_error and secret.content[0].text == "denied: no rule allows this request"  # type: ignore[union-attr]
    assert len(upstream.upstream.calls) == before
    fetched = call(proc.url, idp.agent("alpha"), "docs.fetch", {"id": "p-1"})
    assert not fetched.is_error
    assert upstream.upstream.calls[before:] == [("fetch", {"id": "p-1"})]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({}, "q"),  # required
        ({"q": 3}, "q"),  # type
        ({"q": "x", "limit": 0}, "limit"),  # minimum
        ({"q": "x", "page": 2}, "page"),  # additionalProperties
        ({"q": "x" * 70_000}, None),  # the gateway's own size bound
    ],
)
def test_arguments_are_checked_against_the_upstream_schema(
    gateway: tuple[ServerProcess, Path],
    idp: TestIdp,
    upstream: ThreadedUpstream,
    args: dict[str, Any],
    field: str | None,
) -> None:
    proc, _ = gateway
    before = len(upstream.upstream.calls)

    async def work(session: ClientSession) -> Any:
        with pytest.raises(MCPError) as caught:
            await session.call_tool("docs.search", args)
        return caught.value

    error = run(proc.url, idp.agent("alpha"), work)
    assert error.error.code == types.INVALID_PARAMS
    assert error.error.message.startswith("invalid arguments")
    data = error.error.data
    assert (data or {}).get("field") == field
    assert len(upstream.upstream.calls) == before


def test_the_integration_limit_applies_to_federated_tools(
    gateway: tuple[ServerProcess, Path], idp: TestIdp, upstream: ThreadedUpstream
) -> None:
    proc, _ = gateway
    token = idp.agent("lima")
    results = [call(proc.url, token, "lim.search", {"q": str(n)}) for n in range(3)]
    assert [r.is_error for r in results] == [False, False, True]
    assert results[2].content[0].text == "rate limited by integration `lim-tools`"  # type: ignore[union-attr]
    assert [c for c in upstream.upstream.calls if c[1].get("q") in ("0", "1", "2")] == [
        ("search", {"q": "0"}),
        ("search", {"q": "1"}),
    ]


def test_unknown_federated_tools_are_protocol_errors(
    gateway: tuple[ServerProcess, Path], idp: TestIdp
) -> None:
    proc, _ = gateway

    async def work(session: ClientSession) -> Any:
        with pytest.raises(MCPError) as caught:
            await session.call_tool("docs.nothing", {})
        return caught.value

    error = run(proc.url, idp.agent("alpha"), work)
    assert error.error.code == types.INVALID_PARAMS
    assert "unknown tool" in error.error.message


def test_a_tool_the_upstream_adds_is_in_the_next_listing(
    gateway: tuple[ServerProcess, Path], idp: TestIdp, upstream: ThreadedUpstream
) -> None:
    proc, _ = gateway
    token = idp.agent("alpha")
    assert "docs.later" not in names(proc.url, token)
    upstream.upstream.tools["later"] = tool("later", "Added at run time")
    upstream.changed()
    wait_until(lambda: "docs.later" in names(proc.url, token), "docs.later to be listed")
    result = call(proc.url, token, "docs.later", {})
    assert not result.is_error
    assert upstream.upstream.calls[-1] == ("later", {})


def test_status_metrics_and_the_decision_log(
    gateway: tuple[ServerProcess, Path], idp: TestIdp, tmp_path: Path
) -> None:
    proc, log = gateway
    call(proc.url, idp.agent("alpha"), "docs.search", {"q": "audit"})
    call(proc.url, idp.agent("beta"), "docs.search", {"q": "audit"})
    status, body = proc.json("GET", "/v1/status")
    assert status == 200
    upstreams = body["mcp_upstreams"]
    assert set(upstreams) == {"gw.docs-tools", "gw.lim-tools"}
    assert upstreams["gw.docs-tools"]["connected"] is True
    assert upstreams["gw.docs-tools"]["prefix"] == "docs"
    assert DOCS_TOKEN not in json.dumps(body)
    assert metric(proc, 'mcpdsl_mcp_tool_calls_total{result="ok",tool="docs.search"}') >= 1
    assert metric(proc, 'mcpdsl_mcp_tool_calls_total{result="denied",tool="docs.search"}') >= 1
    assert metric(proc, 'mcpdsl_mcp_federated_tools{integration="gw.docs-tools"}') >= 2
    assert metric(proc, 'mcpdsl_mcp_tool_call_seconds_count{tool="docs.search"}') >= 2

    def lines() -> list[dict[str, Any]]:
        raw = log.read_text().splitlines() if log.exists() else []
        return [json.loads(line) for line in raw]

    def audited() -> list[dict[str, Any]]:
        return [
            line for line in lines()
            if line.get("tool") == "docs.search" and line.get("transport") == "mcp"
        ]  # fmt: skip

    wait_until(lambda: len([a for a in audited() if a.get("result") == "denied"]) >= 1, "the log")
    ok = next(a for a in audited() if a.get("result") == "ok")
    assert ok["upstream"]["mcp"] == "gw.docs-tools" and ok["upstream"]["is_error"] is False
    assert ok["principal"] == "agent:alpha" and ok["args_digest"].startswith("sha256:")
    assert DOCS_TOKEN not in log.read_text()
    copy = tmp_path / "decisions.log"
    copy.write_bytes(log.read_bytes())
    out = mcpdsl("logs", "verify", str(copy), cwd=tmp_path)
    assert "chain intact" in out, out


# ------------------------------------------------------------------ reloads


def test_a_reload_that_removes_the_integration_withdraws_its_tools(
    tmp_path: Path, idp: TestIdp
) -> None:
    with ThreadedUpstream(docs_upstream()) as up:
        root = write_tree(tmp_path / "tree", up.url, idp)
        proc = start_server(
            root, "--mcp-resource", RESOURCE, "--mcp-accept", "agents",
            env={"DOCS_TOKEN": DOCS_TOKEN},
        )  # fmt: skip
        try:
            token = idp.agent("alpha")
            assert names(proc.url, token) == ["docs.fetch", "docs.search"]
            digest = proc.json("GET", "/v1/status")[1]["policy"]["digest"]
            text = (root / "main.mcp").read_text()
            start = text.index("integration docs-tools {")
            end = text.index("}", start) + 1
            reduced = "\n".join(  # the integration and the rules naming its tools
                line for line in (text[:start] + text[end:]).splitlines()
                if 'tool "docs.' not in line
            )  # fmt: skip
            (root / "main.mcp").write_text(reduced)
            wait_until(
                lambda: proc.json("GET", "/v1/status")[1]["policy"]["digest"] != digest,
                "the reload",
            )
            before = len(up.upstream.calls)
            assert names(proc.url, token) == []  # hidden from the first listing after it
            try:
                refused = call(proc.url, token, "docs.search", {"q": "x"})
            except MCPError as exc:  # the federation already follows: no such tool
                assert exc.error.code == types.INVALID_PARAMS
            else:  # still connected: withdrawn, with the reason
                assert refused.is_error
                assert "withdrawn" in refused.content[0].text  # type: ignore[union-attr]
            assert len(up.upstream.calls) == before  # never routed to the removed integration
            wait_until(
                lambda: (
                    set(proc.json("GET", "/v1/status")[1].get("mcp_upstreams", {}))
                    == {"gw.lim-tools"}
                ),
                "the federation to follow the policy",
            )
            # Put back: the federation reconnects and the tools come back.
            (root / "main.mcp").write_text(text)
            wait_until(
                lambda: names(proc.url, token) == ["docs.fetch", "docs.search"],
                "the tools to come back",
            )
            assert not call(proc.url, token, "docs.search", {"q": "back"}).is_error
            assert proc.stop() == 0  # SIGTERM: drained, the federation closed, a clean exit
            assert "mcpdsl serve: stopped" in proc.stderr()
        finally:
            proc.stop()


# ------------------------------------------------------------------ the server block


SERVER_BLOCK = """
server gw {{
  image    "ghcr.io/acme/mcpdsl:1.0"
  replicas 1
  mcp resource "{resource}" accept [agents]
}}
"""


def test_a_signed_build_serves_the_gateway_its_server_block_declares(
    tmp_path: Path, idp: TestIdp
) -> None:
    resource = "https://mcp.test/mcp"
    with ThreadedUpstream(docs_upstream()) as up:
        tree = write_tree(tmp_path / "tree", up.url, idp, SERVER_BLOCK.format(resource=resource))
        text = (tree / "main.mcp").read_text().replace(RESOURCE, resource)
        (tree / "main.mcp").write_text(text)
        out = tmp_path / "build"
        mcpdsl("build", str(tree), "--out", str(out), cwd=tmp_path)
        mcpdsl("keys", "new", "--id", "k1", "--out", str(tmp_path / "keydir"), cwd=tmp_path)
        ring = tmp_path / "ring.json"
        mcpdsl("keys", "add", "--keyring", str(ring), str(tmp_path / "keydir"), cwd=tmp_path)
        mcpdsl("sign", str(out), "--key", str(tmp_path / "keydir"), cwd=tmp_path)
        # The build has no copy of the tree's key file: the IR carries the keys, the
        # server block travels beside it, and both are signed (in the manifest).
        assert not (out / "keys").exists()
        manifest = json.loads((out / "manifest.json").read_text())
        assert "ir/server.json" in {a["path"] for a in manifest["artifacts"]}
        ir = json.loads((out / "ir" / "project.json").read_text())
        assert "servers" not in ir
        (provider,) = ir["providers"]
        assert json.loads(provider["jwks_keys"]) == idp.jwks()

        # Served from elsewhere, with no MCP flag: the gateway comes from the block.
        proc = start_server(
            out, "--trust", str(ring), "--no-watch", cwd=tmp_path,
            env={"DOCS_TOKEN": DOCS_TOKEN},
        )  # fmt: skip
        try:
            token = idp.token({"iss": AGENTS, "sub": "alpha", "aud": resource})
            assert names(proc.url, token) == ["docs.fetch", "docs.search"]
            result = call(proc.url, token, "docs.search", {"q": "built"})
            assert result.structured_content == {"echo": {"q": "built"}}
            status, meta = proc.json("GET", "/.well-known/oauth-protected-resource/mcp")
            assert status == 200 and meta["resource"] == resource
            # A token for another audience is refused: the block's resource is in force.
            wrong = idp.token({"iss": AGENTS, "sub": "alpha", "aud": RESOURCE})
            code, _ = proc.request(
                "POST", "/mcp", b"{}", headers={"authorization": f"Bearer {wrong}"}
            )
            assert code == 401
        finally:
            proc.stop()
