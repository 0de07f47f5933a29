"""`mcpdsl serve` as a process: listening line, probes, metrics, one decision, clean stop.

Standard library only (plus the server's own dependencies), so `.ci/lowest-deps`
runs it against the lowest versions the bounds in pyproject.toml allow.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from conftest import ALLOWED
from prometheus_client.parser import text_string_to_metric_families
from server_process import listening_line


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_listening_line_names_free_loopback_ports(serve: Any, demo_tree: Path) -> None:
    server = serve(demo_tree)
    line = next(x for x in server.stderr_lines if listening_line(x))
    data = json.loads(line)
    assert data["pid"] == server.pid
    for addr in (data["http"], data["grpc"]):
        host, _, port = addr.rpartition(":")
        assert host == "127.0.0.1" and int(port) > 0
    assert data["http"] != data["grpc"]
    assert "beyond this machine's loopback" not in server.stderr()


def test_probes_and_metrics(serve: Any, demo_tree: Path) -> None:
    server = serve(demo_tree)
    assert server.json("GET", "/health") == (200, {})
    status, ready = server.json("GET", "/ready")
    assert status == 200 and ready["ready"] is True and ready["policy"].startswith("sha256:")
    for _ in range(3):
        assert server.json("POST", "/v1/data/mcp/main/allow", {"input": ALLOWED})[1]["result"]
    assert server.json("POST", "/v1/data/mcp/main/allow", {"input": {}})[1]["result"] is False
    status, raw = server.request("GET", "/metrics")
    assert status == 200
    found = samples(raw.decode())
    assert found[("mcpdsl_decisions_total", (("result", "allow"), ("transport", "http")))] == 3
    assert found[("mcpdsl_decisions_total", (("result", "deny"), ("transport", "http")))] == 1
    assert (
        found[("mcpdsl_rule_decisions_total", (("result", "allow"), ("rule", "gate/allow-1")))] == 3
    )
    assert found[("mcpdsl_decision_seconds_count", (("transport", "http"),))] == 4
    assert found[("mcpdsl_ready", ())] == 1
    assert ("mcpdsl_load_failures_total", ()) in found


def test_sigterm_exits_zero_and_says_so(serve: Any, demo_tree: Path, tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    server = serve(demo_tree, "--decision-log", str(log))
    for _ in range(5):
        server.json("POST", "/v1/data/mcp/main/decision", {"input": ALLOWED})
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    assert "mcpdsl serve: stopped" in server.stderr()
    lines = log.read_text().splitlines()
    assert len(lines) == 5
    assert all(json.loads(line)["decision"]["allowed"] for line in lines)
