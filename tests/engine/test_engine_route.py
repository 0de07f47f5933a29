"""`Engine.route`: first match in declaration order, methods, rewrites, hosts; and the same
answers as the generated Envoy bootstrap (tests/compile/envoy_matcher.py)."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from engine_support import REPO, engine_for
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpdsl.compile import TargetContext, load_target
from mcpdsl.engine import Engine
from mcpdsl.engine.route import default_rewrite_path
from mcpdsl.ir import model as m

sys.path.insert(0, str(REPO / "tests" / "compile"))
from envoy_matcher import match_route

SOURCE = """
integration crm {
  call GET "https://crm.internal/api/v2/customers/{id}"
  timeout 2s
  retry 3 backoff 200ms..5s on [5xx]
  limit 100/s burst 200
}

gateway edge {
  listen 8443
  limit 1000/s
  route "/v1/crm/*"   on GET -> integration crm
  route "/v1/admin"   on POST -> service api rewrite "/internal/admin" timeout 1s
  route "/v1/**"      on GET, HEAD -> service api rewrite "/" timeout 5s retry 2
  route "/v1/**"      -> service frontend
  route "/static/*/x" -> service frontend rewrite "/assets"
  route "/keep/**"    -> service api rewrite "/base/"
}

gateway hosted {
  listen 8080
  hosts ["api.example.com", "*.example.org"]
  route "/**" -> service api
}
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return engine_for(tmp_path_factory.mktemp("route"), SOURCE)


def test_first_match_in_declaration_order(engine: Engine) -> None:
    d = engine.route("edge", "GET", "/v1/items")
    assert d is not None and (d.target_kind, d.target, d.index) == ("service", "api", 2)
    d = engine.route("edge", "POST", "/v1/items")  # the GET/HEAD route is skipped
    assert d is not None and (d.target, d.index) == ("frontend", 3)


def test_methods_are_exact(engine: Engine) -> None:
    d = engine.route("edge", "get", "/v1/items")
    assert d is not None and d.index == 3  # `get` is not `GET`


def test_prefix_rewrite(engine: Engine) -> None:
    d = engine.route("edge", "GET", "/v1/items?page=2")
    assert d is not None and d.path == "/items?page=2"
    assert engine.route("edge", "GET", "/v1").path == "/"  # type: ignore[union-attr]
    assert engine.route("edge", "GET", "/v1/").path == "/"  # type: ignore[union-attr]
    assert engine.route("edge", "GET", "/keep/a/b").path == "/base/a/b"  # type: ignore[union-attr]
    assert engine.route("edge", "GET", "/keep").path == "/base"  # type: ignore[union-attr]


def test_whole_path_rewrite(engine: Engine) -> None:
    d = engine.route("edge", "GET", "/static/abc/x?v=1")
    assert d is not None and d.path == "/assets?v=1"
    d = engine.route("edge", "POST", "/v1/admin")
    assert d is not None and d.path == "/internal/admin" and d.timeout == Decimal(1)


def test_integration_route_takes_the_call_url_path(engine: Engine) -> None:
    d = engine.route("edge", "GET", "/v1/crm/42")
    assert d is not None and d.target_kind == "integration" and d.target == "crm"
    assert d.path == "/api/v2/customers/42"
    assert d.timeout == Decimal(2) and d.retries == 3  # the integration's timeout and retry
    assert d.rate_limit_key == "gateway:edge"
    assert d.limit_keys == ("gateway:edge", "integration:crm")
    assert d.target_qualified == "t.crm"


def test_route_options(engine: Engine) -> None:
    d = engine.route("edge", "GET", "/v1/x")
    assert d is not None and d.timeout == Decimal(5) and d.retries == 2
    d = engine.route("edge", "PUT", "/v1/x")
    assert d is not None and d.timeout is None and d.retries is None and d.path == "/v1/x"


def test_no_route(engine: Engine) -> None:
    assert engine.route("edge", "GET", "/v10") is None
    assert engine.route("edge", "GET", "/") is None
    assert engine.route("edge", "DELETE", "/v1/crm/42") is not None  # falls to `/v1/**`
    assert engine.route("edge", "GET", "/static/a/b/x") is None


def test_hosts(engine: Engine) -> None:
    assert engine.route("hosted", "GET", "/a", {"Host": "api.example.com"}) is not None
    assert engine.route("hosted", "GET", "/a", {"host": "API.example.com:8080"}) is not None
    assert engine.route("hosted", "GET", "/a", {"host": "x.example.org"}) is not None
    assert engine.route("hosted", "GET", "/a", {"host": "example.org"}) is None
    assert engine.route("hosted", "GET", "/a", {"host": "evil.com"}) is None
    assert engine.route("hosted", "GET", "/a") is not None  # no host header given


def test_unknown_gateway(engine: Engine) -> None:
    with pytest.raises(KeyError, match="no gateway `nope`"):
        engine.route("nope", "GET", "/")


def test_default_rewrite_matches_the_documented_examples() -> None:
    api = m.RouteTarget(kind="service", ref=m.Ref(package="p", name="api"))
    route = m.Route(path="/v1/**", target=api, rewrite="/")
    assert default_rewrite_path(route, "/v1/items") == "/items"
    assert default_rewrite_path(route, "/v1") == "/"
    assert (
        default_rewrite_path(m.Route(path="/v1/*/x", target=api, rewrite="/y"), "/v1/a/x?q")
        == "/y?q"
    )


# ------------------------------------------------------------------ differential vs Envoy


def _bootstraps(project: m.Project) -> dict[str, dict[str, Any]]:
    output = load_target("envoy").compile(project, TargetContext(version="test"))
    out = {}
    for artifact in output.artifacts:
        if artifact.path.startswith("envoy/") and artifact.path.endswith(".json"):
            doc = json.loads(artifact.content)
            if "static_resources" in doc:
                out[Path(artifact.path).stem] = doc
    return out


def _agree(
    engine: Engine,
    bootstraps: dict[str, dict[str, Any]],
    gw: m.Gateway,
    method: str,
    path: str,
    headers: dict[str, str],
) -> None:
    mine = engine.route(gw.qualified, method, path, headers)
    boot = bootstraps.get(gw.name) or bootstraps[next(k for k in bootstraps if k.endswith(gw.name))]
    theirs = match_route(boot, method, path, headers)
    if mine is None or theirs is None:
        assert mine is None and theirs is None, (gw.name, method, path, mine, theirs)
        return
    assert mine.index == theirs["index"], (method, path)
    assert (mine.target_kind, mine.target_qualified) == tuple(theirs["target"]), (method, path)
    assert mine.path == theirs["path"], (method, path)
    assert mine.timeout == theirs["timeout"], (method, path)
    assert mine.retries == theirs["retries"], (method, path)


def _trees() -> list[Path]:
    trees = [REPO / "policies", *sorted((REPO / "examples").glob("*"))]
    return [t for t in trees if t.is_dir() and any(t.rglob("*.mcp"))]


def _segments(gateways: list[m.Gateway]) -> list[str]:
    words = {"", "x", "42", "a.b"}
    for g in gateways:
        for r in g.routes:
            words.update(s for s in r.path.split("/") if s not in ("*", "**"))
    return sorted(words)


@pytest.mark.parametrize("tree", _trees(), ids=lambda p: p.name)
def test_route_agrees_with_the_envoy_bootstrap(tree: Path) -> None:
    engine = Engine.load(tree)
    gateways = list(engine.project.gateways)
    if not gateways:
        pytest.skip("no gateway")
    bootstraps = _bootstraps(engine.project)
    segments = _segments(gateways)
    methods = sorted(
        {mt for g in gateways for r in g.routes for mt in r.methods} | {"GET", "PATCH"}
    )
    hosts = sorted({h for g in gateways for h in g.hosts if "*" not in h} | {"other.example"})

    @settings(max_examples=300)
    @given(
        gw=st.sampled_from(gateways),
        method=st.sampled_from(methods),
        segs=st.lists(st.sampled_from(segments), max_size=5),
        query=st.sampled_from(["", "?q=1", "?a=/b", "#frag"]),
        host=st.one_of(st.none(), st.sampled_from(hosts)),
    )
    def check(gw: m.Gateway, method: str, segs: list[str], query: str, host: str | None) -> None:
        path = "/" + "/".join(s for s in segs if s)  # normalised: no empty or dot segments
        headers = {} if host is None else {"host": host}
        _agree(engine, bootstraps, gw, method, path + query, headers)

    check()
    # and every route's own pattern, instantiated
    for gw in gateways:
        for r in gw.routes:
            path = r.path.replace("/**", "/deep/er").replace("*", "seg")
            for method in r.methods or ("GET",):
                _agree(engine, bootstraps, gw, method, path, {})


def test_route_differential_on_the_fixture(engine: Engine) -> None:
    bootstraps = _bootstraps(engine.project)
    for gw in engine.project.gateways:
        for method in ("GET", "POST", "HEAD", "PUT", "get"):
            for path in (
                "/v1",
                "/v1/",
                "/v1/items?x=1",
                "/v1/crm/42",
                "/v1/crm/42/x",
                "/v1/admin",
                "/static/a/x",
                "/static/a/x?v=2",
                "/keep",
                "/keep/a/b",
                "/v10",
                "/",
                "/a",
            ):
                for headers in ({}, {"host": "api.example.com"}, {"host": "nope.example"}):
                    _agree(engine, bootstraps, gw, method, path, headers)
