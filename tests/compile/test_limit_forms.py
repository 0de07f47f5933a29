"""No `limit` form is accepted and then dropped.

For every place a `limit` may stand (gateway, integration, balance) and every
`per KEY` form, either the front end refuses it with a coded error, or the
generated Envoy gateway applies it (a local rate limit on the listener or on
every route to the limited upstream), or -- for an upstream no gateway routes
to -- the embedded engine keeps a bucket for it (`Engine.admit`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mcpdsl.compile import TargetContext, envoy
from mcpdsl.evaluate.limits import limit_specs
from mcpdsl.ir.clauses import IDENTITY_LIMIT_KEYS, LIMIT_KEYS
from mcpdsl.pipeline import compile_tree

KEYS = ["", *LIMIT_KEYS, *IDENTITY_LIMIT_KEYS, "clientip", "ip", "client_ip", "tenant-id"]
SITES = ["gateway", "integration", "balance", "integration-unrouted", "balance-unrouted"]
RATES = ["10/s", "0.5/s burst 3", "600/m burst 20"]

BASE = """package shop

service api {{ image "example/api:1" port 8080 stateful }}
service lone {{ image "example/lone:1" port 8080 stateful }}

balance api {{
  strategy least-request
  {balance}
}}

balance lone {{
  strategy least-request
  {lone}
}}

integration crm {{
  call GET "https://crm.example.com/api/{{id}}"
  {integration}
}}

integration mail {{
  call POST "https://mail.example.com/send"
  {mail}
}}

gateway edge {{
  listen 8080
  {gateway}
  route "/api/**" -> service api
  route "/crm/*" -> integration crm
}}
"""


def _source(site: str, clause: str) -> str:
    slots = {"balance": "", "lone": "", "integration": "", "mail": "", "gateway": ""}
    slot = {
        "gateway": "gateway",
        "integration": "integration",
        "balance": "balance",
        "integration-unrouted": "mail",
        "balance-unrouted": "lone",
    }[site]
    slots[slot] = clause
    return BASE.format(**slots)


def _limited_routes(doc: dict[str, Any]) -> tuple[bool, set[str]]:
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    listener = any(
        f["name"] == envoy.GATEWAY_LIMIT_FILTER and "token_bucket" in f["typed_config"]
        for f in hcm["http_filters"]
    )
    routes = {
        r["match"].get("path_separated_prefix") or r["match"].get("safe_regex", {}).get("regex")
        for r in hcm["route_config"]["virtual_hosts"][0]["routes"]
        if envoy.ROUTE_LIMIT_FILTER in r.get("typed_per_filter_config", {})
    }
    return listener, routes


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("site", SITES)
def test_no_limit_form_is_silently_dropped(tmp_path: Path, site: str, key: str, rate: str) -> None:
    clause = f"limit {rate}" + (f" per {key}" if key else "")
    (tmp_path / "main.mcp").write_text(_source(site, clause), encoding="utf-8")
    compilation = compile_tree(tmp_path)
    errors = [d for d in compilation.diagnostics if d.is_error]
    if key and key not in LIMIT_KEYS:
        assert [d.code for d in errors] == ["E0315"], [d.message for d in errors]
        assert key in errors[0].message
        return
    assert not errors, [d.message for d in errors]
    project = compilation.project
    assert project is not None
    out = envoy.compile(project, TargetContext(version="test"))
    assert not [d for d in out.diagnostics if d.code == "B0110"]
    listener, routes = _limited_routes(json.loads(out.artifacts[0].content))
    if site == "gateway":
        assert listener and not routes
    elif site == "balance":
        assert routes == {"/api"} and not listener
    elif site == "integration":
        assert len(routes) == 1 and not listener
    else:  # no gateway reaches it: the engine's `admit` holds its bucket
        name = "service:lone" if site == "balance-unrouted" else "integration:mail"
        assert name in limit_specs(project)
        assert not listener and not routes
