"""Real case: Envoy's front-proxy sandbox route table, as an mcpdsl source.

`front_proxy.mcp` restates the sandbox (two listeners, 8080 and 8443, sharing a
virtual host that sends the text prefixes `/service/1` and `/service/2` to two
round-robin clusters of port-8000 services).  The outcomes below are the ones
its documentation walks through (each curl reaches its own service) and the
ones Envoy's `prefix` matcher implies (text, not segments: `/service/10` is
under `/service/1`; anything else is a 404).  `Engine.route` and the generated
Envoy route table, read back by an independent model of Envoy's matcher
(tests/compile/envoy_matcher.py), must both give them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from validators import validate_envoy_bootstrap

from mcpdsl.compile import TargetContext, load_target
from mcpdsl.engine import Engine

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "compile"))
from envoy_matcher import match_route  # noqa: E402

#: (listener port, method, path) -> the cluster the sandbox sends it to (None: 404).
OUTCOMES: list[tuple[int, str, str, str | None]] = [
    # the walkthrough: each service answers on its own path, on both listeners
    (8080, "GET", "/service/1", "service1"),
    (8080, "GET", "/service/2", "service2"),
    (8443, "GET", "/service/1", "service1"),
    (8443, "GET", "/service/2", "service2"),
    # Envoy's prefix semantics on the same table
    (8080, "GET", "/service/1/health?verbose=1", "service1"),
    (8080, "POST", "/service/2/items", "service2"),
    (8080, "GET", "/service/10", "service1"),
    (8080, "GET", "/service/2x", "service2"),
    (8080, "GET", "/service/3", None),
    (8080, "GET", "/service", None),
    (8080, "GET", "/", None),
    (8443, "GET", "/SERVICE/1", None),  # case-sensitive
]
GATEWAYS = {8080: "front", 8443: "front-tls"}


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.load(HERE)


@pytest.fixture(scope="module")
def bootstraps(engine: Engine) -> dict[str, dict[str, Any]]:
    out = load_target("envoy").compile(engine.project, TargetContext(version="test"))
    assert not [d for d in out.diagnostics if d.severity == "warning"], out.diagnostics
    return {
        Path(a.path).stem: json.loads(a.content)
        for a in out.artifacts
        if a.path.startswith("envoy/")
    }


@pytest.mark.parametrize(("port", "method", "path", "cluster"), OUTCOMES)
def test_engine_routes_as_the_sandbox(
    engine: Engine, port: int, method: str, path: str, cluster: str | None
) -> None:
    d = engine.route(GATEWAYS[port], method, path)
    if cluster is None:
        assert d is None
    else:
        assert d is not None and d.target == cluster and d.path == path


@pytest.mark.parametrize(("port", "method", "path", "cluster"), OUTCOMES)
def test_the_envoy_route_table_routes_as_the_sandbox(
    bootstraps: dict[str, dict[str, Any]], port: int, method: str, path: str, cluster: str | None
) -> None:
    got = match_route(bootstraps[GATEWAYS[port]], method, path)
    if cluster is None:
        assert got is None
    else:
        assert got is not None and got["cluster"] == cluster and got["path"] == path


def test_the_route_table_is_the_sandboxs(bootstraps: dict[str, dict[str, Any]]) -> None:
    for port, name in GATEWAYS.items():
        doc = bootstraps[name]
        listener = doc["static_resources"]["listeners"][0]
        assert listener["address"]["socket_address"]["port_value"] == port
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        (vhost,) = hcm["route_config"]["virtual_hosts"]
        assert vhost["domains"] == ["*"]
        assert [(r["match"], r["route"]["cluster"]) for r in vhost["routes"]] == [
            ({"prefix": "/service/1"}, "service1"),
            ({"prefix": "/service/2"}, "service2"),
        ]
        clusters = {c["name"]: c for c in doc["static_resources"]["clusters"]}
        assert sorted(clusters) == ["service1", "service2"]
        for c in clusters.values():
            assert c["lb_policy"] == "ROUND_ROBIN"
            (locality,) = c["load_assignment"]["endpoints"]
            (endpoint,) = locality["lb_endpoints"]
            assert endpoint["endpoint"]["address"]["socket_address"]["port_value"] == 8000
        assert validate_envoy_bootstrap(doc) == []


def test_the_policy_tests_pass(engine: Engine) -> None:
    from mcpdsl.evaluate.project import prepare_project
    from mcpdsl.evaluate.testing import run_tests

    results = run_tests(prepare_project(engine.project))
    assert len(results) == 5
    assert all(r.passed for r in results), [r for r in results if not r.passed]
