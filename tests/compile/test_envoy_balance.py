"""`balance` settings that reach the Envoy cluster: outlier `every` (interval), the
`connections` pool (circuit breakers, requests per connection) and failover regions
the list leaves out (placed last, as Istio does).  Each bootstrap is validated with
xds-protos + PGV (tests/validators.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from validators import validate_envoy_bootstrap

import mcpdsl
from mcpdsl.compile import TargetContext, envoy
from mcpdsl.pipeline import compile_tree

HTTP = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

SOURCE = """package shop

service api {
  image   "example/api:1"
  port    8080
  regions ["eu-north-1", "eu-west-1", "us-east-1", "ap-south-1"]
  stateful
}

service search {
  image "example/search:1"
  port  9000
  stateful
}

balance api {
  strategy    least-request
  eject       after 5 errors for 30s max 50% every 2s
  failover    ["eu-west-1", "eu-north-1"]
  connections { max 100, pending 20, requests 500, per-connection 50 }
}

balance search {
  health      grpc every 10s timeout 1s healthy 2 unhealthy 3
  connections { per-connection 1 }
}

gateway edge {
  listen 8080
  route  "/api/**" -> service api
  route  "/search/**" -> service search
}
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "main.mcp").write_text(text, encoding="utf-8")
    return tmp_path


def _clusters(tmp_path: Path, text: str = SOURCE) -> tuple[dict[str, Any], dict[str, Any]]:
    project = mcpdsl.load(_write(tmp_path, text))
    out = envoy.compile(project, TargetContext(version="test"))
    doc = json.loads(out.artifacts[0].content)
    return doc, {c["name"]: c for c in doc["static_resources"]["clusters"]}


def test_outlier_interval(tmp_path: Path) -> None:
    _, c = _clusters(tmp_path)
    assert c["api"]["outlier_detection"] == {
        "consecutive_5xx": 5,
        "base_ejection_time": "30s",
        "max_ejection_percent": 50,
        "interval": "2s",
    }


def test_connection_pool(tmp_path: Path) -> None:
    _, c = _clusters(tmp_path)
    assert c["api"]["circuit_breakers"] == {
        "thresholds": [
            {
                "priority": "DEFAULT",
                "max_connections": 100,
                "max_pending_requests": 20,
                "max_requests": 500,
            }
        ]
    }
    options = c["api"]["typed_extension_protocol_options"][HTTP]
    assert options["explicit_http_config"] == {"http_protocol_options": {}}
    assert options["common_http_protocol_options"] == {"max_requests_per_connection": 50}
    # a gRPC-checked service stays HTTP/2 and gets the per-connection cap beside it
    search = c["search"]["typed_extension_protocol_options"][HTTP]
    assert search["explicit_http_config"] == {"http2_protocol_options": {}}
    assert search["common_http_protocol_options"] == {"max_requests_per_connection": 1}
    assert "circuit_breakers" not in c["search"]


def test_regions_left_out_of_failover_come_last(tmp_path: Path) -> None:
    _, c = _clusters(tmp_path)
    endpoints = c["api"]["load_assignment"]["endpoints"]
    assert [(e["locality"]["region"], e["priority"]) for e in endpoints] == [
        ("eu-west-1", 0),
        ("eu-north-1", 1),
        ("us-east-1", 2),
        ("ap-south-1", 2),
    ]


def test_the_bootstrap_is_valid(tmp_path: Path) -> None:
    doc, _ = _clusters(tmp_path)
    assert validate_envoy_bootstrap(doc) == []


def test_the_bootstrap_is_deterministic(tmp_path: Path) -> None:
    a = envoy.compile(mcpdsl.load(_write(tmp_path, SOURCE)), TargetContext(version="t"))
    b = envoy.compile(mcpdsl.load(_write(tmp_path, SOURCE)), TargetContext(version="t"))
    assert [x.content for x in a.artifacts] == [x.content for x in b.artifacts]


@pytest.mark.parametrize(
    ("clause", "code", "words"),
    [
        ("connections { max 0 }", "E0303", "out of bounds"),
        ("connections { max 4294967296 }", "E0303", "out of bounds"),
        ("connections { pending 1.5 }", "E0311", ""),
        ("connections { maximum 3 }", "E0203", "unknown setting `maximum`"),
        ("connections { }", "E0202", "sets nothing"),
        ("eject after 5 errors for 30s every 0s", "E0303", "must be positive"),
        ("eject after 5 errors for 30s every 5MB", "E0301", ""),
    ],
)
def test_hostile_balance_settings_are_coded_diagnostics(
    tmp_path: Path, clause: str, code: str, words: str
) -> None:
    text = SOURCE.replace(
        "  strategy    least-request\n", f"  strategy    least-request\n  {clause}\n", 1
    ).replace("  connections { max 100, pending 20, requests 500, per-connection 50 }\n", "")
    compilation = compile_tree(_write(tmp_path, text))
    found = [d for d in compilation.diagnostics if d.code == code]
    assert found, [(d.code, d.message) for d in compilation.diagnostics]
    assert words in found[0].message
