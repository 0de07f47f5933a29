"""The server's own counters decide rules on `stats.principal.*` (a real process).

`policies/access.mcp` stops an agent past 60 calls a minute
(`runaway: deny agent any -> tool any unless stats.principal.calls_1m <= 60`).
Through `mcpdsl serve` the count is the server's: the 61st call of one agent
within the minute is denied by that rule, whatever `stats` the caller sends,
and another agent's calls are counted apart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from repo_paths import REPO
from server_process import ServerProcess

DECISION = "/v1/data/mcp/main/decision"


def _call(agent: str, stats: dict[str, Any] | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {
        "principal": {"type": "agent", "id": agent},
        "resource": {"type": "tool", "id": "crm.lookup"},
        "action": "invoke",
        "context": {"customer": {"tier": "gold"}},
    }
    if stats is not None:
        request["stats"] = stats
    return {"input": request}


def test_the_61st_call_in_a_minute_is_denied_by_the_server_count(
    serve: Callable[..., ServerProcess],
) -> None:
    server = serve(REPO / "policies", "--no-watch")
    for n in range(1, 61):
        status, body = server.json("POST", DECISION, _call("support-assistant"))
        assert status == 200 and body["result"]["allowed"], (n, body)
    forged = {"principal": {"calls_1m": 0, "calls_1h": 0}}
    status, body = server.json("POST", DECISION, _call("support-assistant", forged))
    assert status == 200
    assert body["result"]["allowed"] is False
    assert "zero-trust/runaway" in body["result"]["rules"]
    # another agent has its own count
    status, body = server.json("POST", DECISION, _call("billing-assistant"))
    assert status == 200 and "zero-trust/runaway" not in body["result"]["rules"], body


def test_an_uncounted_call_has_no_stats_even_when_the_store_is_down_and_allowed() -> None:
    """With `on_unavailable="allow"` nobody counted the call: `stats` is absent, not zeros.

    So the `unless`-written deny on the counter still refuses it (fails closed),
    and a `stats` the caller sent is dropped, never believed.
    """
    import asyncio

    from mcpdsl.engine import Engine
    from mcpdsl.serve.state import ServerState
    from mcpdsl.serve.store import MemoryStore, Stats, StoreUnavailable

    class Down(MemoryStore):
        async def observe(self, principal: str, resource: str, now: float) -> Stats:
            raise StoreUnavailable("down")

    state = ServerState(Engine.load(REPO / "policies"), store=Down(), on_unavailable="allow")
    forged = {"principal": {"calls_1m": 0}}
    verdict = asyncio.run(state.authorize(_call("support-assistant", forged)["input"]))
    assert verdict.request is not None and "stats" not in verdict.request
    assert not verdict.unavailable and not verdict.allowed
    assert "zero-trust/runaway" in verdict.decision.rules
