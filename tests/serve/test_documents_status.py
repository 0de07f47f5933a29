"""In process: the Data API's document tree, and reload reports turned into status and metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_gate

from mcpdsl.compile import TargetContext, load_target
from mcpdsl.engine import Engine
from mcpdsl.serve.documents import Data, DocumentTree, Group, Package, descend
from mcpdsl.serve.metrics import Metrics
from mcpdsl.serve.status import PolicyStatus

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tree() -> DocumentTree:
    return DocumentTree(Engine.load(REPO / "policies").compiled)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("mcp/main", Package("main", "mcp/main")),
        ("mcp/main/allow", Package("main", "mcp/main", None, "allow")),
        ("mcp/main/decision/rules/0", Package("main", "mcp/main", None, "decision", ("rules", "0"))),
        ("mcp/envoy/request", Package("envoy", "mcp/envoy", None, "request")),
        ("mcp/platform/zero_trust/deny",
         Package("policy", "mcp/platform/zero_trust", 0, "deny")),
        ("mcp/main/nothing", None),
        ("mcp/envoy/deny", None),
        ("mcp/lib", None),
        ("elsewhere", None),
        ("", Group("")),
        ("mcp", Group("mcp")),
        ("mcp/platform", Group("mcp/platform")),
    ],
)  # fmt: skip
def test_paths_resolve_to_the_generated_packages(
    tree: DocumentTree, path: str, expected: object
) -> None:
    assert tree.resolve(tuple(s for s in path.split("/") if s)) == expected


def test_meta_is_the_builds_data_document(tree: DocumentTree) -> None:
    from mcpdsl import __version__

    output = load_target("opa").compile(tree.prepared.project, TargetContext(__version__))
    data = json.loads(next(a.content for a in output.artifacts if a.path == "opa/data.json"))
    target = tree.resolve(("mcp", "meta", "entrypoints"))
    assert isinstance(target, Data)
    assert descend(target.value, target.rest) == (True, data["mcp"]["meta"]["entrypoints"])
    assert tree.meta() == data["mcp"]["meta"]


def test_descend() -> None:
    doc = {"a": [{"b": 1}]}
    assert descend(doc, ("a", "0", "b")) == (True, 1)
    assert descend(doc, ("a", "1")) == (False, None)
    assert descend(doc, ("a", "x")) == (False, None)
    assert descend(doc, ("z",)) == (False, None)


def samples(metrics: Metrics) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
    return out


def test_reloads_become_status_metrics_and_lines(tmp_path: Path) -> None:
    root = write_gate(tmp_path / "tree")
    metrics = Metrics()
    said: list[str] = []
    status = PolicyStatus(str(root), metrics, say=said.append)
    engine = Engine.load(root, on_reload=status.on_reload, on_error=status.on_error)
    status.attach(engine)
    first = status.snapshot
    assert first is not None and first.rules == 1 and first.last_error is None

    (root / "gate.mcp").write_text("package demo\npolicy gate {\n")
    assert engine.reload().ok is False
    refused = status.snapshot
    assert refused is not None and refused.digest == first.digest
    assert (
        refused.last_error is not None
        and "keeping the previous policy" in (refused.last_error["message"])
    )
    assert said[-1].startswith("mcpdsl serve: reload refused:")
    found = samples(metrics)
    assert found['mcpdsl_reloads_total{"outcome": "refused"}'] == 1
    assert found["mcpdsl_load_failures_total{}"] == 1

    write_gate(root, "deny")
    assert engine.reload().swapped
    installed = status.snapshot
    assert installed is not None and installed.digest != first.digest
    assert installed.last_error is None and installed.reloads == 2
    assert samples(metrics)['mcpdsl_reloads_total{"outcome": "installed"}'] == 1
    assert "reloaded" in said[-1] and installed.digest in said[-1]
    engine.close()


def test_accepted_http_connections_send_without_delay() -> None:
    """TCP_NODELAY on accepted connections (asyncio skips sockets whose proto is 0).

    Without it a keep-alive response written as head then body waits for the
    client's delayed ACK (about 40 ms per request); checked on the socket option,
    not on time.
    """
    import socket

    from mcpdsl.serve.http_guard import set_nodelay
    from mcpdsl.serve.runner import bind_listener

    listener = bind_listener("127.0.0.1", 0)
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()

    class Transport:
        def get_extra_info(self, name: str) -> object:
            return accepted if name == "socket" else None

    try:
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        set_nodelay(Transport())  # type: ignore[arg-type]
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        for s in (client, accepted, listener):
            s.close()
