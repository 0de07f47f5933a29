"""Rules on tool arguments at the Envoy gateway: B0180, narrowed, never widened.

Only the MCP gateway of `mcpdsl serve` reads a call's arguments (`args`); an
Envoy route to the tool's integration, and its ext_authz request, never carry
them.  There every `args.*` read is an evaluation error (a call about a tool
without `args`), so a deny reading them fires on every call it matches and an
allow never fires: the Envoy target reports each such rule as `narrowed`
(B0180).  A rule about `any` that reads arguments, on a route to a service,
reads them as missing everywhere alike: nothing to report.  The Rego reads
`input.args` like the engine, and the ext_authz entry point fails closed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from validators import opa_available, run_opa

from mcpdsl.builder.artifacts import BuildResult, compile_artifacts
from mcpdsl.diagnostics import Diagnostic, Severity
from mcpdsl.engine import Engine
from mcpdsl.pipeline import compile_tree

TREE = """package shop

service api {
  image "example/api:1"
  port  8080
  stateful
}

integration docs-search {
  expose tool "docs.search" input { query: string, limit: number }
  call   POST "http://search.internal/query"
}

policy tools {
  default deny
  search:   allow agent any -> tool "docs.search" when args.limit <= 50
  paging:   deny agent any -> tool "docs.search" unless args.limit <= 100
  plain:    allow agent any -> tool "docs.search"
  anything: deny any -> any when args.query == "drop"
  callers:  allow any -> service api
}

gateway edge {
  listen 8080
  route  "/search" on POST -> integration docs-search
  route  "/api/**" -> service api
}
"""


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("args")
    (root / "main.mcp").write_text(TREE, encoding="utf-8")
    return root


def _build(tree: Path, targets: tuple[str, ...], strict: bool = False) -> BuildResult:
    compilation = compile_tree(tree)
    assert compilation.project is not None, compilation.diagnostics
    return compile_artifacts(compilation, targets, strict=strict)


def _findings(result: BuildResult, target: str) -> dict[str, list[Diagnostic]]:
    out: dict[str, list[Diagnostic]] = {}
    for d in result.build_diagnostics:
        if d.enforcement is not None and d.enforcement.target == target:
            out.setdefault(d.enforcement.rule, []).append(d)
    return out


def test_envoy_reports_rules_reading_arguments_on_a_tool_route(tree: Path) -> None:
    found = _findings(_build(tree, ("envoy",)), "envoy")
    by_code = {rule: sorted({d.code for d in ds}) for rule, ds in found.items()}
    assert "B0180" in by_code["tools/search"]
    assert "B0180" in by_code["tools/paging"]
    assert "B0180" in by_code["tools/anything"]
    assert "B0180" not in by_code.get("tools/plain", [])
    assert "B0180" not in by_code.get("tools/callers", [])
    for rule in ("tools/search", "tools/paging", "tools/anything"):
        for d in found[rule]:
            if d.code == "B0180":
                assert d.severity is Severity.WARNING
                assert d.enforcement is not None and str(d.enforcement.status) == "narrowed"
                assert "fails closed" in d.message
    (paging,) = [d for d in found["tools/paging"] if d.code == "B0180"]
    assert paging.message == (
        "deny rule `tools/paging` is narrowed at gateway edge, route /search: it needs the "
        "MCP gateway (fails closed: it fires on every call it matches)"
    )
    assert "`args.limit`" in paging.notes[0]
    # never reported as failing open (B0121) for its arguments
    assert not any(
        d.code == "B0121" and "args." in " ".join(d.notes) for d in found["tools/paging"]
    )


def test_strict_builds_refuse_a_narrowed_rule(tree: Path) -> None:
    result = _build(tree, ("envoy",), strict=True)
    assert any(d.code == "B0180" and d.is_error for d in result.build_diagnostics)


def _call(**extra: Any) -> dict[str, Any]:
    return {
        "principal": {"type": "agent", "id": "a"},
        "action": "invoke",
        "resource": {"type": "tool", "id": "docs.search"},
        **extra,
    }


@pytest.mark.skipif(not opa_available(), reason="system component missing: the OPA engine")
def test_the_rego_reads_arguments_like_the_engine(tree: Path) -> None:
    result = _build(tree, ("opa",))
    files = {
        a.path: a.content.decode() for a in result.artifacts if a.path.endswith((".rego", ".json"))
    }
    modules = {p: c for p, c in files.items() if p.endswith(".rego")}
    data = json.loads(files["opa/data.json"])
    engine = Engine.load(tree)
    cases = [
        _call(args={"limit": 10}),
        _call(args={"limit": 70}),
        _call(args={"limit": 700}),
        _call(args={}),
        _call(),
        _call(args="x"),
        _call(args={"limit": "10"}),
        _call(args={"query": "drop", "limit": 1}),
        {"principal": {"type": "agent", "id": "a"}, "resource": {"type": "service", "id": "api"}},
    ]
    for request in cases:
        decision = run_opa(modules, data, request, "data.mcp.main.decision")
        expected = engine.authorize(request)
        assert isinstance(decision, dict)
        assert (decision["allowed"], tuple(decision["rules"])) == (
            expected.allowed,
            expected.rules,
        ), request
