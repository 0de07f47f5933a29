"""Tests of the Kubernetes target: real-schema validation, semantic mappings, escaping.

Every document of every tree we have (our fixture, `policies/`, `examples/*`)
is run through the strict Kubernetes 1.33 schemas (KEDA ScaledObjects through
the structural CRD check), because a self-consistent compiler can still emit
manifests the API server rejects.  The unit tests pin the numbers a reviewer
would check by hand: HPA targets and policies, probe timings, cron schedules,
quantities, and which sources a NetworkPolicy admits.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from validators import promql_available, validate_kubernetes, validate_promql

from mcpdsl._version import __version__
from mcpdsl.builder.artifacts import compile_artifacts
from mcpdsl.compile import PlacementPlan, TargetContext, TargetOutput, kubernetes
from mcpdsl.compile.kubernetes_common import (
    assign_names,
    cpu_quantity,
    dns_label,
    label_value,
    memory_quantity,
)
from mcpdsl.compile.kubernetes_scale import cron_days, prom_duration
from mcpdsl.pipeline import compile_tree

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures" / "kubernetes"
FULL = FIXTURES / "full"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: Kinds whose names are unique per namespace only: their file is `<kind>-<ns>.<name>.yaml`.
PER_NAMESPACE = {"ServiceAccount", "ResourceQuota"}


# ------------------------------------------------------------------ helpers


def compile_dir(path: Path, plan: PlacementPlan | None = None) -> TargetOutput:
    """Run the front end and the Kubernetes target on a tree; the tree must be clean."""
    compilation = compile_tree(path)
    errors = [f"{d.code}: {d.message}" for d in compilation.diagnostics if d.is_error]
    assert compilation.project is not None, errors
    return kubernetes.compile(compilation.project, TargetContext(version=__version__, plan=plan))


def compile_text(tmp_path: Path, text: str, plan: PlacementPlan | None = None) -> TargetOutput:
    """Compile one policy file written into a fresh tree."""
    tree = tmp_path / "tree"
    tree.mkdir(exist_ok=True)
    (tree / "main.mcp").write_text(text, encoding="utf-8")
    return compile_dir(tree, plan)


def docs_of(out: TargetOutput) -> dict[str, dict[str, Any]]:
    """Artifact path -> its one YAML document (asserting there is exactly one)."""
    docs = {}
    for artifact in out.artifacts:
        loaded = list(yaml.safe_load_all(artifact.content.decode("utf-8")))
        assert len(loaded) == 1, artifact.path
        docs[artifact.path] = loaded[0]
    return docs


def find(out: TargetOutput, kind: str, name: str) -> dict[str, Any]:
    hits = [d for d in docs_of(out).values() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} documents"
    return hits[0]


def find_in(out: TargetOutput, kind: str, namespace: str, name: str) -> dict[str, Any]:
    """One namespaced object by namespace and name (names repeat across namespaces)."""
    hits = [
        d
        for d in docs_of(out).values()
        if d["kind"] == kind
        and d["metadata"]["name"] == name
        and d["metadata"].get("namespace") == namespace
    ]
    assert len(hits) == 1, f"{kind}/{namespace}/{name}: {len(hits)} documents"
    return hits[0]


def kinds(out: TargetOutput, kind: str) -> list[dict[str, Any]]:
    return [d for d in docs_of(out).values() if d["kind"] == kind]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def container(doc: dict[str, Any]) -> dict[str, Any]:
    return pod_spec(doc)["containers"][0]


def trees() -> list[Any]:
    """Our fixture plus `policies/` and every `examples/*` that exist."""
    found = [pytest.param(FULL, id="fixture-full")]
    candidates = [REPO / "policies"]
    examples = REPO / "examples"
    if examples.is_dir():
        candidates += sorted(p for p in examples.iterdir() if p.is_dir())
    for path in candidates:
        if path.is_dir() and any(path.rglob("*.mcp")):
            found.append(pytest.param(path, id=path.relative_to(REPO).as_posix()))
    return found


SERVICE_HEADER = """package shop

"""


def service(name: str, port: int = 8080, extra: str = "") -> str:
    image = f"example/{name.lower().strip('_')}:1"  # an image reference is lowercase (E0313)
    return f'service {name} {{\n  image "{image}"\n  port {port}\n{extra}}}\n'


# -------------------------------------------------------- whole trees


@pytest.mark.parametrize("tree", trees())
def test_every_document_validates(tree: Path) -> None:
    compilation = compile_tree(tree)
    if compilation.project is None:
        pytest.skip(f"{tree.name} does not compile yet (written concurrently)")
    out = kubernetes.compile(compilation.project, TargetContext(version=__version__))
    problems: list[str] = []
    for path, doc in docs_of(out).items():
        problems += [f"{path}: {e}" for e in validate_kubernetes(doc)]
        meta = doc["metadata"]
        stem = (
            f"{meta['namespace']}.{meta['name']}" if doc["kind"] in PER_NAMESPACE else meta["name"]
        )
        expected = f"{doc['kind'].lower()}-{stem}.yaml"
        assert path.startswith("kubernetes/") and path.endswith("/" + expected), path
        assert doc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mcpdsl"
    assert problems == []


@pytest.mark.skipif(not promql_available(), reason="system component missing: promql-parser")
@pytest.mark.parametrize("tree", trees())
def test_keda_queries_are_valid_promql(tree: Path) -> None:
    compilation = compile_tree(tree)
    if compilation.project is None:
        pytest.skip(f"{tree.name} does not compile yet")
    out = kubernetes.compile(compilation.project, TargetContext(version=__version__))
    for doc in kinds(out, "ScaledObject"):
        for trigger in doc["spec"]["triggers"]:
            if trigger["type"] == "prometheus":
                assert validate_promql(trigger["metadata"]["query"]) == []


def test_fixture_is_clean_and_covers_every_kind() -> None:
    compilation = compile_tree(FULL)
    assert [d for d in compilation.diagnostics if d.is_error] == []
    out = compile_dir(FULL)
    assert {d["kind"] for d in docs_of(out).values()} == {
        "CronJob",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Namespace",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "PriorityClass",
        "ResourceQuota",
        "ScaledObject",
        "Service",
        "ServiceAccount",
        "StatefulSet",
    }


def test_every_namespace_used_is_declared_once() -> None:
    docs = docs_of(compile_dir(FULL)).values()
    declared = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    used = {d["metadata"]["namespace"] for d in docs if "namespace" in d["metadata"]}
    assert sorted(declared) == sorted(set(declared))
    assert used == set(declared)


def test_compiling_twice_gives_identical_bytes() -> None:
    first, second = compile_dir(FULL), compile_dir(FULL)
    assert [(a.path, a.content) for a in first.artifacts] == [
        (a.path, a.content) for a in second.artifacts
    ]
    assert first.enforcement == second.enforcement


def test_output_does_not_depend_on_declaration_order(tmp_path: Path) -> None:
    def without_positions(out: TargetOutput) -> dict[str, Any]:
        docs = docs_of(out)
        for doc in docs.values():
            doc["metadata"].get("annotations", {}).pop("mcpdsl.io/source", None)
        return docs

    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    text = service("alpha", 80, "") + service("beta", 81, "")
    one = compile_text(tmp_path / "1", SERVICE_HEADER + text)
    text = service("beta", 81, "") + service("alpha", 80, "")
    two = compile_text(tmp_path / "2", SERVICE_HEADER + text)
    assert without_positions(one) == without_positions(two)


def test_snapshot_of_every_artifact(snapshot: Any) -> None:
    out = compile_dir(FULL)
    for artifact in out.artifacts:
        assert artifact.content.decode("utf-8") == snapshot(name=artifact.path)
    enforcement = [f"{e.rule} @ {e.where}" for e in out.enforcement]
    assert enforcement == snapshot(name="enforcement")


def test_build_runs_the_target_through_the_registry() -> None:
    result = compile_artifacts(compile_tree(FULL), ("kubernetes",))
    paths = [a.path for a in result.artifacts]
    assert paths[-1] == "manifest.json"
    assert "kubernetes/platform/deployment-api.yaml" in paths
    assert any(e.target == "kubernetes" for e in result.enforcement)


# ------------------------------------------------------------ quantities


@pytest.mark.parametrize(
    ("cores", "text"),
    [("0.5", "500m"), ("2", "2000m"), ("0.25", "250m"), ("0.0005", "1m"), ("1.0001", "1001m")],
)
def test_cpu_is_written_in_millicores(cores: str, text: str) -> None:
    assert cpu_quantity(Decimal(cores)) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [(512 * 2**20, "512Mi"), (2 * 2**30, "2048Mi"), (100_000_000, "100000000"), (1536, "1536")],
)
def test_memory_is_mebibytes_or_bytes(size: int, text: str) -> None:
    assert memory_quantity(size) == text


def test_container_resources_requests_equal_limits_and_gpu_limit(tmp_path: Path) -> None:
    extra = "  cpu 1500m\n  memory 100M\n  gpu 2\n"
    out = compile_text(tmp_path, SERVICE_HEADER + service("gpu-svc", extra=extra))
    res = container(find(out, "Deployment", "gpu-svc"))["resources"]
    assert res == {
        "limits": {"cpu": "1500m", "memory": "100000000", "nvidia.com/gpu": "2"},
        "requests": {"cpu": "1500m", "memory": "100000000"},
    }


# ------------------------------------------------------------- services


def test_replicas_pdb_and_service_port(tmp_path: Path) -> None:
    text = (
        SERVICE_HEADER
        + service("one", 80, "  replicas 1\n  stateful\n  storage { size 1Gi }\n")
        + service("two", 81, "  replicas 2\n  stateful\n")
        + service("auto", 82)
        + "scale auto { replicas 3..9 target cpu 50% }\n"
    )
    out = compile_text(tmp_path, text)
    assert find(out, "StatefulSet", "one")["spec"]["replicas"] == 1
    assert find(out, "StatefulSet", "two")["spec"]["replicas"] == 2
    assert find(out, "Deployment", "auto")["spec"]["replicas"] == 3
    assert find(out, "PodDisruptionBudget", "one")["spec"] == {
        "maxUnavailable": 1,
        "selector": {
            "matchLabels": {
                "app.kubernetes.io/component": "service",
                "app.kubernetes.io/name": "one",
            }
        },
    }
    for name in ("two", "auto"):
        assert find(out, "PodDisruptionBudget", name)["spec"]["maxUnavailable"] == 1
        assert "minAvailable" not in find(out, "PodDisruptionBudget", name)["spec"]
    svc = find(out, "Service", "two")["spec"]
    assert svc["type"] == "ClusterIP"
    assert svc["ports"] == [{"port": 81, "protocol": "TCP", "targetPort": 81}]
    assert kinds(out, "Deployment") == [find(out, "Deployment", "auto")]
    assert not any(d.code == "B0105" for d in out.diagnostics)


def test_probe_timings_from_balance_health(tmp_path: Path) -> None:
    text = (
        SERVICE_HEADER
        + service("web", 8080, "")
        + service("rpc", 9090, "")
        + service("db", 5432, "")
        + 'balance web { health http "/ready" every 1500ms timeout 500ms healthy 3 unhealthy 4 }\n'
        + "balance rpc { health grpc every 10s timeout 2s healthy 1 unhealthy 2 }\n"
        + "balance db { health tcp every 5s timeout 5s healthy 2 unhealthy 3 }\n"
    )
    out = compile_text(tmp_path, text)
    web = container(find(out, "Deployment", "web"))
    assert web["readinessProbe"] == {
        "failureThreshold": 4,
        "httpGet": {"path": "/ready", "port": 8080},
        "periodSeconds": 2,
        "successThreshold": 3,
        "timeoutSeconds": 1,
    }
    assert web["livenessProbe"]["successThreshold"] == 1
    assert web["livenessProbe"]["failureThreshold"] == 4
    rpc = container(find(out, "Deployment", "rpc"))
    assert rpc["readinessProbe"]["grpc"] == {"port": 9090}
    assert (rpc["readinessProbe"]["periodSeconds"], rpc["readinessProbe"]["timeoutSeconds"]) == (
        10,
        2,
    )
    db = container(find(out, "Deployment", "db"))
    assert db["livenessProbe"]["tcpSocket"] == {"port": 5432}


def test_regions_pool_toleration_and_priority(tmp_path: Path) -> None:
    text = (
        SERVICE_HEADER
        + service("spread", extra='  regions ["eu-north-1", "us-east-1"]\n  pool cpus\n')
        + service("gpu", extra="  gpu 1\n  pool gpus\n")
        + "pool cpus { tier gold node { cpu 8, memory 32Gi } nodes 1..3 }\n"
        + 'pool gpus { tier batch node { cpu 8, memory 32Gi, gpu 4 } nodes 1..2 regions ["us-east-1"] }\n'
    )
    out = compile_text(tmp_path, text)
    spread = pod_spec(find(out, "Deployment", "spread"))
    terms = spread["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {
            "matchExpressions": [
                {
                    "key": "topology.kubernetes.io/region",
                    "operator": "In",
                    "values": ["eu-north-1", "us-east-1"],
                }
            ]
        }
    ]
    assert spread["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/region"
    assert spread["nodeSelector"] == {"mcpdsl.io/pool": "cpus"}
    assert "tolerations" not in spread
    assert spread["priorityClassName"] == "mcpdsl-cpus"  # the pool's class, its tier's value
    gpu = pod_spec(find(out, "Deployment", "gpu"))
    assert gpu["tolerations"] == [
        {"effect": "NoSchedule", "key": "mcpdsl.io/pool", "operator": "Equal", "value": "gpus"}
    ]
    assert "topologySpreadConstraints" not in gpu  # one region (inherited from the pool)
    assert gpu["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"][0]["values"] == ["us-east-1"]
    gold, batch = (
        find(out, "PriorityClass", "mcpdsl-cpus"),
        find(out, "PriorityClass", "mcpdsl-gpus"),
    )
    assert (gold["value"], gold["preemptionPolicy"]) == (100000, "PreemptLowerPriority")
    assert (batch["value"], batch["preemptionPolicy"]) == (1000, "Never")


def test_user_labels_cannot_change_selectors(tmp_path: Path) -> None:
    labels = '  labels { team: "core", "app.kubernetes.io/name": "evil", "bad key!": "x" }\n'
    out = compile_text(tmp_path, SERVICE_HEADER + service("api", extra=labels + ""))
    dep = find(out, "Deployment", "api")
    assert dep["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "api"
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["app.kubernetes.io/name"] == "api"
    assert pod_labels["team"] == "core"
    kept = json.loads(dep["metadata"]["annotations"]["mcpdsl.io/labels"])
    assert kept == {"app.kubernetes.io/name": "evil", "bad key!": "x"}


def test_invalid_env_names_are_dropped_with_a_note(tmp_path: Path) -> None:
    env = '  env { GOOD: "1", "bad=name": "2", "also bad": "3" }\n'
    out = compile_text(tmp_path, SERVICE_HEADER + service("api", extra=env + ""))
    assert container(find(out, "Deployment", "api"))["env"] == [{"name": "GOOD", "value": "1"}]
    assert sum(d.code == "B0101" and "env var" in d.message for d in out.diagnostics) == 2


# ------------------------------------------------------------ autoscaling


def test_hpa_numbers(tmp_path: Path) -> None:
    text = (
        SERVICE_HEADER
        + service("api")
        + (
            "scale api {\n  replicas 3..12\n  target cpu 65%\n  target memory 70.5%\n"
            '  target metric "queue_depth" 2.5 per pod\n'
            "  up by 50% every 30s stabilize 1m\n  down by 2 pods every 5m\n}\n"
        )
    )
    hpa = find(compile_text(tmp_path, text), "HorizontalPodAutoscaler", "api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 12)
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}
    assert spec["metrics"] == [
        {
            "resource": {
                "name": "cpu",
                "target": {"averageUtilization": 65, "type": "Utilization"},
            },
            "type": "Resource",
        },
        {
            "resource": {
                "name": "memory",
                "target": {"averageUtilization": 71, "type": "Utilization"},
            },
            "type": "Resource",
        },
        {
            "pods": {
                "metric": {"name": "queue_depth"},
                "target": {"averageValue": "2.5", "type": "AverageValue"},
            },
            "type": "Pods",
        },
    ]
    # both directions are written in full (Kubernetes' defaults filled in), so that the
    # HPA always runs its `behavior` code path, the one `Engine.scale` models
    assert spec["behavior"] == {
        "scaleDown": {
            "policies": [{"periodSeconds": 300, "type": "Pods", "value": 2}],
            "selectPolicy": "Max",
            "stabilizationWindowSeconds": 300,
        },
        "scaleUp": {
            "policies": [{"periodSeconds": 30, "type": "Percent", "value": 50}],
            "selectPolicy": "Max",
            "stabilizationWindowSeconds": 60,
        },
    }


def test_during_and_predict_make_a_keda_scaled_object(tmp_path: Path) -> None:
    text = (
        SERVICE_HEADER
        + service("api")
        + (
            "scale api {\n  replicas 2..20\n  target cpu 70%\n"
            '  target metric "requests_total" 100 per pod\n'
            "  up by 100% every 15s\n"
            '  during weekdays 08:00-18:30 "Europe/Stockholm" { replicas 5..20 }\n'
            "  during weekends 22:00-06:00 UTC { replicas 3..20 }\n"
            '  predict "requests_total" horizon 10m lookback 1d\n}\n'
        )
    )
    out = compile_text(tmp_path, text)
    assert kinds(out, "HorizontalPodAutoscaler") == []
    so = find(out, "ScaledObject", "api")
    assert validate_kubernetes(so) == []
    spec = so["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 20)
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleUp"]["policies"] == [
        {"periodSeconds": 15, "type": "Percent", "value": 100}
    ]
    by_name = {t["name"]: t for t in spec["triggers"]}
    assert by_name["cpu-1"] == {
        "metadata": {"value": "70"},
        "metricType": "Utilization",
        "name": "cpu-1",
        "type": "cpu",
    }
    assert by_name["metric-2"]["metadata"] == {
        "query": 'sum(rate(requests_total{namespace="shop"}[2m]))',
        "serverAddress": "http://prometheus.monitoring:9090",
        "threshold": "100",
    }
    assert by_name["during-1"]["metadata"] == {
        "desiredReplicas": "5",
        "end": "30 18 * * 1-5",
        "start": "0 8 * * 1-5",
        "timezone": "Europe/Stockholm",
    }
    # Saturday and Sunday 22:00 until the next morning (Sunday and Monday) 06:00.
    assert by_name["during-2"]["metadata"]["start"] == "0 22 * * 0,6"
    assert by_name["during-2"]["metadata"]["end"] == "0 6 * * 0,1"
    assert by_name["predict"]["metadata"]["query"] == (
        'predict_linear(sum(rate(requests_total{namespace="shop"}[2m]))[1d:1m], 600)'
    )
    assert by_name["predict"]["metadata"]["threshold"] == "100"


def test_zero_minimum_without_external_trigger_falls_back_to_hpa(tmp_path: Path) -> None:
    text = SERVICE_HEADER + service("api") + "scale api { replicas 0..4 target cpu 80% }\n"
    out = compile_text(tmp_path, text)
    assert find(out, "HorizontalPodAutoscaler", "api")["spec"]["minReplicas"] == 1
    assert kinds(out, "ScaledObject") == []
    assert any(d.code == "B0106" and "0 replicas" in d.message for d in out.diagnostics)


def test_zero_minimum_with_a_metric_uses_keda(tmp_path: Path) -> None:
    text = (
        SERVICE_HEADER
        + service("api")
        + ('scale api { replicas 0..4 target metric "jobs_waiting" 10 per pod }\n')
    )
    so = find(compile_text(tmp_path, text), "ScaledObject", "api")
    assert so["spec"]["minReplicaCount"] == 0
    assert so["spec"]["triggers"][0]["metadata"]["query"] == 'sum(jobs_waiting{namespace="shop"})'


@pytest.mark.parametrize(
    ("days", "shift", "field"),
    [
        ((0, 1, 2, 3, 4), 0, "1-5"),
        ((5, 6), 0, "0,6"),
        ((0, 1, 2, 3, 4, 5, 6), 0, "*"),
        ((0, 2, 3, 4), 0, "1,3-5"),
        ((6,), 1, "1"),
        ((4, 5, 6), 1, "0,1,6"),
    ],
)
def test_cron_days(days: tuple[int, ...], shift: int, field: str) -> None:
    assert cron_days(days, shift) == field


@pytest.mark.parametrize(
    ("seconds", "text"),
    [("604800", "7d"), ("900", "15m"), ("5400", "90m"), ("90", "90s"), ("0.25", "250ms")],
)
def test_prom_durations(seconds: str, text: str) -> None:
    assert prom_duration(Decimal(seconds)) == text


# ------------------------------------------------------------------ pools


def test_quota_priority_and_balloon(tmp_path: Path) -> None:
    text = (
        SERVICE_HEADER
        + service(
            "api", extra='  cpu 1\n  memory 1Gi\n  pool general\n  team "Core Team"\n  replicas 2\n'
        )
        + service("gpu-api", extra='  gpu 1\n  pool general\n  namespace "ml"\n  team "ml"\n')
        + (
            "pool general {\n  tier standard\n  node { cpu 8, memory 32Gi, gpu 4 }\n  nodes 1..3\n"
            '  quota team "Core Team" { cpu 16, memory 64Gi }\n  quota team "ml" { gpu 4 }\n'
            "  reserve api { cpu 10, memory 8Gi }\n}\n"
        )
    )
    out = compile_text(tmp_path, text)
    core = find_in(out, "ResourceQuota", "shop", "general")
    assert core["spec"]["hard"] == {
        "limits.cpu": "16000m",
        "limits.memory": "65536Mi",
        "requests.cpu": "16000m",
        "requests.memory": "65536Mi",
    }
    assert core["spec"]["scopeSelector"] == {
        "matchExpressions": [
            {"operator": "In", "scopeName": "PriorityClass", "values": ["mcpdsl-general"]}
        ]
    }
    assert json.loads(core["metadata"]["annotations"]["mcpdsl.io/teams"]) == ["Core Team"]
    assert find_in(out, "ResourceQuota", "ml", "general")["spec"]["hard"] == {
        "requests.nvidia.com/gpu": "4"
    }
    # No namespace is named after a team any more: quotas go where the team's pods run.
    assert {d["metadata"]["name"] for d in kinds(out, "Namespace")} == {
        "shop",
        "ml",
        "mcpdsl-reservations",
    }
    assert find(out, "PriorityClass", "mcpdsl-general")["value"] == 10000
    balloon = find(out, "Deployment", "balloon-general-api")
    assert balloon["metadata"]["namespace"] == "mcpdsl-reservations"
    assert balloon["spec"]["replicas"] == 2  # 10 cores on 8-core nodes
    spec = pod_spec(balloon)
    assert spec["priorityClassName"] == "mcpdsl-balloon"
    assert spec["containers"][0]["resources"]["requests"] == {"cpu": "5000m", "memory": "4096Mi"}
    assert find(out, "PriorityClass", "mcpdsl-balloon")["value"] < 0
    find(out, "Namespace", "mcpdsl-reservations")


def test_a_quota_without_members_is_reported_not_placed(tmp_path: Path) -> None:
    text = SERVICE_HEADER + (
        'pool p { node { cpu 4, memory 8Gi } nodes 1..2 quota team "nobody" { cpu 2 } }\n'
    )
    out = compile_text(tmp_path, text)
    assert kinds(out, "ResourceQuota") == []
    assert kinds(out, "Namespace") == []
    (found,) = [d for d in out.diagnostics if d.code == "B0116"]
    assert '"nobody"' in found.message and "`shop.p`" in found.message


def test_unknown_tier_gets_the_default_priority(tmp_path: Path) -> None:
    text = SERVICE_HEADER + "pool p { tier turbo node { cpu 4, memory 8Gi } nodes 1..2 }\n"
    out = compile_text(tmp_path, text)
    assert find(out, "PriorityClass", "mcpdsl-p")["value"] == 1000
    assert any(d.code == "B0103" and "turbo" in d.message for d in out.diagnostics)


# ----------------------------------------------------------------- jobs


class FakePlan:
    """The optimiser's duck-typed contract: `placement(job) -> (region, "HH:MM", zone) | None`."""

    def placement(self, job: str) -> tuple[str, str, str] | None:
        return ("us-east-1", "03:15", "UTC") if job == "shop.planned" else None


JOBS = SERVICE_HEADER + (
    'job nightly {\n  image "example/etl:1"\n  cpu 2\n  memory 4Gi\n  runs 1h\n'
    '  window 06:45-09:00 "Europe/Berlin" deadline 2h\n  regions ["eu-north-1", "eu-west-1"]\n}\n'
    'job planned {\n  image "example/etl:1"\n  runs 2h\n  window 01:00-07:00 UTC\n'
    '  regions ["eu-north-1", "us-east-1"]\n}\n'
)


def test_cronjob_schedule_and_deadlines(tmp_path: Path) -> None:
    cron = find(compile_text(tmp_path, JOBS), "CronJob", "nightly")
    spec = cron["spec"]
    assert spec["schedule"] == "45 6 * * *"
    assert spec["timeZone"] == "Europe/Berlin"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 7200
    # The window is 2h15m but the deadline 2h: a start may slip by 2h - 1h.
    assert spec["startingDeadlineSeconds"] == 3600
    pod = pod_spec(cron)
    assert pod["restartPolicy"] == "OnFailure"
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": "2000m", "memory": "4096Mi"}
    values = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"][0]["values"]
    assert values == ["eu-north-1", "eu-west-1"]
    assert cron["metadata"]["annotations"]["mcpdsl.io/placement"] == "window-start"


def test_cronjob_uses_the_plan_when_it_has_a_placement(tmp_path: Path) -> None:
    out = compile_text(tmp_path, JOBS, plan=FakePlan())
    planned = find(out, "CronJob", "planned")
    assert planned["spec"]["schedule"] == "15 3 * * *"
    assert planned["spec"]["timeZone"] == "UTC"
    assert planned["spec"]["startingDeadlineSeconds"] == 6 * 3600 - 2 * 3600 - 135 * 60
    assert planned["metadata"]["annotations"]["mcpdsl.io/placement"] == "plan"
    values = pod_spec(planned)["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
    assert values == ["us-east-1"]
    assert find(out, "CronJob", "nightly")["spec"]["schedule"] == "45 6 * * *"


# ------------------------------------------------------------ zero trust


def network_policy(out: TargetOutput, name: str) -> dict[str, Any]:
    return find(out, "NetworkPolicy", name)["spec"]


def peers(spec: dict[str, Any]) -> list[str]:
    """The pod names a NetworkPolicy admits (`*` = anybody)."""
    if spec["ingress"] == []:
        return []
    rule = spec["ingress"][0]
    if "from" not in rule:
        return ["*"]
    return [p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in rule["from"]]


ZERO_TRUST = (
    SERVICE_HEADER
    + "".join(
        service(n, 8000 + i, "") for i, n in enumerate(["web", "api", "db", "admin", "cache"])
    )
    + "policy access {\n  default deny\n"
    + '  web-api: allow service web -> service api on GET "/v1/**" when request.auth.mfa\n'
    + '  api-db: allow service api -> service db when source.ip in cidr "10.0.0.0/8"\n'
    + '  deny any -> service db unless source.namespace == "shop"\n'
    + "  anyone: allow user any -> service web\n"
    + "  all-cache: allow service [web, api] -> any\n"
    + "}\n"
)


def test_network_policy_sources(tmp_path: Path) -> None:
    out = compile_text(tmp_path, ZERO_TRUST)
    api = network_policy(out, "api")
    assert api["policyTypes"] == ["Ingress"]
    assert api["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/component": "service", "app.kubernetes.io/name": "api"}
    }
    assert sorted(peers(api)) == ["api", "web"]  # web-api, and all-cache reaches any service
    assert api["ingress"][0]["ports"] == [{"port": 8001, "protocol": "TCP"}]
    web_peer = next(
        p
        for p in api["ingress"][0]["from"]
        if p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "web"
    )
    assert web_peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}
    # A CIDR condition never becomes an ipBlock: the peers stay the principals' pods.
    assert sorted(peers(network_policy(out, "db"))) == ["api", "web"]
    assert "ipBlock" not in json.dumps(network_policy(out, "db"))
    # A user principal cannot be narrowed: open on the service port.
    assert network_policy(out, "web")["ingress"] == [{"ports": [{"port": 8000, "protocol": "TCP"}]}]
    annotations = find(out, "NetworkPolicy", "web")["metadata"]["annotations"]
    assert "L3/L4 narrowing only" in annotations["mcpdsl.io/enforcement"]
    assert "Envoy/OPA" in annotations["mcpdsl.io/enforcement"]


def test_default_deny_when_no_allow_reaches_a_service(tmp_path: Path) -> None:
    text = (
        SERVICE_HEADER
        + service("web", 80, "")
        + service("vault", 81, "")
        + "policy p {\n  default deny\n  allow service web -> service web\n}\n"
    )
    assert network_policy(compile_text(tmp_path, text), "vault")["ingress"] == []


def test_enforcement_entries_name_each_contributing_rule(tmp_path: Path) -> None:
    out = compile_text(tmp_path, ZERO_TRUST)
    entries = {(e.rule, e.where) for e in out.enforcement}
    assert ("access/web-api", "networkpolicy shop/api (L3/L4 narrowing only)") in entries
    assert ("access/anyone", "networkpolicy shop/web (L3/L4 narrowing only)") in entries
    assert ("access/api-db", "networkpolicy shop/db (L3/L4 narrowing only)") in entries
    assert all(e.target == "kubernetes" for e in out.enforcement)
    assert {e.rule for e in out.enforcement} == {
        "access/web-api",
        "access/api-db",
        "access/anyone",
        "access/all-cache",
    }


def test_policies_intersect_and_default_allow_is_open(tmp_path: Path) -> None:
    text = (
        SERVICE_HEADER
        + "".join(service(n, 9000 + i, "") for i, n in enumerate(["a", "b", "c"]))
        + "policy one {\n  default deny\n  allow service [a, b] -> service c\n}\n"
        + "policy two {\n  default deny\n  allow service [b] -> service c\n  allow any -> service a\n}\n"
        + "policy three {\n  default allow\n}\n"
    )
    out = compile_text(tmp_path, text)
    assert peers(network_policy(out, "c")) == ["b"]
    assert peers(network_policy(out, "a")) == []  # policy one allows nothing to a
    assert peers(network_policy(out, "b")) == []


def test_unconditional_denies_narrow_and_conditional_ones_do_not(tmp_path: Path) -> None:
    text = (
        SERVICE_HEADER
        + "".join(service(n, 9000 + i, "") for i, n in enumerate(["a", "b", "c", "d"]))
        + "policy p {\n  default allow\n  deny any -> service a\n"
        + "  allow service [b, c] -> service d\n"
        + "}\n"
        + "policy q {\n  default deny\n  allow service [b, c] -> service d\n  deny service c -> service d\n"
        + "  allow any -> service b\n  deny any -> service b when context.bad\n  allow any -> service a\n}\n"
    )
    out = compile_text(tmp_path, text)
    assert peers(network_policy(out, "a")) == []
    assert peers(network_policy(out, "b")) == ["*"]
    assert peers(network_policy(out, "d")) == ["b"]


def test_gateway_routes_admit_the_gateway_pods(tmp_path: Path) -> None:
    text = (
        SERVICE_HEADER
        + service("api", 8080, "")
        + service("web", 8081, "")
        + "balance api { health tcp every 5s timeout 1s healthy 1 unhealthy 3 }\n"
        + 'gateway edge { listen 8443 route "/v1/**" -> service api }\n'
        + "policy p {\n  default deny\n  allow service web -> service api\n}\n"
    )
    api = network_policy(compile_text(tmp_path, text), "api")
    gateway = api["ingress"][0]["from"][0]
    assert gateway == {
        "namespaceSelector": {},
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/component": "gateway",
                "app.kubernetes.io/name": "edge",
            }
        },
    }
    assert peers(api) == ["edge", "web"]


def test_no_policies_no_network_policies(tmp_path: Path) -> None:
    out = compile_text(tmp_path, SERVICE_HEADER + service("api", extra=""))
    assert kinds(out, "NetworkPolicy") == []


# ----------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("api", "api"),
        ("My_Service", "my-service"),
        ("_hidden_", "hidden"),
        ("9lives", "x-9lives"),
        ("Data Team", "data-team"),
        ("åäö", "x"),
        ("a__b", "a--b"),
    ],
)
def test_dns_label(text: str, label: str) -> None:
    assert dns_label(text) == label


def test_long_names_are_truncated_with_a_hash() -> None:
    long_a, long_b = "a" * 70 + "x", "a" * 70 + "y"
    one, two = dns_label(long_a), dns_label(long_b)
    assert len(one) == 63 and len(two) == 63 and one != two
    assert len(dns_label("b" * 60, 52)) == 52


def test_colliding_names_are_made_unique(tmp_path: Path) -> None:
    text = SERVICE_HEADER + service("Api", 80, "") + service("api", 81, "")
    text += service("API_", 82, "")
    out = compile_text(tmp_path, text)
    names = sorted(d["metadata"]["name"] for d in kinds(out, "Deployment"))
    assert names[0] == "api" and len(set(names)) == 3
    assert all(n.startswith("api-") for n in names[1:])
    sources = {
        d["metadata"]["annotations"].get("mcpdsl.io/source-name")
        for d in kinds(out, "Deployment")
        if d["metadata"]["name"] != "api"
    }
    assert sources == {"Api", "API_"}
    assert "mcpdsl.io/source-name" not in find(out, "Deployment", "api")["metadata"]["annotations"]


@given(st.lists(st.text(min_size=1, max_size=80), min_size=1, max_size=12, unique=True))
def test_assigned_names_are_valid_unique_and_order_independent(texts: list[str]) -> None:
    names = assign_names((t, t) for t in texts)
    assert len(set(names.values())) == len(texts)
    assert all(_DNS_LABEL.match(n) and len(n) <= 63 for n in names.values())
    assert assign_names((t, t) for t in reversed(texts)) == names


@given(st.text(max_size=100))
def test_label_values_are_valid(text: str) -> None:
    value = label_value(text)
    assert re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", value) and len(value) <= 63


# ------------------------------------------------------------- injection

NASTY = [
    'quote " and \\ backslash',
    "new\nline",
    "brace } and ]: colon-space: here",
    "# hash at start",
    "- dash, then: {flow}",
    "trailing space ",
    "åäö — naïve 日本",
    "&anchor *alias !tag %percent @at `tick`",
    "yes",
    "null",
    "0x1F",
    "1e3",
]


def dsl(text: str) -> str:
    """A DSL string literal (the language uses JSON escapes)."""
    return json.dumps(text)


def nasty_tree(values: list[str], benign: bool) -> str:
    """A tree that puts each value everywhere a user string reaches a manifest.

    The benign twin uses plain strings of the same validity class (invalid
    label values, names needing sanitisation), so both trees must produce
    documents with exactly the same structure.
    """
    word = (lambda i, v: f"plain value {i}") if benign else (lambda i, v: v)
    env = ", ".join(f"VAR_{i}: {dsl(word(i, v))}" for i, v in enumerate(values))
    labels = ", ".join(f"{dsl('k ' + str(i))}: {dsl(word(i, v))}" for i, v in enumerate(values))
    region = word(0, values[1])
    path = "/health/" + (f"plain-{len(values)}" if benign else values[0].replace("\n", "%0A"))
    # Metric names are checked (E0313); a PromQL keyword is the one that needs quoting.
    metric = "plain_metric" if benign else "offset"
    namespace = "plain ns" if benign else values[6]
    team = "plain team" if benign else values[2]
    image = "example/api:1" if benign else "example/api:1.0-rc_2"
    return (
        "package shop\n\n"
        f"service api {{\n  image {dsl(image)}\n"
        f"  port 8080\n  env {{ {env} }}\n  labels {{ {labels} }}\n"
        f"  regions [{dsl(region)}]\n  namespace {dsl(namespace)}\n"
        f"  identity {dsl('spiffe://x/' + ('plain' if benign else values[0]))}\n"
        f"  pool p\n  team {dsl(team)}\n}}\n"
        f"balance api {{ health http {dsl(path)} every 5s timeout 1s healthy 1 unhealthy 2 }}\n"
        f"scale api {{ replicas 1..3 target metric {dsl(metric)} 5 per pod\n"
        "  during daily 01:00-02:00 UTC { replicas 2..3 } }\n"
        f"pool p {{ node {{ cpu 4, memory 8Gi }} nodes 1..2 quota team {dsl(team)} {{ cpu 2 }} }}\n"
    )


def shape(value: Any, prefix: str = "") -> set[str]:
    """Every key path of a document (list positions as `[]`)."""
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{prefix}.{key}"
            paths.add(here)
            paths |= shape(item, here)
    elif isinstance(value, list):
        for item in value:
            paths |= shape(item, prefix + "[]")
    return paths


def test_user_strings_round_trip_exactly(tmp_path: Path) -> None:
    out = compile_text(tmp_path, nasty_tree(NASTY, benign=False))
    dep = find(out, "Deployment", "api")
    env = {e["name"]: e["value"] for e in container(dep)["env"]}
    assert env == {f"VAR_{i}": v for i, v in enumerate(NASTY)}
    assert container(dep)["image"] == "example/api:1.0-rc_2"
    assert container(dep)["readinessProbe"]["httpGet"]["path"] == "/health/" + NASTY[0].replace(
        "\n", "%0A"
    )
    kept = json.loads(dep["metadata"]["annotations"]["mcpdsl.io/labels"])
    assert kept == {f"k {i}": v for i, v in enumerate(NASTY)}
    assert dep["metadata"]["annotations"]["mcpdsl.io/identity"] == "spiffe://x/" + NASTY[0]
    affinity = pod_spec(dep)["affinity"]["nodeAffinity"]
    terms = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == [NASTY[1]]
    namespace = dep["metadata"]["namespace"]
    assert _DNS_LABEL.match(namespace)
    assert (
        find(out, "Namespace", namespace)["metadata"]["annotations"]["mcpdsl.io/source-name"]
        == NASTY[6]
    )
    so = find(out, "ScaledObject", "api")
    query = so["spec"]["triggers"][0]["metadata"]["query"]
    assert query == f'sum({{__name__="offset", namespace="{namespace}"}})'
    if promql_available():
        assert validate_promql(query) == []
    quota = kinds(out, "ResourceQuota")[0]
    assert json.loads(quota["metadata"]["annotations"]["mcpdsl.io/teams"]) == [NASTY[2]]
    for doc in docs_of(out).values():
        assert validate_kubernetes(doc) == []


def test_user_strings_add_no_keys_or_documents(tmp_path: Path) -> None:
    (tmp_path / "nasty").mkdir()
    (tmp_path / "plain").mkdir()
    nasty = compile_text(tmp_path / "nasty", nasty_tree(NASTY, benign=False))
    plain = compile_text(tmp_path / "plain", nasty_tree(NASTY, benign=True))
    assert len(nasty.artifacts) == len(plain.artifacts)

    def shapes(out: TargetOutput) -> list[tuple[str, frozenset[str]]]:
        return sorted((d["kind"], frozenset(shape(d))) for d in docs_of(out).values())

    assert shapes(nasty) == shapes(plain)


@pytest.mark.parametrize("value", NASTY)
def test_each_nasty_value_survives_as_an_env_value(tmp_path: Path, value: str) -> None:
    text = SERVICE_HEADER + service("api", extra=f"  env {{ V: {dsl(value)} }}\n")
    out = compile_text(tmp_path, text)
    artifact = next(a for a in out.artifacts if a.path.endswith("deployment-api.yaml"))
    doc = yaml.safe_load(artifact.content)
    assert container(doc)["env"] == [{"name": "V", "value": value}]


def test_regions_no_node_can_carry_are_kept_with_a_note(tmp_path: Path) -> None:
    extra = '  regions ["eu north 1"]\n'
    out = compile_text(tmp_path, SERVICE_HEADER + service("api", extra=extra))
    affinity = pod_spec(find(out, "Deployment", "api"))["affinity"]
    assert "eu north 1" in json.dumps(affinity)
    assert any(
        d.code == "B0102" and "eu north 1" in d.message and "cannot be scheduled" in d.message
        for d in out.diagnostics
    )


@pytest.mark.parametrize("value", ["1e3", "+1e5", "0o17"])
def test_number_like_strings_are_quoted_for_go_yaml(tmp_path: Path, value: str) -> None:
    text = SERVICE_HEADER + service("api", extra=f"  env {{ V: {dsl(value)} }}\n")
    out = compile_text(tmp_path, text)
    content = next(a for a in out.artifacts if a.path.endswith("deployment-api.yaml")).content
    assert f"value: '{value}'" in content.decode() or f'value: "{value}"' in content.decode()


def test_long_names_stay_within_kubernetes_limits(tmp_path: Path) -> None:
    long = "very-long-name-" * 6
    text = (
        SERVICE_HEADER
        + service(long + "svc", extra=f'  pool {long}pool\n  team "{long}team"\n')
        + f"pool {long}pool {{ tier {long.replace('-', '_')}tier node {{ cpu 4, memory 8Gi }}"
        + f' nodes 1..2 quota team "{long}team" {{ cpu 2 }} reserve {long}svc {{ cpu 1 }} }}\n'
        + f'job {long}job {{ image "example/job:1" runs 1h window 01:00-03:00 UTC }}\n'
    )
    out = compile_text(tmp_path, text)
    assert len(out.artifacts) == 11  # 4 service, 4 pool, 1 job, 2 namespace objects
    for path, doc in docs_of(out).items():
        assert validate_kubernetes(doc) == [], path
    assert len(kinds(out, "CronJob")[0]["metadata"]["name"]) <= 52
