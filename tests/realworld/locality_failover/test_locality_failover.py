"""Real case: Istio's locality-failover task, as an mcpdsl source.

`failover.mcp` restates the task (a service in region1..region3, outlier
detection after one 5xx every second for a minute, one request per connection,
failover region1 -> region2, the caller in region1).  The outcomes are the
documented ones: traffic stays in region1 while it is healthy and moves to
region2 when region1's endpoints are ejected.  They are computed here from the
generated Envoy cluster with Envoy's documented priority-load rules (a
priority's health is its healthy share times the overprovisioning factor 1.4,
capped at 100 %; priorities take load in order up to their health; below a
normalised total of 100 % the loads are scaled up), not read from the source.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from validators import validate_envoy_bootstrap

from mcpdsl.compile import TargetContext, load_target
from mcpdsl.engine import Engine

HERE = Path(__file__).resolve().parent
#: Envoy's default overprovisioning factor, in percent (1.4).
OVERPROVISIONING = 140


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.load(HERE)


@pytest.fixture(scope="module")
def cluster(engine: Engine) -> dict[str, Any]:
    out = load_target("envoy").compile(engine.project, TargetContext(version="test"))
    assert not [d for d in out.diagnostics if d.severity in ("error", "warning")], out.diagnostics
    (bootstrap,) = [json.loads(a.content) for a in out.artifacts if a.path.startswith("envoy/")]
    assert validate_envoy_bootstrap(bootstrap) == []
    (found,) = [c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "helloworld"]
    return dict(found)


def priority_loads(cluster: dict[str, Any], healthy: dict[str, int], pods: int) -> dict[int, int]:
    """Percent of traffic per priority of `cluster` (Envoy's priority-level rules).

    Every locality's endpoint is a headless DNS name resolving to `pods` pods of
    its region; `healthy[region]` of them are healthy (not ejected).
    """
    factor = int(cluster["load_assignment"].get("policy", {}).get("overprovisioning_factor", 140))
    totals: dict[int, list[int]] = {}
    for locality in cluster["load_assignment"]["endpoints"]:
        region = locality["locality"]["region"]
        count = len(locality["lb_endpoints"]) * pods
        up = min(healthy.get(region, pods), pods) * len(locality["lb_endpoints"])
        entry = totals.setdefault(int(locality.get("priority", 0)), [0, 0])
        entry[0] += up
        entry[1] += count
    order = sorted(totals)
    health = {p: min(100, factor * totals[p][0] // totals[p][1]) for p in order}
    normalised = min(100, sum(health.values()))
    if normalised == 0:  # every host unhealthy: panic mode on the first priority
        return {p: (100 if p == order[0] else 0) for p in order}
    loads: dict[int, int] = {}
    remaining = 100
    for p in order:
        loads[p] = min(remaining, health[p] * 100 // normalised)
        remaining -= loads[p]
    if remaining:  # rounding leftovers go to the first priority with healthy hosts
        first = next(p for p in order if health[p] > 0)
        loads[first] += remaining
    return loads


def traffic_by_region(
    cluster: dict[str, Any], healthy: dict[str, int], pods: int = 1
) -> dict[str, int]:
    """Percent of traffic per region: a priority's load shared among its regions'
    healthy hosts (locality weights are not set, so hosts are equal)."""
    loads = priority_loads(cluster, healthy, pods)
    by_priority: dict[int, list[str]] = {}
    for locality in cluster["load_assignment"]["endpoints"]:
        by_priority.setdefault(int(locality.get("priority", 0)), []).append(
            locality["locality"]["region"]
        )
    share: dict[str, int] = {}
    for p, regions in by_priority.items():
        up = {r: min(healthy.get(r, pods), pods) for r in regions}
        total = sum(up.values()) or len(regions)
        for r in regions:
            share[r] = loads[p] * (up[r] if sum(up.values()) else 1) // total
    return share


def test_localities_are_in_failover_order_with_the_unlisted_region_last(
    cluster: dict[str, Any],
) -> None:
    endpoints = cluster["load_assignment"]["endpoints"]
    assert [(e["locality"]["region"], e["priority"]) for e in endpoints] == [
        ("region1", 0),
        ("region2", 1),
        ("region3", 2),  # not named by `failover`: last, as Istio places it
    ]
    # each region's pods, through the headless Service the Kubernetes target emits
    for e in endpoints:
        (lb,) = e["lb_endpoints"]
        address = lb["endpoint"]["address"]["socket_address"]
        region = e["locality"]["region"]
        assert address == {
            "address": f"helloworld-headless.localityfailover.{region}.svc.cluster.local",
            "port_value": 5000,
        }
    assert cluster["type"] == "STRICT_DNS"


def test_the_headless_service_behind_every_locality_exists(engine: Engine) -> None:
    out = load_target("kubernetes").compile(engine.project, TargetContext(version="test"))
    docs = [
        d
        for a in out.artifacts
        if a.path.endswith(".yaml")
        for d in yaml.safe_load_all(a.content)
        if d
    ]
    (headless,) = [
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "helloworld-headless"
    ]
    assert headless["metadata"]["namespace"] == "localityfailover"
    assert headless["spec"]["clusterIP"] == "None"


def test_outlier_detection_and_connection_pool_are_the_tasks(cluster: dict[str, Any]) -> None:
    assert cluster["outlier_detection"] == {
        "consecutive_5xx": 1,
        "interval": "1s",
        "base_ejection_time": "60s",
    }
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert options["common_http_protocol_options"] == {"max_requests_per_connection": 1}
    # Envoy's default overprovisioning factor (1.4) governs failover: none is set
    assert "policy" not in cluster["load_assignment"]


def test_traffic_stays_in_the_callers_region_while_it_is_healthy(
    cluster: dict[str, Any],
) -> None:
    assert traffic_by_region(cluster, {}) == {"region1": 100, "region2": 0, "region3": 0}


def test_traffic_moves_to_the_failover_region_when_region1_is_ejected(
    cluster: dict[str, Any],
) -> None:
    share = traffic_by_region(cluster, {"region1": 0})
    assert max(share, key=lambda r: share[r]) == "region2"
    assert share == {"region1": 0, "region2": 100, "region3": 0}


def test_the_unlisted_region_takes_traffic_only_when_both_listed_regions_are_down(
    cluster: dict[str, Any],
) -> None:
    assert traffic_by_region(cluster, {"region1": 0, "region2": 0}) == {
        "region1": 0,
        "region2": 0,
        "region3": 100,
    }


def test_partial_degradation_follows_the_overprovisioning_factor(
    cluster: dict[str, Any],
) -> None:
    # 3 pods per region, one ejected in region1: 2/3 x 1.4 = 93 % stays there
    assert traffic_by_region(cluster, {"region1": 2}, pods=3) == {
        "region1": 93,
        "region2": 7,
        "region3": 0,
    }
    # 5 pods, 4 healthy: 4/5 x 1.4 >= 100 %, nothing leaves region1
    assert traffic_by_region(cluster, {"region1": 4}, pods=5)["region1"] == 100


def test_engine_routes_the_caller_to_the_balanced_service(engine: Engine) -> None:
    d = engine.route("caller", "GET", "/hello")
    assert d is not None and d.target == "helloworld"
    assert engine.route("caller", "GET", "/bye") is None
    # The engine routes to a service; it does not choose pods or localities
    # (Engine has no balancing API): the balancing facts it holds are the IR's.
    (balance,) = engine.project.balances
    assert balance.failover == ("region1", "region2")
    assert balance.eject is not None and balance.eject.errors == 1


def test_the_policy_tests_pass(engine: Engine) -> None:
    from mcpdsl.evaluate.project import prepare_project
    from mcpdsl.evaluate.testing import run_tests

    results = run_tests(prepare_project(engine.project))
    assert len(results) == 1 and all(r.passed for r in results)
