"""The MCP gateway end to end: the SDK's own client against a real `mcpdsl serve` process.

A test IdP key signs the tokens (its JWKS is a file of the tree), a loopback
REST upstream records what it receives, the server runs with
`--mcp-resource/--mcp-accept` and a decision log; afterwards `mcpdsl logs
verify` accepts the log.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_support import AGENTS, PEOPLE, RESOURCE, RecordingUpstream, TestIdp, write_tree
from server_process import ServerProcess, server_env, start_server


@pytest.fixture(scope="module")
def idp() -> TestIdp:
    return TestIdp()


@pytest.fixture(scope="module")
def upstream() -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as up:
        yield up


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, idp: TestIdp, upstream: RecordingUpstream
) -> Iterator[tuple[ServerProcess, Path]]:
    root = write_tree(tmp_path_factory.mktemp("tree"), upstream.url, idp)
    log = root.parent / "decisions.log"
    proc = start_server(
        root, "--mcp-resource", RESOURCE, "--mcp-accept", "agents,people",
        "--decision-log", str(log), "--no-watch",
    )  # fmt: skip
    try:
        yield proc, log
    finally:
        proc.stop()


async def _session(url: str, token: str | None, work: Any) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as client,
        streamable_http_client(url + "/mcp", http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return await work(session)


def run(url: str, token: str | None, work: Any) -> Any:
    return asyncio.run(_session(url, token, work))


async def _names(session: ClientSession) -> list[str]:
    return [t.name for t in (await session.list_tools()).tools]


def test_tools_are_listed_per_caller(server: tuple[ServerProcess, Path], idp: TestIdp) -> None:
    proc, _ = server
    assert run(proc.url, idp.agent("alpha"), _names) == ["crm.lookup", "docs.search"]
    assert run(proc.url, idp.agent("beta"), _names) == []  # its one allow is certainly denied
    assert run(proc.url, idp.agent("delta"), _names) == ["docs.search"]
    assert run(proc.url, idp.person("fay", ["finance"]), _names) == ["billing.invoice"]
    assert run(proc.url, idp.person("sam", ["support"]), _names) == ["crm.lookup"]


def test_schemas_come_from_the_policy(server: tuple[ServerProcess, Path], idp: TestIdp) -> None:
    proc, _ = server

    async def tools(session: ClientSession) -> Any:
        return {t.name: (t.description, t.input_schema) for t in (await session.list_tools()).tools}

    got = run(proc.url, idp.agent("alpha"), tools)
    description, schema = got["docs.search"]
    assert description == "Search the docs"
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert schema["properties"] == {"query": {"type": "string"}, "limit": {"type": "number"}}
    assert schema["required"] == ["limit", "query"]


def test_an_allowed_call_gets_the_mapped_result_and_no_client_token_upstream(
    server: tuple[ServerProcess, Path], idp: TestIdp, upstream: RecordingUpstream
) -> None:
    proc, _ = server
    token = idp.agent("alpha")

    async def call(session: ClientSession) -> Any:
        return await session.call_tool("crm.lookup", {"customer_id": "c-42"})

    before = len(upstream.seen)
    result = run(proc.url, token, call)
    assert not result.is_error
    assert result.structured_content == {"id": "c-42", "name": "Ada Lovelace", "tier": "gold"}
    assert json.loads(result.content[0].text) == result.structured_content
    assert "ssn" not in result.content[0].text  # only the mapped fields reach the agent
    seen = upstream.seen[before:]
    assert [s["path"] for s in seen] == ["/customers/c-42"]
    for s in upstream.seen:
        assert "authorization" not in s["headers"]
        assert token not in json.dumps(s["headers"])


def test_a_denied_call_is_a_tool_error_with_the_reason(
    server: tuple[ServerProcess, Path], idp: TestIdp, upstream: RecordingUpstream
) -> None:
    proc, _ = server

    async def calls(session: ClientSession) -> Any:
        return [
            await session.call_tool("crm.lookup", {"customer_id": "c-blocked"}),
            await session.call_tool("ops.restart", {"service": "db"}),
        ]

    before = len(upstream.seen)
    blocked, restart = run(proc.url, idp.agent("alpha"), calls)
    assert blocked.is_error and blocked.content[0].text == "denied by access/blocked"
    assert restart.is_error and restart.content[0].text == "denied: no rule allows this request"
    assert len(upstream.seen) == before  # a denied call never reaches the upstream


def test_schema_violations_are_invalid_params_naming_the_field(
    server: tuple[ServerProcess, Path], idp: TestIdp
) -> None:
    proc, _ = server
    cases = [
        ({"customer_id": 42}, "customer_id"),
        ({}, "customer_id"),
        ({"customer_id": "c", "extra": 1}, "extra"),
        ({"customer_id": "x" * 70_000}, None),  # oversized
    ]
    deep: Any = "x"
    for _ in range(40):
        deep = {"d": deep}
    cases.append(({"customer_id": "c", "nested": deep}, None))  # deeply nested

    async def calls(session: ClientSession) -> Any:
        out = []
        for args, _field in cases:
            try:
                await session.call_tool("crm.lookup", args)
            except MCPError as exc:
                out.append(exc)
            else:
                out.append(None)
        try:
            await session.call_tool("no.such.tool", {})
        except MCPError as exc:
            out.append(exc)
        return out

    errors = run(proc.url, idp.agent("alpha"), calls)
    for (_, fld), exc in zip(cases, errors[:-1], strict=True):
        assert exc is not None and exc.code == -32602, exc
        if fld is not None:
            assert f"`{fld}`" in exc.message and exc.data == {"field": fld}
    assert errors[-1].code == -32602 and "unknown tool" in errors[-1].message


def test_step_up_carries_the_rfc9470_challenge(
    server: tuple[ServerProcess, Path], idp: TestIdp
) -> None:
    proc, _ = server

    async def call(session: ClientSession) -> Any:
        return await session.call_tool("billing.invoice", {"customer_id": "c-1"})

    weak = run(proc.url, idp.person("fay", ["finance"]), call)
    assert weak.is_error and weak.content[0].text == "required: mfa"
    challenge = weak.meta["mcpdsl/www-authenticate"]
    assert challenge.startswith('Bearer error="insufficient_user_authentication"')
    assert 'acr_values="mfa"' in challenge
    strong = run(proc.url, idp.person("fay", ["finance"], mfa=True), call)
    assert not strong.is_error
    assert strong.structured_content == {"total": 123.45, "currency": "EUR"}


def test_the_integration_limit_refuses_the_third_call(
    server: tuple[ServerProcess, Path], idp: TestIdp
) -> None:
    proc, _ = server

    async def calls(session: ClientSession) -> Any:
        return [await session.call_tool("docs.search", {"query": "q", "limit": 3})
                for _ in range(4)]  # fmt: skip

    results = run(proc.url, idp.agent("limited-agent"), calls)
    limited = [r for r in results if r.is_error]
    assert limited, "a limit of 2/s burst 2 must refuse one of four immediate calls"
    assert all(r.content[0].text.startswith("rate limited by integration") for r in limited)
    assert results[0].structured_content == {"hits": 3}


def _post(url: str, token: str | None) -> httpx.Response:
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    return httpx.post(url + "/mcp", json=body, headers=headers, timeout=30)


def _hs256_with_public_key(idp: TestIdp) -> str:
    """The key-confusion attack: HS256 keyed with the issuer's *public* key (PEM bytes)."""
    import base64
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import serialization

    pem = idp.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = b64(
        json.dumps({"iss": AGENTS, "sub": "alpha", "aud": RESOURCE, "exp": now + 300}).encode()
    )
    signature = hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


def _tokens(idp: TestIdp) -> dict[str, str | None]:
    now = int(time.time())
    other = rsa.generate_private_key(65537, 2048)
    unsigned = jwt.encode({"iss": AGENTS, "sub": "alpha", "aud": RESOURCE, "exp": now + 300},
                          None, algorithm="none", headers={"kid": "k1"})  # fmt: skip
    hs_with_public = _hs256_with_public_key(idp)
    return {
        "missing": None,
        "expired": idp.token({"iss": AGENTS, "sub": "alpha", "exp": now - 3600, "iat": now - 7200}),
        "not yet valid": idp.token({"iss": AGENTS, "sub": "alpha", "nbf": now + 3600}),
        "wrong audience": idp.token({"iss": AGENTS, "sub": "alpha", "aud": "http://other.test"}),
        "wrong issuer": idp.token({"iss": "https://evil.test", "sub": "alpha"}),
        "alg none": unsigned,
        "forged": idp.token({"iss": AGENTS, "sub": "alpha"}, key=other),
        "hs256": hs_with_public,
        "garbage": "not-a-jwt",
        "people wrong aud": idp.token({"iss": PEOPLE, "sub": "x", "aud": "https://api.test"}),
    }


def test_bad_tokens_are_401_with_the_challenge(
    server: tuple[ServerProcess, Path], idp: TestIdp, upstream: RecordingUpstream
) -> None:
    proc, _ = server
    metadata = "http://mcp.test/.well-known/oauth-protected-resource/mcp"
    for name, token in _tokens(idp).items():
        response = _post(proc.url, token)
        assert response.status_code == 401, (name, response.text)
        header = response.headers["www-authenticate"]
        assert header.startswith("Bearer "), name
        assert f'resource_metadata="{metadata}"' in header, name
        if token is None:
            assert "error=" not in header
        else:
            assert 'error="invalid_token"' in header, name
    assert _post(proc.url, idp.agent("alpha")).status_code == 200


def test_protected_resource_metadata(server: tuple[ServerProcess, Path]) -> None:
    proc, _ = server
    for path in ("/.well-known/oauth-protected-resource",
                 "/.well-known/oauth-protected-resource/mcp"):  # fmt: skip
        response = httpx.get(proc.url + path, timeout=30)
        assert response.status_code == 200
        assert response.json() == {
            "resource": RESOURCE,
            "authorization_servers": [AGENTS, PEOPLE],
            "bearer_methods_supported": ["header"],
        }


def test_zz_log_and_metrics(server: tuple[ServerProcess, Path], idp: TestIdp) -> None:
    """Its own calls (xdist may run it alone), then the metrics and a log that verifies."""
    proc, log = server

    async def calls(session: ClientSession) -> Any:
        await session.call_tool("crm.lookup", {"customer_id": "c-7"})
        await session.call_tool("crm.lookup", {"customer_id": "c-blocked"})
        for _ in range(4):
            await session.call_tool("docs.search", {"query": "q", "limit": 1})

    run(proc.url, idp.agent("alpha"), calls)

    async def step_up(session: ClientSession) -> Any:
        await session.call_tool("billing.invoice", {"customer_id": "c-1"})

    run(proc.url, idp.person("fay", ["finance"]), step_up)
    metrics = httpx.get(proc.url + "/metrics", timeout=30).text
    assert 'mcpdsl_mcp_tool_calls_total{result="ok",tool="crm.lookup"}' in metrics
    assert 'mcpdsl_mcp_tool_calls_total{result="denied",tool="crm.lookup"}' in metrics
    assert 'mcpdsl_mcp_tool_calls_total{result="limited",tool="docs.search"}' in metrics
    assert 'mcpdsl_mcp_tool_calls_total{result="step_up",tool="billing.invoice"}' in metrics
    assert 'mcpdsl_decisions_total{result="allow",transport="mcp"}' in metrics
    assert "mcpdsl_mcp_tool_call_seconds_bucket" in metrics
    proc.stop()
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    calls = [x for x in lines if x.get("transport") == "mcp"]
    assert calls and all("args_digest" in x and x["tool"] for x in calls)
    ok = [x for x in calls if x["result"] == "ok" and x["tool"] == "crm.lookup"]
    assert ok[0]["upstream"]["status"] == 200
    assert ok[0]["principal"] == "agent:alpha"
    verified = subprocess.run(
        [sys.executable, "-m", "mcpdsl", "logs", "verify", str(log)],
        capture_output=True, text=True, env=server_env(), timeout=120,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
