"""Tests of the Envoy target: real-proto validation, exact path semantics, RBAC vs ext_authz.

Every bootstrap of every tree we have (our fixtures, `policies/`,
`examples/*`) is parsed into `envoy.config.bootstrap.v3.Bootstrap` with the
protoc-gen-validate rules enforced inside every `Any` (tests/validators.py).
Route matching and rewriting are checked by running requests through the
*generated JSON* (tests/compile/envoy_matcher.py) and comparing with the one
glob definition (`mcpdsl.ir.globs`) and `rewrite_path`; RBAC-only routes are
compared with the in-process engine on random requests.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from envoy_matcher import RequestRejected, authorize, match_route, normalize_path
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from validators import validate_envoy_bootstrap

from mcpdsl._version import __version__
from mcpdsl.builder.artifacts import compile_artifacts
from mcpdsl.compile import TargetContext, TargetOutput, envoy, load_target
from mcpdsl.compile.envoy_matchers import path_match
from mcpdsl.ir import globs
from mcpdsl.ir import model as m
from mcpdsl.ir.paths import globs_overlap, rewrite_path
from mcpdsl.pipeline import compile_tree

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "envoy"
OWN_TREES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())


# ------------------------------------------------------------------ helpers


@cache
def _compile_dir(path: str) -> tuple[m.Project, TargetOutput]:
    compilation = compile_tree(path)
    errors = [f"{d.code}: {d.message}" for d in compilation.diagnostics if d.is_error]
    assert compilation.project is not None, errors
    return compilation.project, envoy.compile(compilation.project, ctx())


def ctx() -> TargetContext:
    return TargetContext(version=__version__)


def fixture(name: str) -> TargetOutput:
    return _compile_dir(str(FIXTURES / name))[1]


def project_of(name: str) -> m.Project:
    return _compile_dir(str(FIXTURES / name))[0]


def bootstrap(name: str, gateway: str) -> dict[str, Any]:
    for artifact in fixture(name).artifacts:
        if artifact.path == f"envoy/{gateway}.json":
            return json.loads(artifact.content)  # type: ignore[no-any-return]
    raise KeyError(gateway)


def hcm(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def routes(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return hcm(doc)["route_config"]["virtual_hosts"][0]["routes"]  # type: ignore[no-any-return]


def clusters(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["static_resources"]["clusters"]}


def filter_names(doc: dict[str, Any]) -> list[str]:
    return [f["name"] for f in hcm(doc)["http_filters"]]


def other_trees() -> list[Any]:
    """policies/ and examples/* when present (skipped when absent or broken)."""
    found = []
    for path in [REPO / "policies", *sorted((REPO / "examples").glob("*"))]:
        if path.is_dir() and any(path.rglob("*.mcp")):
            found.append(pytest.param(path, id=path.relative_to(REPO).as_posix()))
    return found or [pytest.param(None, marks=pytest.mark.skip(reason="no policies/ or examples/"))]


def tiny_project(
    routes_: list[m.Route],
    *,
    integrations: tuple[m.Integration, ...] = (),
    policies: tuple[m.Policy, ...] = (),
) -> m.Project:
    """A hand-built IR project: services `api` and `web`, one gateway `gw` with `routes_`."""
    services = tuple(
        m.Service(package="p", name=n, image="img", port=8080, namespace="p")
        for n in ("api", "web")
    )
    gateway = m.Gateway(package="p", name="gw", port=8080, routes=tuple(routes_))
    return m.Project(
        packages=("p",),
        services=services,
        integrations=integrations,
        policies=policies,
        gateways=(gateway,),
    )


def to_service(name: str = "api") -> m.RouteTarget:
    return m.RouteTarget(kind="service", ref=m.Ref(package="p", name=name))


def tiny_bootstrap(project: m.Project) -> dict[str, Any]:
    out = envoy.compile(project, ctx())
    return json.loads(out.artifacts[0].content)  # type: ignore[no-any-return]


# ---------------------------------------------------------- validation


@pytest.mark.parametrize("tree", OWN_TREES)
def test_fixture_trees_pass_mcpdsl_check(tree: str) -> None:
    compilation = compile_tree(FIXTURES / tree)
    assert [d for d in compilation.diagnostics if d.is_error] == []


@pytest.mark.parametrize("tree", OWN_TREES)
def test_every_bootstrap_of_our_fixtures_validates(tree: str) -> None:
    out = fixture(tree)
    assert out.artifacts
    for artifact in out.artifacts:
        assert artifact.path.startswith("envoy/") and artifact.path.endswith(".json")
        assert validate_envoy_bootstrap(json.loads(artifact.content)) == [], artifact.path


@pytest.mark.parametrize("tree", other_trees())
def test_every_bootstrap_of_policies_and_examples_validates(tree: Path) -> None:
    compilation = compile_tree(tree)
    if compilation.project is None:
        pytest.skip(f"{tree.name} does not compile yet")
    out = envoy.compile(compilation.project, ctx())
    assert len(out.artifacts) == len(compilation.project.gateways)
    for artifact in out.artifacts:
        assert validate_envoy_bootstrap(json.loads(artifact.content)) == [], artifact.path


@pytest.mark.parametrize("tree", OWN_TREES)
def test_snapshot_of_every_bootstrap(tree: str, snapshot: Any) -> None:
    out = fixture(tree)
    for artifact in out.artifacts:
        assert artifact.content.decode("utf-8") == snapshot(name=artifact.path)
    records = sorted(f"{e.rule} | {e.where}" for e in out.enforcement)
    assert records == snapshot(name="enforcement")
    findings = [
        f"{d.severity}[{d.code}] {d.message}" for d in out.diagnostics if d.enforcement is None
    ]
    assert findings == snapshot(name="diagnostics")
    assert all(d.span is not None for d in out.diagnostics)


@pytest.mark.parametrize("tree", OWN_TREES)
def test_output_is_deterministic(tree: str) -> None:
    first = envoy.compile(compile_tree(FIXTURES / tree).project, ctx())  # type: ignore[arg-type]
    second = envoy.compile(compile_tree(FIXTURES / tree).project, ctx())  # type: ignore[arg-type]
    assert [(a.path, a.content) for a in first.artifacts] == [
        (a.path, a.content) for a in second.artifacts
    ]
    assert first.enforcement == second.enforcement and first.diagnostics == second.diagnostics


def test_target_is_registered_and_builds_through_the_pipeline() -> None:
    assert load_target("envoy").NAME == "envoy"
    result = compile_artifacts(compile_tree(FIXTURES / "routing"), ("envoy",))
    paths = [a.path for a in result.artifacts]
    assert paths == ["envoy/internal.json", "envoy/public.json", "ir/project.json", "manifest.json"]


def test_bootstrap_shape() -> None:
    doc = bootstrap("routing", "public")
    assert doc["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9901}
    listener = doc["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8443}
    manager = hcm(doc)
    assert manager["codec_type"] == "AUTO" and manager["stat_prefix"] == "public"
    vhosts = manager["route_config"]["virtual_hosts"]
    assert len(vhosts) == 1
    assert vhosts[0]["domains"] == ["shop.example", "api.shop.example"]  # deduplicated
    assert (
        bootstrap("routing", "internal")["static_resources"]["listeners"][0]["address"][
            "socket_address"
        ]["port_value"]
        == 9000
    )
    assert hcm(bootstrap("routing", "internal"))["route_config"]["virtual_hosts"][0]["domains"] == [
        "*"
    ]
    assert filter_names(doc)[-1] == "envoy.filters.http.router"
    # routes keep their declaration order and name their declaration
    declared = [r.path for r in project_of("routing").gateways[1].routes]
    assert [r["metadata"]["filter_metadata"]["mcpdsl"]["path"] for r in routes(doc)] == declared


# ------------------------------------------------------------- matching


def test_path_specifiers() -> None:
    assert path_match("/v1/items") == {"path": "/v1/items"}
    assert path_match("/v1/**") == {"path_separated_prefix": "/v1"}
    assert path_match("/**") == {"prefix": "/"}
    assert path_match("/v1/*/x") == {"safe_regex": {"regex": globs.glob_regex("/v1/*/x")}}
    assert path_match("/v1/**/x") == {"safe_regex": {"regex": globs.glob_regex("/v1/**/x")}}
    # PREFIX ending in `/` cannot be a path_separated_prefix: the glob regex is used
    assert path_match("/v1//**") == {"safe_regex": {"regex": globs.glob_regex("/v1//**")}}


def test_prefix_glob_is_exact_in_envoy() -> None:
    doc = tiny_bootstrap(tiny_project([m.Route(path="/v1/**", target=to_service())]))
    for path, hit in [
        ("/v1", True),
        ("/v1/", True),
        ("/v1/a", True),
        ("/v1/a/b?x=1", True),
        ("/v1?x=/", True),
        ("/v10", False),
        ("/v", False),
        ("/", False),
        ("/V1", False),
    ]:
        assert (match_route(doc, "GET", path) is not None) is hit, path
        assert globs.matches("/v1/**", path) is hit, path


_SEGMENT_CHARS = st.sampled_from([*"abz09-._~!$&'()*+,;=:@", "%41", "%2B"])
_SEGMENT = (
    st.lists(_SEGMENT_CHARS, min_size=1, max_size=4)
    .map("".join)
    .filter(lambda s: s not in (".", ".."))
)
_PATTERN_SEGMENT = st.one_of(
    st.sampled_from(["*", "**", "a", "b", "v1.0", "a+b", "(x)", "$", "a.b"]), _SEGMENT
)


@st.composite
def patterns(draw: st.DrawFn) -> str:
    segs = draw(st.lists(_PATTERN_SEGMENT, min_size=1, max_size=4))
    if draw(st.booleans()) and segs[-1] not in ("*", "**"):
        segs.append("")  # a trailing slash
    return "/" + "/".join(segs)


@st.composite
def normal_paths(draw: st.DrawFn, near: str | None = None) -> str:
    """Paths Envoy leaves unchanged when normalising (no dot segments, no `//`)."""
    if near is not None and draw(st.booleans()):
        segs = []
        for seg in near.split("/")[1:]:
            if seg == "*":
                segs.append(draw(_SEGMENT))
            elif seg == "**":
                segs.extend(draw(st.lists(_SEGMENT, max_size=2)))
            else:
                segs.append(seg)
    else:
        segs = draw(
            st.lists(st.one_of(_SEGMENT, st.sampled_from(["a", "v1.0", "a+b"])), max_size=4)
        )
    if draw(st.booleans()):
        segs.append("")
    path = "/" + "/".join(segs)
    path = re.sub("/{2,}", "/", path)
    if draw(st.booleans()):
        path += "?" + draw(st.sampled_from(["x=1", "a/b", "", "q=/v1/**"]))
    assume(normalize_path(path) == path)
    return path


@settings(max_examples=300)
@given(data=st.data())
def test_route_matching_equals_glob_semantics(data: st.DataObject) -> None:
    """Random globs and paths: Envoy (as configured) matches exactly when `globs.matches` does."""
    pattern = data.draw(patterns())
    doc = tiny_bootstrap(tiny_project([m.Route(path=pattern, target=to_service())]))
    for _ in range(5):
        path = data.draw(normal_paths(pattern))
        got = match_route(doc, "GET", path)
        assert (got is not None) == globs.matches(pattern, path), (pattern, path, routes(doc))


@settings(max_examples=200)
@given(data=st.data())
def test_first_match_order_is_kept(data: st.DataObject) -> None:
    pats = data.draw(st.lists(patterns(), min_size=1, max_size=4))
    project = tiny_project([m.Route(path=p, target=to_service()) for p in pats])
    doc = tiny_bootstrap(project)
    path = data.draw(normal_paths(data.draw(st.sampled_from(pats))))
    expected = next((i for i, p in enumerate(pats) if globs.matches(p, path)), None)
    got = match_route(doc, "GET", path)
    assert (got["index"] if got else None) == expected


def test_methods_are_matched_exactly() -> None:
    route = m.Route(path="/x", methods=("GET", "POST"), target=to_service())
    doc = tiny_bootstrap(tiny_project([route]))
    assert match_route(doc, "GET", "/x") is not None
    assert match_route(doc, "POST", "/x") is not None
    assert match_route(doc, "PUT", "/x") is None
    assert match_route(doc, "get", "/x") is None
    one = tiny_bootstrap(tiny_project([m.Route(path="/x", methods=("GET",), target=to_service())]))
    assert routes(one)[0]["match"]["headers"] == [
        {"name": ":method", "string_match": {"exact": "GET"}}
    ]


def test_normalisation_and_escaped_slashes() -> None:
    doc = tiny_bootstrap(tiny_project([m.Route(path="/v1/**", target=to_service())]))
    assert match_route(doc, "GET", "/admin/../v1/x")["path"] == "/v1/x"  # type: ignore[index]
    assert match_route(doc, "GET", "/v1/../admin") is None
    assert match_route(doc, "GET", "//v1//x")["path"] == "/v1/x"  # type: ignore[index]
    with pytest.raises(RequestRejected):
        match_route(doc, "GET", "/v1%2F..%2Fadmin")


def test_virtual_host_domains() -> None:
    doc = bootstrap("routing", "public")
    assert match_route(doc, "GET", "/v1/x", {"host": "shop.example:8443"}) is not None
    assert match_route(doc, "GET", "/v1/x", {"host": "evil.example"}) is None


# -------------------------------------------------------------- rewrite


@pytest.mark.parametrize(
    ("pattern", "rewrite", "path", "expected"),
    [
        ("/v1/**", "/", "/v1/items", "/items"),
        ("/v1/**", "/", "/v1", "/"),
        ("/v1/**", "/", "/v1/", "/"),
        ("/v1/**", "/", "/v1/a/b?x=1", "/a/b?x=1"),
        ("/v1/**", "/", "/v1//a", "//a"),
        ("/v1/**", "/api", "/v1/items", "/api/items"),
        ("/v1/**", "/api", "/v1", "/api"),
        ("/v1/**", "/api/", "/v1/", "/api/"),
        ("/v1/**", "/api/", "/v1", "/api"),
        ("/**", "/api", "/x/y", "/api/x/y"),
        ("/**", "/", "/x", "/x"),
        ("/healthz", "/ready", "/healthz?verbose", "/ready?verbose"),
        ("/v1/*/items", "/items", "/v1/42/items", "/items"),
        ("/v1/**/q", "/search", "/v1/a/b/q", "/search"),
        ("/a/**", "/b\\1", "/a/x", "/b\\1/x"),
        ("/a", "/new\nline", "/a", "/new%0Aline"),
    ],
)
def test_rewrite_semantics(pattern: str, rewrite: str, path: str, expected: str) -> None:
    route = m.Route(path=pattern, target=to_service(), rewrite=rewrite)
    assert rewrite_path(route, path) == expected
    doc = tiny_bootstrap(tiny_project([route]))
    assert validate_envoy_bootstrap(doc) == []
    if normalize_path(path) == path:  # Envoy merges `//` before routing
        assert match_route(doc, "GET", path)["path"] == expected  # type: ignore[index]


def test_rewrite_path_refuses_non_matching_paths_and_missing_integrations() -> None:
    with pytest.raises(ValueError, match="does not match"):
        rewrite_path(m.Route(path="/v1/**", target=to_service(), rewrite="/"), "/v2")
    crm = m.RouteTarget(kind="integration", ref=m.Ref(package="p", name="crm"))
    with pytest.raises(ValueError, match="needs the integration"):
        rewrite_path(m.Route(path="/crm/*", target=crm), "/crm/1")
    # a route without rewrite keeps the path
    assert rewrite_path(m.Route(path="/v1/**", target=to_service()), "/v1/x?y") == "/v1/x?y"


_REWRITES = st.one_of(
    st.sampled_from(["/", "/api", "/api/", "//", "/a.b+c", "/x\\y", "/q?x", '/}"{']),
    st.text(st.sampled_from(list("ab/\\.+$1{}")), max_size=6).map(lambda s: "/" + s),
)


@settings(max_examples=300)
@given(data=st.data())
def test_rewrite_in_envoy_equals_rewrite_path(data: st.DataObject) -> None:
    pattern = data.draw(patterns())
    rewrite = data.draw(st.one_of(st.none(), _REWRITES))
    route = m.Route(path=pattern, target=to_service(), rewrite=rewrite)
    doc = tiny_bootstrap(tiny_project([route]))
    for _ in range(4):
        path = data.draw(normal_paths(pattern))
        got = match_route(doc, "GET", path)
        if got is None:
            assert not globs.matches(pattern, path)
            continue
        assert got["path"] == rewrite_path(route, path), (pattern, rewrite, path)


def _integration(url: str, **kw: Any) -> m.Integration:
    return m.Integration(package="p", name="crm", method="GET", url=url, **kw)


@pytest.mark.parametrize(
    ("pattern", "url", "path", "expected"),
    [
        ("/crm/*", "https://crm.internal/api/v2/customers/{id}", "/crm/42", "/api/v2/customers/42"),
        (
            "/crm/**",
            "https://crm.internal/api/v2/customers/{id}",
            "/crm/42",
            "/api/v2/customers/42",
        ),
        ("/crm/**", "https://crm.internal/api/v2/customers/{id}", "/crm", "/api/v2/customers"),
        ("/crm/*/x/*", "http://h/a/{x}/b/{y}.json", "/crm/1/x/2?q", "/a/1/b/2.json?q"),
        ("/crm", "http://h/rest/issue", "/crm", "/rest/issue"),
        ("/crm", "http://h", "/crm", "/"),
        ("/crm/**", "http://h", "/crm/a", "/a"),
        ("/crm", "http://h/a/{id}", "/crm", "/crm"),  # cannot be mapped: unchanged
        ("/crm/*", "http://h/a/{x}/{y}", "/crm/1", "/crm/1"),  # placeholder count differs
    ],
)
def test_integration_url_template(pattern: str, url: str, path: str, expected: str) -> None:
    integration = _integration(url)
    target = m.RouteTarget(kind="integration", ref=m.Ref(package="p", name="crm"))
    route = m.Route(path=pattern, target=target)
    assert rewrite_path(route, path, integration) == expected
    project = tiny_project([route], integrations=(integration,))
    out = envoy.compile(project, ctx())
    doc = json.loads(out.artifacts[0].content)
    assert validate_envoy_bootstrap(doc) == []
    assert match_route(doc, "GET", path)["path"] == expected  # type: ignore[index]
    if expected == path and pattern != "/crm/**":
        assert any(
            d.code == "B0112" and "forwarded unchanged" in d.message for d in out.diagnostics
        )


def test_integration_cluster_and_route() -> None:
    doc = bootstrap("routing", "public")
    crm = clusters(doc)["integration_crm-lookup"]
    assert crm["type"] == "LOGICAL_DNS"
    address = crm["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address["socket_address"] == {"address": "crm.internal", "port_value": 443}
    tls = crm["transport_socket"]["typed_config"]
    assert tls["sni"] == "crm.internal"
    assert tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "crm.internal"}}
    ]
    orders = clusters(doc)["integration_orders"]
    assert "transport_socket" not in orders
    assert orders["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"
    ] == {"address": "orders.internal", "port_value": 8081}
    got = match_route(doc, "GET", "/v1/crm/42")
    assert got is not None and got["cluster"] == "integration_crm-lookup"
    assert got["path"] == "/api/v2/customers/42" and got["host"] == "crm.internal"
    assert got["timeout"] == Decimal(2)  # the integration's timeout
    assert got["target"] == ("integration", "shop.crm-lookup")
    posted = match_route(doc, "POST", "/v1/orders")
    assert posted is not None and posted["path"] == "/rest/orders"
    assert posted["host"] == "orders.internal:8081"


# --------------------------------------------------- timeouts and retries


def test_timeouts_and_retries() -> None:
    doc = bootstrap("routing", "public")
    by_path = {r["metadata"]["filter_metadata"]["mcpdsl"]["path"]: r["route"] for r in routes(doc)}
    assert by_path["/healthz"]["timeout"] == "1s"
    assert by_path["/v1/**"]["timeout"] == "5s"
    assert by_path["/v1/**"]["retry_policy"] == {"num_retries": 2, "retry_on": "5xx"}
    assert by_path["/v1/crm/*"]["retry_policy"] == {
        "num_retries": 3,
        "retry_on": "5xx,reset",
        "retry_back_off": {"base_interval": "0.2s", "max_interval": "5s"},
    }
    # the route's count wins; conditions and backoff stay the integration's
    assert by_path["/v2/crm/**"]["retry_policy"]["num_retries"] == 1
    assert by_path["/v2/crm/**"]["retry_policy"]["retry_on"] == "5xx,reset"
    assert by_path["/v2/crm/**"]["timeout"] == "3s"
    assert by_path["/v1/orders"]["retry_policy"] == {"num_retries": 2, "retry_on": "5xx"}
    assert "retry_policy" not in by_path["/**"]
    assert "timeout" not in by_path["/**"]


# -------------------------------------------------------------- clusters


def test_service_clusters_lb_policies() -> None:
    c = clusters(bootstrap("routing", "public"))
    assert {n: c[n]["lb_policy"] for n in ("api", "catalog", "sessions", "search")} == {
        "api": "LEAST_REQUEST",
        "catalog": "RING_HASH",
        "sessions": "MAGLEV",
        "search": "RANDOM",
    }
    assert clusters(bootstrap("rbac", "bank"))["ledger"]["lb_policy"] == "ROUND_ROBIN"
    assert all(x["type"] in ("STRICT_DNS", "LOGICAL_DNS") for x in c.values())
    address = c["catalog"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert address["address"]["socket_address"] == {
        "address": "catalog-headless.catalog.svc.cluster.local",
        "port_value": 9000,
    }


def test_health_checks() -> None:
    c = clusters(bootstrap("routing", "public"))
    assert c["api"]["health_checks"] == [
        {
            "http_health_check": {"path": "/healthz"},
            "interval": "5s",
            "timeout": "1s",
            "healthy_threshold": 2,
            "unhealthy_threshold": 3,
        }
    ]
    assert c["catalog"]["health_checks"][0]["tcp_health_check"] == {}
    assert c["catalog"]["health_checks"][0]["interval"] == "10s"
    grpc = c["sessions"]
    assert grpc["health_checks"][0]["grpc_health_check"] == {}
    options = grpc["typed_extension_protocol_options"]
    assert options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"][
        "explicit_http_config"
    ] == {"http2_protocol_options": {}}
    assert "health_checks" not in c["search"]


def test_outlier_detection() -> None:
    c = clusters(bootstrap("routing", "public"))
    assert c["api"]["outlier_detection"] == {
        "consecutive_5xx": 5,
        "base_ejection_time": "30s",
        "max_ejection_percent": 50,
    }
    assert "outlier_detection" not in c["catalog"]


def test_failover_regions_become_priorities() -> None:
    api = clusters(bootstrap("routing", "public"))["api"]
    endpoints = api["load_assignment"]["endpoints"]
    assert [(e["locality"]["region"], e["priority"]) for e in endpoints] == [
        ("eu-north-1", 0),
        ("eu-west-1", 1),
        ("us-east-1", 2),
    ]
    assert [
        e["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["address"] for e in endpoints
    ] == [
        # the headless Service (pods) of each region, not a per-region ClusterIP
        "api-headless.core.eu-north-1.svc.cluster.local",
        "api-headless.core.eu-west-1.svc.cluster.local",
        "api-headless.core.us-east-1.svc.cluster.local",
    ]


def test_hash_policy_for_affinity() -> None:
    doc = bootstrap("routing", "public")
    cookie = match_route(doc, "GET", "/v1/catalog/7/items")
    assert cookie is not None and cookie["cluster"] == "catalog"
    assert cookie["hash_policy"] == [{"cookie": {"name": "shop-session", "ttl": "3600s"}}]
    header = match_route(doc, "GET", "/v1/sessions/x")
    assert header is not None and header["hash_policy"] == [
        {"header": {"header_name": "x-session-id"}}
    ]
    plain = match_route(doc, "GET", "/v1/x")
    assert plain is not None and plain["hash_policy"] is None


def test_affinity_without_hashing_strategy_is_a_note() -> None:
    balance = m.Balance(
        package="p",
        name="api",
        service=m.Ref(package="p", name="api"),
        strategy="least-request",
        affinity=m.Affinity(source="cookie", key="s"),
    )
    project = tiny_project([m.Route(path="/**", target=to_service())]).model_copy(
        update={"balances": (balance,)}
    )
    out = envoy.compile(project, ctx())
    assert "hash_policy" not in routes(json.loads(out.artifacts[0].content))[0]["route"]
    assert any(d.code == "B0113" and "affinity" in d.message for d in out.diagnostics)


def test_cluster_names_stay_distinct() -> None:
    services = tuple(
        m.Service(package=pkg, name="opa", image="i", port=1, namespace=pkg) for pkg in ("a", "b")
    )
    integration = m.Integration(package="a", name="x", method="GET", url="http://h/", tool="t")
    policy = m.Policy(
        package="a",
        name="p",
        rules=(
            m.Rule(
                id="r",
                effect="allow",
                principal=m.EntityPattern(type="agent"),
                resource=m.EntityPattern(),
            ),
        ),
    )
    gateway = m.Gateway(
        package="a",
        name="gw",
        port=80,
        routes=(
            m.Route(
                path="/a/**",
                target=m.RouteTarget(kind="service", ref=m.Ref(package="a", name="opa")),
            ),
            m.Route(
                path="/b/**",
                target=m.RouteTarget(kind="service", ref=m.Ref(package="b", name="opa")),
            ),
            m.Route(
                path="/x",
                target=m.RouteTarget(kind="integration", ref=m.Ref(package="a", name="x")),
            ),
        ),
    )
    project = m.Project(
        services=services, integrations=(integration,), policies=(policy,), gateways=(gateway,)
    )
    doc = tiny_bootstrap(project)
    assert sorted(clusters(doc)) == ["a.opa", "b.opa", "integration_x", "opa"]
    assert validate_envoy_bootstrap(doc) == []


# ----------------------------------------------------------- rate limits


def _filter(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f["typed_config"] for f in hcm(doc)["http_filters"] if f["name"] == name)


def test_gateway_limit_is_a_listener_wide_token_bucket() -> None:
    doc = bootstrap("routing", "public")
    config = _filter(doc, "envoy.filters.http.local_ratelimit")
    assert config["token_bucket"] == {
        "max_tokens": 20000,
        "tokens_per_fill": 10000,
        "fill_interval": "1s",
    }
    hundred = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
    assert config["filter_enabled"] == hundred and config["filter_enforced"] == hundred
    assert "descriptors" not in config
    assert filter_names(doc)[:2] == [
        "envoy.filters.http.local_ratelimit",
        "envoy.filters.http.local_ratelimit.route",
    ]
    assert "envoy.filters.http.local_ratelimit" not in filter_names(
        bootstrap("routing", "internal")
    )


def test_route_limits_and_per_client_ip_descriptors() -> None:
    doc = bootstrap("routing", "public")
    base = _filter(doc, "envoy.filters.http.local_ratelimit.route")
    assert "filter_enabled" not in base and "token_bucket" not in base  # off by default
    per_route = {
        r["metadata"]["filter_metadata"]["mcpdsl"]["path"]: r["typed_per_filter_config"].get(
            "envoy.filters.http.local_ratelimit.route"
        )
        for r in routes(doc)
    }
    crm = per_route["/v1/crm/*"]
    assert crm["token_bucket"] == {"max_tokens": 200, "tokens_per_fill": 100, "fill_interval": "1s"}
    assert crm["filter_enforced"]["default_value"]["numerator"] == 100
    api = per_route["/v1/**"]
    assert api["descriptors"] == [
        {
            "entries": [{"key": "remote_address", "value": ""}],
            "token_bucket": {"max_tokens": 2000, "tokens_per_fill": 1000, "fill_interval": "1s"},
        }
    ]
    assert api["rate_limits"] == [{"actions": [{"remote_address": {}}]}]
    assert api["always_consume_default_token_bucket"] is False
    assert api["max_dynamic_descriptors"] == 10000
    # 0.5/s: whole tokens over a longer interval
    assert per_route["/v1/sessions/**"]["token_bucket"] == {
        "max_tokens": 5,
        "tokens_per_fill": 5,
        "fill_interval": "10s",
    }
    assert per_route["/v1/search/**/q"] is None  # no limit on `search`


def test_unknown_limit_key_is_left_out_with_a_note() -> None:
    balance = m.Balance(
        package="p",
        name="api",
        service=m.Ref(package="p", name="api"),
        limit=m.Limit(rate=m.Rate(amount=Decimal(10), per=Decimal(1)), key="user"),
    )
    project = tiny_project([m.Route(path="/**", target=to_service())]).model_copy(
        update={"balances": (balance,)}
    )
    out = envoy.compile(project, ctx())
    doc = json.loads(out.artifacts[0].content)
    assert "envoy.filters.http.local_ratelimit.route" not in filter_names(doc)
    dropped = [d for d in out.diagnostics if d.code == "B0110"]
    assert dropped and "per user" in dropped[0].message
    assert dropped[0].severity == "warning"


# ------------------------------------------------------ RBAC vs ext_authz


def test_rbac_only_policy_compiles_to_rbac_alone() -> None:
    out = fixture("rbac")
    doc = bootstrap("rbac", "bank")
    assert filter_names(doc) == [
        "envoy.filters.http.rbac.deny",
        "envoy.filters.http.rbac.allow.access",
        "envoy.filters.http.router",
    ]
    assert "opa" not in clusters(doc)
    assert out.enforcement
    assert all(e.target == "envoy" and not e.where.startswith("ext_authz") for e in out.enforcement)
    ledger = {e.rule: e.where for e in out.enforcement if e.where.endswith("route /v1/**")}
    assert ledger == {
        "access/read": "rbac allow, gateway bank, route /v1/**",
        "access/write": "rbac allow, gateway bank, route /v1/**",
        "access/admin": "rbac allow, gateway bank, route /v1/**",
        "access/frozen": "rbac deny, gateway bank, route /v1/**",
        "access/no-delete": "rbac deny, gateway bank, route /v1/**",
        "access/outside": "rbac deny, gateway bank, route /v1/**",
        "audit/no-debug": "rbac deny, gateway bank, route /v1/**",
    }
    # `read` targets /v1/accounts/**: it cannot match the reports route
    reports = {e.rule for e in out.enforcement if "/v1/reports/**" in e.where}
    assert "access/read" not in reports and "access/reports-x" in reports


def test_context_rule_forces_ext_authz_for_its_route_only() -> None:
    out = fixture("mixed")
    doc = bootstrap("mixed", "edge")
    assert filter_names(doc) == [
        "envoy.filters.http.rbac.deny",
        "envoy.filters.http.rbac.allow.zero-trust",
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.router",
    ]
    ext = _filter(doc, "envoy.filters.http.ext_authz")
    assert ext["failure_mode_allow"] is False and "with_request_body" not in ext
    assert ext["grpc_service"]["envoy_grpc"]["cluster_name"] == "opa"
    opa = clusters(doc)["opa"]
    assert opa["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"
    ] == {"address": "opa.mcpdsl-system.svc.cluster.local", "port_value": 9191}
    per = {
        r["metadata"]["filter_metadata"]["mcpdsl"]["path"]: r["typed_per_filter_config"]
        for r in routes(doc)
    }
    ext_name = "envoy.filters.http.ext_authz"
    allow_name = "envoy.filters.http.rbac.allow.zero-trust"
    deny_name = "envoy.filters.http.rbac.deny"
    # /v1/** reads context.device.managed -> OPA; the expressible deny stays in RBAC
    assert per["/v1/**"][ext_name]["check_settings"]["context_extensions"] == {
        "mcpdsl.gateway": "platform.edge",
        "mcpdsl.route": "0",
        "mcpdsl.resource.type": "service",
        "mcpdsl.resource.id": "api",
    }
    assert list(per["/v1/**"][deny_name]["rbac"]["rules"]["policies"]) == ["zero-trust/bad-ip"]
    assert "rbac" not in per["/v1/**"][allow_name]  # no partial allow side
    # /status: RBAC alone
    assert per["/status"][ext_name] == {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
        "disabled": True,
    }
    assert list(per["/status"][allow_name]["rbac"]["rules"]["policies"]) == [
        "zero-trust/status-read"
    ]
    # /billing/**: the context deny and the obligation (`require mfa`) delegate
    assert "check_settings" in per["/billing/**"][ext_name]
    assert "check_settings" in per["/crm/*"][ext_name]
    where = {(e.rule, e.where) for e in out.enforcement}
    assert (
        "zero-trust/device",
        "ext_authz -> opa, gateway edge, route /v1/** (names principal `user any`, which has no "
        "verifiable identity; reads context.device.managed)",
    ) in where
    assert ("zero-trust/bad-ip", "rbac deny, gateway edge, route /v1/**") in where
    assert ("zero-trust/status-read", "rbac allow, gateway edge, route /status") in where
    assert any(
        r == "zero-trust/web-api" and "route delegated: zero-trust/device" in w for r, w in where
    )
    assert (
        "zero-trust/geo",
        "ext_authz -> opa, gateway edge, route /billing/** (reads context.geo)",
    ) in where
    # every relevant rule of every route has a record, and only those
    assert {r for r, _ in where} == {
        "zero-trust/web-api",
        "zero-trust/device",
        "zero-trust/bad-ip",
        "zero-trust/status-read",
        "zero-trust/geo",
        "zero-trust/billing-read",
        "zero-trust/crm-agents",
        "zero-trust/crm-web",
    }


def test_requests_through_the_mixed_gateway() -> None:
    doc = bootstrap("mixed", "edge")
    assert authorize(doc, "GET", "/status") == "allow"
    assert authorize(doc, "POST", "/status") == "deny"
    assert authorize(doc, "GET", "/v1/x", source_ip="192.0.2.7") == "deny"  # RBAC deny first
    assert authorize(doc, "GET", "/v1/x", source_ip="10.1.1.1") == "ext_authz"
    assert authorize(doc, "GET", "/nowhere") is None


def test_obligation_folded_away_when_its_condition_cannot_hold() -> None:
    """`require mfa when resource.id == "billing"` does not delegate the /status route."""
    out = fixture("mixed")
    assert ("zero-trust/status-read", "rbac allow, gateway edge, route /status") in {
        (e.rule, e.where) for e in out.enforcement
    }


def doc_route_path(doc: dict[str, Any]) -> str:
    """A path the first route of the bootstrap matches (a prefix or an exact path)."""
    match = hcm(doc)["route_config"]["virtual_hosts"][0]["routes"][0]["match"]
    return str(match.get("path") or match.get("prefix") or "/")


def test_no_policies_means_the_gateway_denies_everything() -> None:
    """Fail closed as the engine does: one RBAC ALLOW filter without policies, no OPA (B0117)."""
    out = fixture("routing")
    doc = bootstrap("routing", "public")
    access = [n for n in filter_names(doc) if "rbac" in n or "ext_authz" in n]
    assert access == ["envoy.filters.http.rbac.closed"]
    closed = next(f for f in hcm(doc)["http_filters"] if f["name"] == access[0])
    assert closed["typed_config"]["rules"] == {"action": "ALLOW"}
    first = doc_route_path(doc)
    assert authorize(doc, "GET", first) == "deny"
    assert "opa" not in clusters(doc)
    assert any(d.code == "B0117" and "gateway public" in d.message for d in out.diagnostics)


def test_default_allow_policy_has_no_allow_filter() -> None:
    doc = bootstrap("rbac", "bank")
    assert "envoy.filters.http.rbac.allow.audit" not in filter_names(doc)
    assert authorize(doc, "GET", "/v1/reports/x", {"x-debug": "1"}) == "deny"


# RBAC-only routes must agree with the engine on every request Envoy can see.

_IDENTITIES = {
    "frontend": "spiffe://bank.local/ns/bank/sa/frontend",
    "admin-ui": "spiffe://bank.local/ns/bank/sa/admin-ui",
    "ledger": "spiffe://bank.local/ns/core/sa/ledger",
    "reports": None,  # no identity: Envoy sees an anonymous caller
}


@st.composite
def bank_requests(draw: st.DrawFn) -> dict[str, Any]:
    headers: dict[str, str] = {}
    for name, values in [
        ("x-env", ["prod", "staging", "dev", ""]),
        ("x-freeze", ["on", "off"]),
        ("x-debug", ["1", "0"]),
        ("x-idempotency-key", ["", "k1"]),
    ]:
        if draw(st.booleans()):
            headers[name] = draw(st.sampled_from(values))
    path = draw(
        st.sampled_from(
            [
                "/v1/accounts/1",
                "/v1/accounts",
                "/v1/transfers",
                "/v1/transfers?x=1",
                "/v1/reports/q",
                "/v1/reports",
                "/v1/other",
                "/v1",
            ]
        )
    )
    return {
        "caller": draw(st.sampled_from(sorted(_IDENTITIES))),
        "method": draw(st.sampled_from(["GET", "POST", "DELETE", "PUT"])),
        "path": path,
        "headers": headers,
        "ip": draw(st.sampled_from(["10.1.2.3", "192.168.1.1", "10.255.255.255", "11.0.0.1"])),
    }


@settings(max_examples=400)
@given(req=bank_requests())
def test_rbac_agrees_with_the_engine(req: dict[str, Any]) -> None:
    engine_mod = pytest.importorskip("mcpdsl.engine.engine")
    engine = engine_mod.Engine.from_project(project_of("rbac"))
    doc = bootstrap("rbac", "bank")
    routed = match_route(doc, req["method"], req["path"], req["headers"])
    assert routed is not None
    envoy_says = authorize(
        doc,
        req["method"],
        req["path"],
        req["headers"],
        source_ip=req["ip"],
        peer=_IDENTITIES[req["caller"]],
    )
    resource = routed["target"][1].split(".")[1]
    decision = engine.authorize(
        {
            "principal": {"type": "service", "id": req["caller"]},
            "action": req["method"],
            "resource": {"type": "service", "id": resource},
            "request": {"path": req["path"], "headers": req["headers"]},
            "source": {"ip": req["ip"]},
        }
    )
    if _IDENTITIES[req["caller"]] is None:
        # Envoy cannot know this caller: it may only be stricter than the engine
        assert not (envoy_says == "allow" and not decision.enforced), req
    else:
        assert envoy_says == ("allow" if decision.enforced else "deny"), (req, decision)


def test_rbac_expressions_cover_missing_headers() -> None:
    """`!=` and `not in` are false when the header is absent (MISSING), as in the engine."""
    doc = bootstrap("rbac", "bank")
    frontend = _IDENTITIES["frontend"]
    args = {"source_ip": "10.0.0.9", "peer": frontend}
    assert authorize(doc, "POST", "/v1/transfers", {}, **args) == "deny"  # type: ignore[arg-type]
    assert authorize(doc, "POST", "/v1/transfers", {"x-idempotency-key": ""}, **args) == "deny"  # type: ignore[arg-type]
    assert authorize(doc, "POST", "/v1/transfers", {"x-idempotency-key": "k"}, **args) == "allow"  # type: ignore[arg-type]
    assert (
        authorize(
            doc,
            "POST",
            "/v1/transfers",
            {"x-idempotency-key": "k"},
            source_ip="8.8.8.8",
            peer=frontend,
        )
        == "deny"
    )


# ------------------------------------------------------------ injection


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (str(k), *_strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def test_hostile_strings_survive_the_json_round_trip() -> None:
    artifact = fixture("injection").artifacts[0]
    text = artifact.content.decode("utf-8")
    doc = json.loads(text)
    assert json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n" == text
    strings = _strings(doc)
    project = project_of("injection")
    weird = next(s for s in project.services if s.name == "weird")
    assert weird.identity in strings
    assert 'we"ird.example' in strings and "bücher.example" in strings
    assert "back\\slash.example" in strings
    assert 'se"ss}ion-ü' in strings
    assert 'a"b\\c}\n€' in strings  # a header value, exact
    # the raw text never carries a raw control character inside a JSON string
    assert "\n€" not in text and "\\n€" in text


def test_regexes_are_escaped_and_match_literally() -> None:
    doc = bootstrap("injection", "odd")
    assert match_route(doc, "GET", "/files/a/v1.0+x") is not None
    assert match_route(doc, "GET", "/files/a/v1x0+x") is None
    assert match_route(doc, "GET", "/files/a/v1.00x") is None
    assert match_route(doc, "GET", "/files/a/v1.0x") is None
    assert match_route(doc, "GET", "/v1.0/a+b") is not None
    assert match_route(doc, "GET", "/v1x0/a+b") is None
    assert match_route(doc, "GET", "/v1.0/aab") is None
    # backslashes in a rewrite stay literal (RE2 rewrite syntax), `\1` is no group reference
    got = match_route(doc, "GET", "/files/z/v1.0+x")
    assert got is not None and got["path"] == "/f\\1"
    special = match_route(doc, "GET", "/v1.0/a+b")
    assert special is not None and special["path"] == '/x\\y"}%0A€'


def test_health_path_controls_are_percent_encoded() -> None:
    weird = clusters(bootstrap("injection", "odd"))["weird"]
    assert weird["health_checks"][0]["http_health_check"]["path"] == '/health%0Az"\\}'
    found = [d for d in fixture("injection").diagnostics if d.code == "B0115"]
    assert found and "percent-encoded" in found[0].message and found[0].severity == "info"


# ---------------------------------------------------------------- globs


def test_glob_overlap_cases() -> None:
    assert globs_overlap("/v1/**", "/v1")
    assert globs_overlap("/v1/*", "/**/x")
    assert not globs_overlap("/v1/*", "/v1")
    assert not globs_overlap("/v1/*", "/v1/")  # `*` never matches an empty segment
    assert globs_overlap("/v1/**", "/v1/")
    assert not globs_overlap("/a/**/b", "/a")
    assert globs_overlap("/**/b/**", "/a/**/c")


@settings(max_examples=300)
@given(a=patterns(), b=patterns(), data=st.data())
def test_glob_overlap_is_sound(a: str, b: str, data: st.DataObject) -> None:
    """No overlap claimed -> no path matches both (and a common path -> overlap claimed)."""
    for near in (a, b):
        path = data.draw(normal_paths(near))
        if globs.matches(a, path) and globs.matches(b, path):
            assert globs_overlap(a, b), (a, b, path)


def _regexes(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["regex"]] if isinstance(node.get("regex"), str) else []
        return found + [r for v in node.values() for r in _regexes(v)]
    if isinstance(node, list):
        return [r for v in node for r in _regexes(v)]
    return []


_RE2_CHECK = """
import json, sys
import re2
for regex, samples in json.load(sys.stdin):
    compiled = re2.compile(regex)
    print(json.dumps([compiled.fullmatch(s) is not None for s in samples]))
"""


def test_every_regex_compiles_and_matches_the_same_with_re2() -> None:
    """Real RE2 (google-re2) compiles every generated regex and agrees with `re` on samples.

    Run in a subprocess: google-re2 and regopy (the OPA tests) abort when both
    native libraries are loaded into one interpreter.
    """
    if importlib.util.find_spec("re2") is None:
        pytest.skip("google-re2 is not installed")
    samples = ["/", "/v1", "/v1/", "/v1/a", "/files/a/v1.0+x", "/files/a/v1x0+x", "GET", "get"]
    cases = []
    for tree in OWN_TREES:
        for artifact in fixture(tree).artifacts:
            cases.extend((r, samples) for r in _regexes(json.loads(artifact.content)))
    cases.extend((globs.glob_regex(p), samples) for p in ["/a b/*", "/\\x/**", "/é/**/(x)"])
    run = subprocess.run(
        [sys.executable, "-c", _RE2_CHECK],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    for (regex, texts), line in zip(cases, run.stdout.splitlines(), strict=True):
        assert json.loads(line) == [re.fullmatch(regex, t) is not None for t in texts], regex


def test_engine_imports_the_rewrite_semantics_from_the_target() -> None:
    assert envoy.rewrite_path is rewrite_path
    assert "rewrite_path" in envoy.__all__
