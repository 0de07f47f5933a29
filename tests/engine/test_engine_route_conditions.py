"""Routes as users write them: `prefix` matches, `header` / `query` conditions and per-route
`retry ... on [...] per try timeout`, in `Engine.route` and in the generated Envoy route
table (read back by tests/compile/envoy_matcher.py, an independent model of Envoy).
"""

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
from mcpdsl.ir import model as m

sys.path.insert(0, str(REPO / "tests" / "compile"))
from envoy_matcher import RequestRejected, match_route
from validators import validate_envoy_bootstrap

SOURCE = """
integration crm {
  call GET "https://crm.internal/api/v2/customers"
  timeout 2s
  retry 3 backoff 200ms..5s on [5xx] per try timeout 500ms
}

gateway edge {
  listen 8443
  route prefix "/v1/bl" on GET header "x-canary" == "on" -> service frontend
  route prefix "/v1/bl" query "debug" == "1" -> service frontend rewrite "/debug"
  route prefix "/v1/bl" -> service api retry 2 on [reset, connect-failure] per try timeout 1s
  route "/v2/**" header "x-env" != "prod" query "trace" -> service frontend retry 1
  route "/v2/**" header "x-team" -> service api rewrite "/" timeout 3s
  route prefix "/crm" -> integration crm retry 5
  route prefix "/" -> service postgres rewrite "/root/"
}

# routing, not access control: opened deliberately (without a policy all is denied, B0117)
policy open { default allow }
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return engine_for(tmp_path_factory.mktemp("conditions"), SOURCE)


@pytest.fixture(scope="module")
def bootstrap(engine: Engine) -> dict[str, Any]:
    out = load_target("envoy").compile(engine.project, TargetContext(version="test"))
    assert not [d for d in out.diagnostics if d.code.startswith("B011")]
    return json.loads(out.artifacts[0].content)  # type: ignore[no-any-return]


def _agree(engine: Engine, boot: dict[str, Any], method: str, path: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    try:
        theirs = match_route(boot, method, path, headers)
    except RequestRejected:
        with pytest.raises(ValueError):
            engine.route("edge", method, path, headers)
        return None
    mine = engine.route("edge", method, path, headers)
    if mine is None or theirs is None:
        assert mine is None and theirs is None, (method, path, headers, mine, theirs)
        return None
    where = (method, path, headers)
    assert mine.index == theirs["index"], where
    assert (mine.target_kind, mine.target_qualified) == tuple(theirs["target"]), where
    assert mine.path == theirs["path"], where
    assert mine.timeout == theirs["timeout"], where
    assert mine.retries == theirs["retries"], where
    assert ",".join(mine.retry_on) == (theirs["retry_on"] or ""), where
    assert mine.per_try_timeout == theirs["per_try_timeout"], where
    return mine


def test_a_prefix_is_text_not_segments(engine: Engine) -> None:
    for path in ("/v1/bl", "/v1/blocked", "/v1/bl/x", "/v1/blx?y=1"):
        d = engine.route("edge", "POST", path)
        assert d is not None and (d.target, d.index) == ("api", 2), path
    d = engine.route("edge", "POST", "/v1/b")
    assert d is not None and d.index == 6  # only the catch-all `prefix "/"`


def test_header_and_query_conditions(engine: Engine) -> None:
    assert engine.route("edge", "GET", "/v1/bl", {"X-Canary": "on"}).index == 0  # type: ignore[union-attr]
    assert engine.route("edge", "GET", "/v1/bl", {"x-canary": "off"}).index == 2  # type: ignore[union-attr]
    assert engine.route("edge", "POST", "/v1/bl", {"x-canary": "on"}).index == 2  # type: ignore[union-attr]
    assert engine.route("edge", "GET", "/v1/bl?debug=1").index == 1  # type: ignore[union-attr]
    assert engine.route("edge", "GET", "/v1/bl?debug=%31").index == 1  # type: ignore[union-attr]
    assert engine.route("edge", "GET", "/v1/bl?debug=2&debug=1").index == 2  # type: ignore[union-attr]
    # `!=` needs the header: a missing one matches neither `==` nor `!=` (Envoy inverts
    # a matcher only on a present header)
    assert engine.route("edge", "GET", "/v2/x?trace").index == 6  # type: ignore[union-attr]
    assert engine.route("edge", "GET", "/v2/x?trace", {"x-env": "dev"}).index == 3  # type: ignore[union-attr]
    assert engine.route("edge", "GET", "/v2/x?trace", {"x-env": "prod"}).index == 6  # type: ignore[union-attr]
    assert engine.route("edge", "GET", "/v2/x", {"x-team": ""}).index == 4  # type: ignore[union-attr]


def test_per_route_retry(engine: Engine, bootstrap: dict[str, Any]) -> None:
    d = _agree(engine, bootstrap, "POST", "/v1/bl", {})
    assert d is not None and d.retries == 2 and d.retry_on == ("reset", "connect-failure")
    assert d.per_try_timeout == Decimal(1)
    # a route `retry N` over an integration's retry: its count, the integration's rest
    d = _agree(engine, bootstrap, "GET", "/crm/7", {})
    assert d is not None and d.retries == 5 and d.retry_on == ("5xx",)
    assert d.per_try_timeout == Decimal("0.5") and d.path == "/api/v2/customers/7"
    routes = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]["route_config"]["virtual_hosts"][0]["routes"]
    policy = routes[5]["route"]["retry_policy"]
    assert policy == {
        "num_retries": 5,
        "retry_on": "5xx",
        "per_try_timeout": "0.5s",
        "retry_back_off": {"base_interval": "0.2s", "max_interval": "5s"},
    }
    assert routes[0]["match"] == {
        "prefix": "/v1/bl",
        "headers": [
            {"name": ":method", "string_match": {"exact": "GET"}},
            {"name": "x-canary", "string_match": {"exact": "on"}},
        ],
    }
    assert routes[3]["match"]["headers"] == [
        {"name": "x-env", "string_match": {"exact": "prod"}, "invert_match": True}
    ]
    assert routes[3]["match"]["query_parameters"] == [{"name": "trace", "present_match": True}]


def test_the_bootstrap_is_valid(bootstrap: dict[str, Any]) -> None:
    assert validate_envoy_bootstrap(bootstrap) == []


def test_prefix_rewrites_are_envoys(engine: Engine, bootstrap: dict[str, Any]) -> None:
    d = _agree(engine, bootstrap, "GET", "/v1/blocked/x?debug=1", {})
    assert d is not None and d.path == "/debugocked/x?debug=1"  # the text is replaced
    d = _agree(engine, bootstrap, "GET", "/other?q=1", {})
    assert d is not None and d.path == "/root/other?q=1"


SEGMENTS = ["v1", "v2", "bl", "blx", "blocked", "crm", "7", "x", "", "%41"]
QUERIES = [
    "",
    "?debug=1",
    "?debug=%31",
    "?debug=2&debug=1",
    "?debug",
    "?trace",
    "?trace=&debug=1",
    "?%64ebug=1",
    "?debug=1#f",
    "#debug=1",
    "?a=%zz&trace",
    "?debug=1+",
    "?trace&x=%C3%A9",
]
HEADERS = st.dictionaries(
    st.sampled_from(["x-canary", "X-Canary", "x-env", "x-team", "x-other"]),
    st.sampled_from(["on", "off", "prod", "dev", ""]),
    max_size=3,
)


@settings(max_examples=1500, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "get"]),
    segs=st.lists(st.sampled_from(SEGMENTS), max_size=4),
    tail=st.sampled_from(["", "b", "bl", "/"]),
    query=st.sampled_from(QUERIES),
    headers=HEADERS,
)
def test_engine_and_envoy_agree_on_generated_requests(
    engine: Engine,
    bootstrap: dict[str, Any],
    method: str,
    segs: list[str],
    tail: str,
    query: str,
    headers: dict[str, str],
) -> None:
    # lower-case duplicates would be two headers on the wire; keep one spelling each
    seen: dict[str, str] = {}
    for k in headers:
        seen.setdefault(k.lower(), k)
    headers = {k: v for k, v in headers.items() if seen[k.lower()] == k}
    path = "/" + "/".join(s for s in segs if s) + tail
    _agree(engine, bootstrap, method, path.replace("//", "/"), headers)


def test_route_conditions_lower_and_print(tmp_path: Path) -> None:
    from mcpdsl.fmt import format_source

    engine = engine_for(tmp_path, SOURCE)
    routes = engine.project.gateways[0].routes
    assert routes[0].prefix and routes[0].headers == (
        m.RouteCondition(name="x-canary", op="==", value="on", span=routes[0].headers[0].span),
    )
    text = format_source("package t\n" + SOURCE)
    flat = " ".join(text.split())
    assert 'route prefix "/v1/bl" on GET header "x-canary" == "on" -> service frontend' in flat
    assert "retry 2 on [reset, connect-failure] per try timeout 1s" in flat
    assert format_source(text) == text
