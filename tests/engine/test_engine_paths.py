"""One path, one meaning: the engine, the Rego (in the real OPA engine) and Envoy agree.

With `deny ... "/v1.0/admin/**"`, variants of an admin path (dot segments,
doubled slashes, percent-encoded `.`, `/`, `\\`, `%` and letters, a trailing
slash, query strings, `;params`, backslashes) must never be allowed: a path
not in normal form is refused by both `Engine.authorize` and the Rego with the
same reason, a path Envoy answers with 400 is never allowed by the engine, and
a path the engine allows is exactly the path Envoy routes and forwards.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from engine_support import REPO, engine_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from validators import opa_available

from mcpdsl.compile import TargetContext, load_target
from mcpdsl.engine import Engine
from mcpdsl.ir import globs
from mcpdsl.ir.paths import PathRejected

sys.path.insert(0, str(REPO / "tests" / "compile"))
from envoy_matcher import RequestRejected, match_route, normalize_path

pytestmark = pytest.mark.skipif(not opa_available(), reason="the OPA engine is not installed")

SOURCE = """
policy access {
  default deny
  no-admin: deny any -> any on * "/v1.0/admin/**"
  open: allow any -> any
}

gateway edge {
  listen 8443
  route "/v1.0/**" -> service api
}
"""
QUERY = "out := [d | some r in input.batch; d := data.mcp.main.decision with input as r]"

#: Hand-picked variants of `/v1.0/admin/x` and of harmless paths.
VARIANTS = [
    "/v1.0/admin/x",
    "/v1.0//admin/x",
    "//v1.0/admin/x",
    "/v1.0/./admin/x",
    "/v1.0/x/../admin/y",
    "/v1.0/x/..;p/admin/y",
    "/v1.0/.;p/admin/x",
    "/v1.0/%2e/admin/x",
    "/v1.0/x/%2e%2e/admin/y",
    "/v1.0/x/%2E%2E/admin/y",
    "/v1.0%2fadmin/x",
    "/v1.0%2Fadmin/x",
    "/v1.0%5cadmin/x",
    "/v1.0\\admin/x",
    "/v1.0/x/..\\admin/y",
    "/v1.0/%61dmin/x",
    "/v1.0/%41dmin/x",
    "/v1%2e0/admin/x",
    "/v1.0/admin%2fx",
    "/v1.0/admin/x%00",
    "/v1.0/admin",
    "/v1.0/admin/",
    "/v1.0/admin?x=1",
    "/v1.0/admin/x?y=/../z",
    "/v1.0/admin#frag",
    "/v1.0/items?next=/v1.0/admin/x",
    "/v1.0/items/../../v1.0/admin",
    "/v1.0/items;a=b",
    "/v1.0/admin;a=b/x",
    "/v1.0/%25/admin",
    "/v1.0/%252e%252e/admin",
    "/v1.0/items/",
    "/v1.0/items/.",
    "/v1.0/items/..",
    "/v1.0/a%20b",
    "/v1.0/items/%7e",
    "/v1.0/..",
    "/..",
    "/",
    "",
    "v1.0/admin/x",
    "?/v1.0/admin/x",
    "/v1.0/admin/x/.",
]

SEGMENT_TRICKS = [
    "",
    ".",
    "..",
    "%2e",
    "%2E%2e",
    "..;x",
    ".;x",
    "%2f",
    "%5C",
    "%25",
    "%2541",
    "%61",
    "admin",
    "admin;a",
    "x",
    "v1.0",
    "\\",
    "a\\..",
]


@cache
def setup() -> tuple[Engine, Any, dict[str, Any]]:
    import tempfile

    from opa_bindings import OpaEngine

    engine = engine_for(Path(tempfile.mkdtemp(prefix="paths")), SOURCE)
    output = load_target("opa").compile(engine.project, TargetContext(version="test"))
    opa = OpaEngine()
    for artifact in output.artifacts:
        if artifact.path.endswith(".rego"):
            opa.add_policy(artifact.path, artifact.content.decode("utf-8"))
        if artifact.path == "opa/data.json":
            opa.add_data(json.loads(artifact.content))
    envoy = load_target("envoy").compile(engine.project, TargetContext(version="test"))
    bootstrap = next(
        json.loads(a.content)
        for a in envoy.artifacts
        if a.path.endswith(".json") and b"static_resources" in a.content
    )
    return engine, opa, bootstrap


def req(path: str) -> dict[str, Any]:
    return {
        "principal": {"type": "service", "id": "frontend"},
        "action": "GET",
        "resource": {"type": "service", "id": "api"},
        "request": {"path": path},
    }


def envoy_view(bootstrap: dict[str, Any], path: str) -> str | None:
    """The path Envoy routes and hands to its filters, or None when Envoy answers 400."""
    try:
        match_route(bootstrap, "GET", path)
        return normalize_path(path)
    except RequestRejected:
        return None


def check(paths: list[str]) -> None:
    engine, opa, bootstrap = setup()
    theirs = opa.eval_query(QUERY, {"batch": [req(p) for p in paths]})[0]["out"]
    for path, rego in zip(paths, theirs, strict=True):
        d = engine.authorize(req(path))
        mine = d.as_dict()
        for key in ("allowed", "rules", "obligations", "default_applied"):
            assert mine[key] == rego[key], (path, key, mine, rego)
        assert mine.get("refusal") == rego.get("refusal"), (path, mine, rego)
        assert (d.refusal is None) == (globs.path_problem(path) is None)
        seen = envoy_view(bootstrap, path)
        if seen is None:
            assert not d.allowed, f"Envoy rejects {path!r} (400) but the engine allows it"
            with pytest.raises(PathRejected):
                engine.route("edge", "GET", path)
            continue
        if d.allowed:
            # an allowed path is in normal form: Envoy routes exactly this path ...
            assert seen == path, (path, seen)
        # ... and whatever Envoy makes of the path, the deny on its normal form holds
        on_seen = engine.authorize(req(seen))
        if globs.matches("/v1.0/admin/**", seen):
            assert not d.allowed and not on_seen.allowed, (path, seen)
        routed = engine.route("edge", "GET", path)
        envoy = match_route(bootstrap, "GET", path)
        assert (routed is None) == (envoy is None), path
        if routed is not None and envoy is not None:
            assert routed.path == envoy["path"], path


def test_hand_picked_variants_agree_everywhere() -> None:
    check(VARIANTS)
    engine = setup()[0]
    assert engine.authorize(req("/v1.0/items")).allowed
    assert not engine.authorize(req("/v1.0/./admin/x")).allowed
    assert engine.authorize(req("/v1.0/./admin/x")).refusal == (
        "request.path is not in normal form: it contains a `.` or `..` segment"
    )
    assert engine.authorize(req("/v1.0//admin/x")).refusal == (
        "request.path is not in normal form: it contains an empty segment (`//`)"
    )


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.lists(st.sampled_from(SEGMENT_TRICKS), min_size=1, max_size=6).map(
            lambda segs: "/" + "/".join(segs)
        ),
        min_size=1,
        max_size=20,
    ),
    st.sampled_from(["", "?", "?a=/../admin", "#x", "/", ";p"]),
)
def test_random_variants_agree_everywhere(paths: list[str], tail: str) -> None:
    check([p + tail for p in paths] + ["/v1.0" + p + tail for p in paths])
