"""Rules on the server's counters need the decision server: B0171 in OPA, Envoy and Istio.

Only `mcpdsl serve` counts (`stats.principal.*`); the generated artifacts
cannot see the counters, and the Rego never reads `input.stats` (a caller of
OPA could forge it).  There such a rule never fires: a deny is `not-enforced`
(fails open: an error under `--strict` or in a `strict` policy), an allow
`narrowed`; a `require` on a counter narrows its policy's allows.  The
bundle's decisions are those of the engine on `artifact_view(project)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from validators import opa_available, run_opa

from mcpdsl.builder.artifacts import BuildResult, compile_artifacts
from mcpdsl.compile.server import artifact_view
from mcpdsl.diagnostics import Diagnostic, Severity
from mcpdsl.engine import Engine
from mcpdsl.pipeline import compile_tree

TREE = """package shop

service api {
  image "example/api:1"
  port  8080
  stateful
  identity "spiffe://cluster.local/ns/shop/sa/api"
}

service web {
  image "example/web:1"
  port  8080
  stateful
  identity "spiffe://cluster.local/ns/shop/sa/web"
}

balance api {
  strategy least-request
}

policy access {
  default deny
  callers:  allow service web -> service api
  busy:     allow service web -> service api on POST when stats.principal.calls_1m <= 100
  runaway:  deny any -> service api unless stats.principal.calls_1m <= 600
  risky:    deny any -> service api when risk >= 0.5
  risk {
    0.5 when stats.principal.denials_1h > 10
  }
}

policy step-up {
  default allow
  require mfa when stats.principal.resources_1m > 20
}

gateway edge {
  listen 8080
  route  "/**" -> service api
}
"""


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("server")
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


def test_opa_reports_every_rule_that_needs_the_server(tree: Path) -> None:
    found = _findings(_build(tree, ("opa",)), "opa")
    expected = {
        "access/callers": ("B0120", "enforced"),
        "access/busy": ("B0171", "narrowed"),
        "access/runaway": ("B0171", "not-enforced"),
        "access/risky": ("B0171", "not-enforced"),  # through `risk`
    }
    for rule, (code, status) in expected.items():
        [d] = found[rule]
        assert (d.code, str(d.enforcement.status if d.enforcement else "")) == (code, status)
    runaway = found["access/runaway"][0]
    assert runaway.severity is Severity.WARNING
    assert runaway.message == (
        "deny rule `access/runaway` is not enforced by opa: it needs the decision server "
        "(fails open: it never fires there)"
    )
    assert runaway.notes[0] == (
        "it reads `stats.principal.calls_1m`, which only the decision server (`mcpdsl serve`) "
        "counts"
    )
    assert runaway.help is not None and "mcpdsl serve" in runaway.help
    risky = found["access/risky"][0]
    assert "`stats.principal.denials_1h`" in risky.notes[0]


def test_a_require_on_a_counter_narrows_the_allows_of_its_policy(tmp_path: Path) -> None:
    source = """package shop

service api {
  image "example/api:1"
  port  8080
  stateful
}

policy step-up {
  open: allow any -> service api
  require mfa when stats.principal.resources_1m > 20
}
"""
    (tmp_path / "main.mcp").write_text(source, encoding="utf-8")
    [d] = _findings(_build(tmp_path, ("opa",)), "opa")["step-up/open"]
    assert d.code == "B0171" and d.enforcement is not None
    assert str(d.enforcement.status) == "narrowed"
    assert d.message.endswith("(fails closed)")
    assert d.notes[0] == (
        "its policy's `require` reads `stats.principal.resources_1m`, so there the "
        "obligation applies to every request"
    )


def test_the_rego_never_reads_input_stats(tree: Path) -> None:
    result = _build(tree, ("opa",))
    rego = "\n".join(a.content.decode() for a in result.artifacts if a.path.endswith(".rego"))
    assert '"stats"' not in rego and "input.stats" not in rego
    assert "false # reads stats.principal.*" in rego


@pytest.mark.skipif(
    not opa_available(),
    reason="system component missing: the OPA engine (opa-golib-python-bindings)",
)
@pytest.mark.parametrize(
    "counters",
    [None, {"calls_1m": 1}, {"calls_1m": 10_000, "denials_1h": 99, "resources_1m": 50}, "forged"],
    ids=["uncounted", "quiet", "runaway", "forged"],
)
@pytest.mark.parametrize("action", ["GET", "POST"])
def test_the_bundle_decides_as_the_engine_without_server_rules(
    tree: Path, counters: Any, action: str
) -> None:
    result = _build(tree, ("opa",))
    modules = {a.path: a.content.decode() for a in result.artifacts if a.path.endswith(".rego")}
    data = next(a.content for a in result.artifacts if a.path == "opa/data.json")
    import json

    request: dict[str, Any] = {
        "principal": {"type": "service", "id": "web"},
        "action": action,
        "resource": {"type": "service", "id": "api"},
    }
    if counters is not None:
        request["stats"] = {"principal": counters}
    got = run_opa(modules, json.loads(data), request, "data.mcp.main.decision")
    assert result.compilation is not None and result.compilation.project is not None
    view = Engine.from_project(artifact_view(result.compilation.project))
    want = view.authorize(request).as_dict()
    want.pop("enforced")
    assert got == want
    # the forged counters change nothing in the bundle (the engine refuses them)
    assert got["allowed"] is True and got["obligations"] == ["mfa"] and got["risk"] == 0.5


def test_envoy_and_istio_report_the_same(tree: Path) -> None:
    result = _build(tree, ("envoy", "istio"))
    for target in ("envoy", "istio"):
        found = _findings(result, target)
        for rule, status in (("access/runaway", "not-enforced"), ("access/busy", "narrowed")):
            assert found[rule], (target, rule)
            for d in found[rule]:
                assert d.code == "B0171" and d.enforcement is not None
                assert str(d.enforcement.status) == status
                assert "it needs the decision server" in d.message
    gateway = _findings(result, "envoy")["access/runaway"][0]
    assert "at gateway edge, route /**" in gateway.message
    sidecar = _findings(result, "istio")["access/runaway"][0]
    assert "at the sidecar of workload" in sidecar.message
    assert not any(
        d.code in ("B0121", "B0122") and "stats." in " ".join(d.notes)
        for d in result.build_diagnostics
    )


def test_strict_refuses_a_fail_open_deny(tree: Path) -> None:
    result = _build(tree, ("opa",), strict=True)
    assert result.has_errors
    errors = {d.enforcement.rule for d in result.build_diagnostics if d.is_error and d.enforcement}
    assert {"access/runaway", "access/risky", "access/busy"} <= errors


def test_a_strict_policy_refuses_it_in_every_build(tmp_path: Path) -> None:
    source = TREE.replace(
        "policy access {\n  default deny", "policy access {\n  strict\n  default deny"
    )
    (tmp_path / "main.mcp").write_text(source, encoding="utf-8")
    result = _build(tmp_path, ("opa",))
    assert result.has_errors
    assert any(
        d.is_error
        and d.code == "B0171"
        and d.enforcement
        and d.enforcement.rule == "access/runaway"
        for d in result.build_diagnostics
    )


def test_a_tree_without_counters_is_unchanged(tmp_path: Path) -> None:
    source = TREE.split("policy access")[0] + "policy open {\n  default allow\n}\n"
    (tmp_path / "main.mcp").write_text(source, encoding="utf-8")
    compilation = compile_tree(tmp_path)
    assert compilation.project is not None
    assert artifact_view(compilation.project) is compilation.project
    result = _build(tmp_path, ("opa", "envoy", "istio"))
    assert not any(d.code == "B0171" for d in result.build_diagnostics)


def test_with_a_declared_server_the_proxies_delegate_counter_rules_to_it(tmp_path: Path) -> None:
    """A `server` is where ext_authz goes: its counters decide, so Envoy and Istio enforce.

    The OPA bundle still cannot count, so it keeps reporting the rule (B0171).
    """
    server = '\nserver authz {\n  image "example/mcpdsl:1"\n  namespace "authz"\n  replicas 1\n}\n'
    (tmp_path / "main.mcp").write_text(TREE + server, encoding="utf-8")
    result = _build(tmp_path, ("opa", "envoy", "istio"))
    for target in ("envoy", "istio"):
        codes = {d.code for ds in _findings(result, target).values() for d in ds}
        assert "B0171" not in codes, target
    runaway = [
        d
        for d in result.build_diagnostics
        if d.enforcement is not None
        and d.enforcement.target == "envoy"
        and d.enforcement.rule == "access/runaway"
    ]
    assert runaway and all("mcpdsl serve authz" in d.enforcement.where for d in runaway)  # type: ignore[union-attr]
    assert "B0171" in {d.code for d in _findings(result, "opa")["access/runaway"]}
