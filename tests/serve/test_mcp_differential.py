"""The gateway against the engine, in process: decisions, `map` output and the listing rule.

* Differential (seeded, 2,800 calls, over 2,000 of them decided over principals, tools and arguments): the
  gateway's allow/deny for each `tools/call` equals `Engine.authorize` on the
  canonical request it decided (as logged), and an allowed call's structured
  content equals `Engine.transform` of the upstream payload.
* Listing (hypothesis over arguments, context, counters, time and address): a
  tool the engine allows for some generated call is listed for that principal;
  a tool that is not listed is allowed for no generated call.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp.shared.exceptions import MCPError
from mcp_support import AGENTS, PEOPLE, TestIdp, write_tree

from mcpdsl.engine import Engine
from mcpdsl.engine.decision_log import DecisionLog
from mcpdsl.evaluate.checkrequest import principal_reader
from mcpdsl.evaluate.transform import TransformError
from mcpdsl.ir.door import claims
from mcpdsl.serve.gateway import Gateway, tool_request
from mcpdsl.serve.oauth import Identity
from mcpdsl.serve.state import ServerState

TOOLS = ["crm.lookup", "docs.search", "billing.invoice", "ops.restart"]
AGENT_IDS = ["alpha", "beta", "gamma", "delta"]
GROUPS = ["finance", "support", "sre"]


class Result:
    def __init__(self, payload: Any) -> None:
        self.status, self.payload, self.attempts, self.elapsed_ms = 200, payload, 1, 0.1


class FakeUpstreams:
    """Answers every call with the payload the test chose next (no network: the process
    test covers the wiring with the real `Upstreams`)."""

    def __init__(self) -> None:
        self.payload: Any = {}

    async def call(self, integration: Any, args: Any) -> Result:
        return Result(self.payload)

    def breaker_state(self, name: str) -> str:
        return "closed"

    async def aclose(self) -> None:
        return None


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = write_tree(tmp_path_factory.mktemp("tree"), "http://127.0.0.1:9", TestIdp())
    engine = Engine.load(str(root))
    lines: list[dict[str, Any]] = []
    log = DecisionLog(lambda line: lines.append(json.loads(line)))
    clock = itertools.count(1_000_000.0, 1.0)  # a second per call: buckets refill
    state = ServerState(engine, log=log, clock=lambda: next(clock))
    upstreams = FakeUpstreams()
    gw = Gateway(state, resource="http://mcp.test/mcp", accept=("agents", "people"),
                 upstreams=upstreams)  # fmt: skip
    yield engine, gw, upstreams, lines
    engine.close()


def identity(engine: Engine, payload: dict[str, Any]) -> Identity:
    provider = next(p for p in engine.project.providers if p.issuer == payload["iss"])
    principal, auth = principal_reader(claims(provider))(payload)
    return Identity(principal, auth, provider.qualified, provider.issuer, payload.get("sub"), None)


def random_identity(rng: random.Random, engine: Engine) -> Identity:
    if rng.random() < 0.5:
        return identity(engine, {"iss": AGENTS, "sub": rng.choice(AGENT_IDS)})
    groups = [g for g in GROUPS if rng.random() < 0.4]
    amr = ["pwd", "mfa"] if rng.random() < 0.5 else ["pwd"]
    return identity(engine, {"iss": PEOPLE, "sub": rng.choice(["fay", "sam"]), "groups": groups,
                             "amr": amr})  # fmt: skip


def random_args(rng: random.Random, tool: str) -> dict[str, Any]:
    bad = rng.random() < 0.15  # one call in seven breaks the schema
    value = rng.choice([7, True, None] if bad else ["c-1", "c-blocked", "", "ü"])
    if tool == "docs.search":
        args: dict[str, Any] = {"query": "q", "limit": rng.choice(["x"] if bad else [1, 2.5])}
    elif tool == "ops.restart":
        args = {"service": 1 if bad else "db"}
    else:
        args = {"customer_id": value}
    if rng.random() < 0.03:
        args.pop(next(iter(args)))
    if rng.random() < 0.02:
        args["extra"] = 1
    return {k: v for k, v in args.items() if v is not None}


def random_payload(rng: random.Random) -> Any:
    return rng.choice([
        {"id": "c-1", "first_name": "A", "last_name": "B", "segment": "gold"},
        {"id": "c-1", "first_name": "A", "last_name": "B"},
        {"first_name": "A"},
        {"result": [1, 2]},
        {"amount_due": 250, "currency": "usd"},
        {"amount_due": "x", "currency": 3},
        {"ok": True},
        [],
    ])  # fmt: skip


def test_gateway_decides_and_maps_as_the_engine(setup: Any) -> None:
    engine, gw, upstreams, lines = setup
    rng = random.Random(15)
    counts = {"decided": 0, "invalid": 0, "allowed": 0, "mapped": 0}

    async def calls() -> None:
        for _ in range(2800):
            ident = random_identity(rng, engine)
            tool = rng.choice(TOOLS)
            args = random_args(rng, tool)
            upstreams.payload = random_payload(rng)
            schema = gw.view().tools[tool].schema
            before = len(lines)
            try:
                result = await gw.call(ident, tool, args, "10.0.0.1")
            except MCPError as exc:
                assert exc.code == -32602
                with pytest.raises(jsonschema.ValidationError):
                    jsonschema.validate(args, schema)
                counts["invalid"] += 1
                continue
            jsonschema.validate(args, schema)  # what the gateway accepted, the schema accepts
            counts["decided"] += 1
            assert len(lines) == before + 1  # one log line per call
            line = lines[-1]
            request = line["input"]
            assert request == {**tool_request(ident, tool, args, "10.0.0.1"),
                               "stats": request["stats"]}  # fmt: skip
            decision = engine.authorize(request)
            assert decision.allowed == line["decision"]["allowed"]
            assert decision.enforced == line["decision"]["enforced"]
            assert list(decision.rules) == line["rules"]
            if not decision.enforced:
                assert result.is_error
                continue
            counts["allowed"] += 1
            integration = gw.view().tools[tool].integration.name
            try:
                expected = engine.transform(integration, upstreams.payload)
            except TransformError:
                assert result.is_error and line["result"] == "upstream_error"
                continue
            counts["mapped"] += 1
            assert not result.is_error
            assert result.structured_content == expected

    asyncio.run(calls())
    assert counts["decided"] + counts["invalid"] == 2800
    assert counts["decided"] >= 2000 and counts["allowed"] > 100 and counts["mapped"] > 50


contexts = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["gold", "x", "c-blocked"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b"]),
                                                                inner, max_size=2),
    max_leaves=5,
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    agent=st.booleans(),
    who=st.sampled_from([*AGENT_IDS, "fay", "sam"]),
    groups=st.lists(st.sampled_from(GROUPS), max_size=3, unique=True),
    mfa=st.booleans(),
    tool=st.sampled_from(TOOLS),
    customer=st.sampled_from(["c-1", "c-blocked", ""]) | contexts,
    context=st.dictionaries(st.sampled_from(["customer", "geo", "session"]), contexts, max_size=2),
    calls=st.one_of(st.none(), st.integers(0, 2000)),
)
def test_listing_is_sound(
    setup: Any, agent: bool, who: str, groups: list[str], mfa: bool, tool: str,
    customer: Any, context: dict[str, Any], calls: int | None,
) -> None:  # fmt: skip
    engine, gw, _, _ = setup
    if agent:
        ident = identity(engine, {"iss": AGENTS, "sub": who})
    else:
        ident = identity(engine, {"iss": PEOPLE, "sub": who, "groups": groups,
                                  "amr": ["mfa"] if mfa else []})  # fmt: skip
    request = tool_request(ident, tool, {"customer_id": customer}, "10.0.0.1")
    request["context"] = context
    if calls is not None:
        request["stats"] = {"principal": {"calls_1m": calls}}
    listed = {t.name for t in gw.list_for(ident)}
    if engine.authorize(request).allowed:
        assert tool in listed


def test_listing_hand_cases(setup: Any) -> None:
    engine, gw, _, _ = setup

    def names(payload: dict[str, Any]) -> list[str]:
        return [t.name for t in gw.list_for(identity(engine, payload))]

    assert names({"iss": AGENTS, "sub": "alpha"}) == ["crm.lookup", "docs.search"]
    assert names({"iss": AGENTS, "sub": "beta"}) == []  # `no-beta` certainly fires
    assert names({"iss": AGENTS, "sub": "gamma"}) == ["crm.lookup", "docs.search"]
    assert names({"iss": PEOPLE, "sub": "fay", "groups": ["finance"]}) == ["billing.invoice"]
    assert names({"iss": PEOPLE, "sub": "sam", "groups": ["support", "finance"]}) == [
        "billing.invoice", "crm.lookup",
    ]  # fmt: skip
    assert names({"iss": PEOPLE, "sub": "x", "groups": []}) == []
    # no tool of the policy allows `ops.restart`: hidden from everyone
    assert all("ops.restart" not in names({"iss": AGENTS, "sub": a}) for a in AGENT_IDS)
