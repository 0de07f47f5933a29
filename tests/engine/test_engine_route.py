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
from mcpdsl.evaluate.route import PathRejected, default_rewrite_path
from mcpdsl.ir import model as m
from mcpdsl.ir.paths import HCM_PATH_SETTINGS, normalize_request_path

sys.path.insert(0, str(REPO / "tests" / "compile"))
from envoy_matcher import RequestRejected, match_route, normalize_path

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
    boot = bootstraps.get(gw.name) or bootstraps[next(k for k in bootstraps if k.endswith(gw.name))]
    try:
        theirs = match_route(boot, method, path, headers)
    except RequestRejected as rejected:
        with pytest.raises(PathRejected) as refused:
            engine.route(gw.qualified, method, path, headers)
        assert refused.value.status == rejected.status, path
        return
    mine = engine.route(gw.qualified, method, path, headers)
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


# ------------------------------------------------------- path normalisation (Envoy's HCM)


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        ("/v1/./items", "/items"),
        ("/v1/a/../items", "/items"),
        ("//v1//items", "/items"),
        ("/v1/%2e/items", "/items"),
        ("/v1/%2E%2e/v1/items", "/items"),
        ("/x/../v1/items", "/items"),
        ("/v1/items/..", "/"),
        ("/v1/a\\..\\items", "/items"),  # a raw backslash is a slash
        ("/v1/./items?next=/../x//y", "/items?next=/../x//y"),  # the query is untouched
        ("/v1//items?a=%2F", "/items?a=%2F"),
    ],
)
def test_route_normalises_the_path_as_envoy(engine: Engine, path: str, upstream: str) -> None:
    d = engine.route("edge", "GET", path)
    assert d is not None and (d.index, d.path) == (2, upstream)
    boot = _bootstraps(engine.project)["edge"]
    assert match_route(boot, "GET", path)["path"] == upstream  # type: ignore[index]


@pytest.mark.parametrize("path", ["/v1/%2e%2e/x", "/v1/..", "/v1/../../x?q=/v1/y"])
def test_dot_segments_can_leave_a_route(engine: Engine, path: str) -> None:
    assert engine.route("edge", "GET", path) is None
    assert match_route(_bootstraps(engine.project)["edge"], "GET", path) is None


@pytest.mark.parametrize(
    "path", ["/v1/a%2Fb", "/v1/a%2fb", "/v1%5C..%5Cadmin", "/v1/a%5cb?x", "/v1/%00"]
)
def test_escaped_slashes_and_nul_are_rejected(engine: Engine, path: str) -> None:
    with pytest.raises(PathRejected) as refused:
        engine.route("edge", "GET", path)
    assert refused.value.status == 400 and refused.value.path == path
    with pytest.raises(RequestRejected):
        match_route(_bootstraps(engine.project)["edge"], "GET", path)


def test_escapes_in_the_query_are_not_rejected(engine: Engine) -> None:
    d = engine.route("edge", "GET", "/v1/items?next=%2F..%2F&x=%00")
    assert d is not None and d.path == "/items?next=%2F..%2F&x=%00"


def test_the_generated_hcm_uses_the_modelled_settings(engine: Engine) -> None:
    for boot in _bootstraps(engine.project).values():
        chain = boot["static_resources"]["listeners"][0]["filter_chains"][0]
        hcm = chain["filters"][0]["typed_config"]
        assert {k: hcm.get(k) for k in HCM_PATH_SETTINGS} == HCM_PATH_SETTINGS


_PATH_CHARS = st.sampled_from(["/", "/", ".", ".", "%2e", "%2E", "%", "2", "e", "a", "\\", "%00"])


@settings(max_examples=2000)
@given(
    bare=st.lists(_PATH_CHARS, max_size=12).map("".join),
    query=st.sampled_from(["", "?a=/../b", "?x=%2F//"]),
)
def test_normalisation_equals_the_matcher_scanner(bare: str, query: str) -> None:
    """The engine's segment-wise normaliser against the matcher's Chromium-style scanner."""
    path = "/" + bare + query
    try:
        theirs = normalize_path(path)
    except RequestRejected:
        with pytest.raises(PathRejected):
            normalize_request_path(path)
        return
    assert normalize_request_path(path) == theirs, path


_DOT_SEGMENTS = [".", "..", "", "a", "%2e", "%2E%2e", ".%2e", "%2F", "%5c", "a%2Fb", "x\\.."]


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_route_with_dot_segments_agrees_with_the_envoy_bootstrap(data: st.DataObject) -> None:
    """policies/: random paths mixing dot, empty and escaped segments with route words."""
    engine = _policies_engine()
    gateways = list(engine.project.gateways)
    bootstraps = _policies_bootstraps()
    gw = data.draw(st.sampled_from(gateways))
    words = st.sampled_from(_DOT_SEGMENTS + _segments(gateways))
    segs = data.draw(st.lists(words, max_size=6))
    query = data.draw(st.sampled_from(["", "?q=1", "?a=/../b%2F", "#frag"]))
    method = data.draw(
        st.sampled_from(sorted({mt for r in gw.routes for mt in r.methods} | {"GET"}))
    )
    _agree(engine, bootstraps, gw, method, "/" + "/".join(segs) + query, {})


_POLICIES: dict[str, Any] = {}


def _policies_engine() -> Engine:
    if "engine" not in _POLICIES:
        _POLICIES["engine"] = Engine.load(REPO / "policies")
    return _POLICIES["engine"]  # type: ignore[no-any-return]


def _policies_bootstraps() -> dict[str, dict[str, Any]]:
    if "boot" not in _POLICIES:
        _POLICIES["boot"] = _bootstraps(_policies_engine().project)
    return _POLICIES["boot"]  # type: ignore[no-any-return]
