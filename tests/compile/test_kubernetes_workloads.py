"""Workloads as the cluster runs them: accounts, stateful sets, headless DNS, budgets, spread.

Each test compiles a small tree through the real front end and checks the
documents against the strict Kubernetes schemas and against what the
Kubernetes controllers would do with them (a PodDisruptionBudget's allowed
disruptions, a StatefulSet's governing Service).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from validators import validate_kubernetes

from mcpdsl._version import __version__
from mcpdsl.compile import TargetContext, envoy, kubernetes
from mcpdsl.compile.kubernetes_index import build_index
from mcpdsl.ir import model as m
from mcpdsl.ir.workload import workload_identity
from mcpdsl.pipeline import compile_tree


def compile_text(text: str) -> tuple[m.Project, Any, list[Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        (tree / "main.mcp").write_text(text, encoding="utf-8")
        compilation = compile_tree(tree)
    return compilation.project, compilation, compilation.diagnostics  # type: ignore[return-value]


def build(project: m.Project) -> dict[str, dict[str, Any]]:
    out = kubernetes.compile(project, TargetContext(version=__version__))
    docs = {a.path: yaml.safe_load(a.content) for a in out.artifacts}
    for path, doc in docs.items():
        assert validate_kubernetes(doc) == [], path
    return docs


def clean(text: str) -> m.Project:
    project, _, diagnostics = compile_text(text)
    errors = [f"{d.code}: {d.message}" for d in diagnostics if d.is_error]
    assert project is not None and errors == [], errors
    return project


def one(docs: dict[str, dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    hits = [d for d in docs.values() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)}"
    return hits[0]


DB = """package shop

service db {
  image     "postgres:16"
  port      5432
  cpu       2
  memory    4Gi
  namespace "data"
  replicas  3
  stateful
  identity  "spiffe://corp.example/ns/data/sa/postgres"
  storage   { size 20Gi, class "fast-ssd", access "ReadWriteOncePod", path "/var/lib/pg" }
}

service api {
  image "x/api:1"
  port  8080
}

scale api { replicas 2..10 target cpu 70% }
balance api { strategy least-request }
"""


# ------------------------------------------------------------ stateful sets


def test_a_stateful_service_is_a_statefulset_with_its_volumes() -> None:
    docs = build(clean(DB))
    sts = one(docs, "StatefulSet", "db")
    assert not [
        d for d in docs.values() if d["kind"] == "Deployment" and d["metadata"]["name"] == "db"
    ]
    spec = sts["spec"]
    assert spec["replicas"] == 3
    assert spec["volumeClaimTemplates"] == [
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOncePod"],
                "resources": {"requests": {"storage": "20Gi"}},
                "storageClassName": "fast-ssd",
            },
        }
    ]
    container = spec["template"]["spec"]["containers"][0]
    assert container["volumeMounts"] == [{"mountPath": "/var/lib/pg", "name": "data"}]
    assert "strategy" not in spec  # no Recreate fallback any more
    # The governing Service exists, is headless, is in the same namespace and selects the pods.
    governing = one(docs, "Service", spec["serviceName"])
    assert governing["spec"]["clusterIP"] == "None"
    assert governing["metadata"]["namespace"] == sts["metadata"]["namespace"] == "data"
    assert governing["spec"]["selector"] == spec["selector"]["matchLabels"]


def test_a_stateful_service_without_storage_is_a_statefulset_without_claims() -> None:
    text = 'package shop\nservice q {\n  image "x/q:1"\n  port 80\n  replicas 2\n  stateful\n}\n'
    docs = build(clean(text))
    sts = one(docs, "StatefulSet", "q")
    assert "volumeClaimTemplates" not in sts["spec"]
    assert "volumeMounts" not in sts["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    ("setting", "code"),
    [
        ("size 0Gi", "E0303"),
        ("size 20s", "E0301"),
        ('size 1Gi, class "Fast SSD"', "E0313"),
        ('size 1Gi, class "' + "a" * 254 + '"', "E0313"),
        ('size 1Gi, access "rwo"', "E0204"),
        ('size 1Gi, path "relative/dir"', "E0206"),
        ('size 1Gi, path "/a/../etc"', "E0206"),
        ('size 1Gi, path "/a:b"', "E0206"),
        ('size 1Gi, path "/a\\nb"', "E0206"),
        ('size 1Gi, mount "/x"', "E0203"),
        ('class "ssd"', "E0202"),
        ("size 99999999999999999999Gi", "E0312"),
    ],
)
def test_bad_storage_values_are_coded_diagnostics(setting: str, code: str) -> None:
    text = f'package shop\nservice q {{\n  image "x/q:1"\n  port 80\n  stateful\n  storage {{ {setting} }}\n}}\n'
    _, _, diagnostics = compile_text(text)
    assert code in {d.code for d in diagnostics if d.is_error}, [
        (d.code, d.message) for d in diagnostics
    ]


def test_scaling_a_stateful_service_targets_the_statefulset() -> None:
    text = (
        'package shop\nservice q {\n  image "x/q:1"\n  port 80\n  cpu 1\n  stateful\n}\n'
        "scale q { replicas 1..5 target cpu 60% }\n"
    )
    docs = build(clean(text))
    hpa = one(docs, "HorizontalPodAutoscaler", "q")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": "q",
    }


# -------------------------------------------------------- service accounts


def test_every_service_runs_as_the_account_of_its_identity() -> None:
    project = clean(DB)
    docs = build(project)
    index = build_index(project)
    for service in project.services:
        identity = workload_identity(
            namespace=index.namespace(service.namespace),
            declared=service.identity,
            fallback_account=index.service_name(service),
        )
        workload = next(
            d
            for d in docs.values()
            if d["kind"] in ("Deployment", "StatefulSet")
            and d["metadata"]["name"] == index.service_name(service)
        )
        assert (
            workload["spec"]["template"]["spec"]["serviceAccountName"] == identity.service_account
        )
        account = [
            d
            for d in docs.values()
            if d["kind"] == "ServiceAccount"
            and d["metadata"]["name"] == identity.service_account
            and d["metadata"]["namespace"] == identity.namespace
        ]
        assert len(account) == 1
        assert account[0]["metadata"]["annotations"]["mcpdsl.io/spiffe-id"] == identity.spiffe_id
    assert one(docs, "ServiceAccount", "postgres")["metadata"]["namespace"] == "data"
    assert one(docs, "ServiceAccount", "api")["metadata"]["annotations"]["mcpdsl.io/spiffe-id"] == (
        "spiffe://cluster.local/ns/shop/sa/api"
    )


def test_the_trust_domain_comes_from_the_mesh() -> None:
    project = clean(DB)
    mesh = m.Mesh(package="shop", name="mesh", trust_domain="prod.example")
    docs = build(project.model_copy(update={"meshes": (mesh,)}))
    api = one(docs, "ServiceAccount", "api")
    assert api["metadata"]["annotations"]["mcpdsl.io/spiffe-id"] == (
        "spiffe://prod.example/ns/shop/sa/api"
    )
    # A declared SPIFFE id keeps its own trust domain.
    db = one(docs, "ServiceAccount", "postgres")
    assert db["metadata"]["annotations"]["mcpdsl.io/spiffe-id"] == (
        "spiffe://corp.example/ns/data/sa/postgres"
    )


def test_services_sharing_an_identity_share_one_account() -> None:
    shared = '  identity "spiffe://x.local/ns/shop/sa/worker"\n'
    text = (
        f'package shop\nservice a {{\n  image "x/a:1"\n  port 80\n  stateful\n{shared}}}\n'
        f'service b {{\n  image "x/b:1"\n  port 81\n  stateful\n{shared}}}\n'
    )
    docs = build(clean(text))
    accounts = [d for d in docs.values() if d["kind"] == "ServiceAccount"]
    assert [(d["metadata"]["namespace"], d["metadata"]["name"]) for d in accounts] == [
        ("shop", "worker")
    ]


def test_same_account_name_in_two_namespaces_gives_two_files() -> None:
    text = (
        'package shop\nservice a {\n  image "x/a:1"\n  port 80\n  namespace "one"\n  stateful\n'
        '  identity "spiffe://x.local/ns/one/sa/worker"\n}\n'
        'service b {\n  image "x/b:1"\n  port 81\n  namespace "two"\n  stateful\n'
        '  identity "spiffe://x.local/ns/two/sa/worker"\n}\n'
    )
    docs = build(clean(text))
    assert {p for p in docs if "/serviceaccount-" in p} == {
        "kubernetes/shop/serviceaccount-one.worker.yaml",
        "kubernetes/shop/serviceaccount-two.worker.yaml",
    }


# ---------------------------------------------------------- balancing on pods


def test_balanced_services_get_a_headless_service_and_envoy_resolves_it() -> None:
    text = DB + (
        'gateway edge {\n  listen 8443\n  route "/v1/**" -> service api\n}\n'
        'service quiet {\n  image "x/q:1"\n  port 9000\n  stateful\n}\n'
    )
    project = clean(text)
    docs = build(project)
    index = build_index(project)
    api = next(s for s in project.services if s.name == "api")
    headless = one(docs, "Service", "api-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == one(docs, "Service", "api")["spec"]["selector"]
    assert index.headless_fqdn(api) == "api-headless.shop.svc.cluster.local"
    # A stateful service's governing Service is headless too, balanced or not.
    assert one(docs, "Service", "quiet-headless")["spec"]["clusterIP"] == "None"
    out = envoy.compile(project, TargetContext(version=__version__))
    bootstrap = next(
        a for a in out.artifacts if a.path.endswith(".yaml") or a.path.endswith(".json")
    )
    content = bootstrap.content.decode()
    assert "api-headless.shop.svc.cluster.local" in content
    assert "api.shop.svc.cluster.local" not in content


def test_headless_names_never_take_a_service_name() -> None:
    text = (
        'package shop\nservice api {\n  image "x/a:1"\n  port 80\n}\n'
        'service api-headless {\n  image "x/b:1"\n  port 81\n}\n'
        "balance api { strategy ring-hash }\n"
        "scale api { replicas 1..2 }\nscale api-headless { replicas 1..2 }\n"
    )
    project = clean(text)
    docs = build(project)
    services = [d["metadata"]["name"] for d in docs.values() if d["kind"] == "Service"]
    assert len(services) == len(set(services)) == 3
    api = next(s for s in project.services if s.name == "api")
    name = build_index(project).headless_fqdn(api).split(".")[0]
    assert name != "api-headless" and name in services


def test_failover_regions_resolve_the_collision_safe_headless_name() -> None:
    """Per-region failover endpoints are the same headless Service (pods), under the
    name the Kubernetes target gave it, with the region inserted before `svc`."""
    text = (
        'package shop\nservice api {\n  image "x/a:1"\n  port 80\n'
        '  regions ["eu-west-1", "us-east-1"]\n}\n'
        'service api-headless {\n  image "x/b:1"\n  port 81\n}\n'
        "balance api {\n  strategy least-request\n  eject after 3 errors for 30s\n"
        '  failover ["us-east-1", "eu-west-1"]\n}\n'
        'gateway edge {\n  listen 8080\n  route "/**" -> service api\n}\n'
    )
    project = clean(text)
    api = next(s for s in project.services if s.name == "api")
    index = build_index(project)
    single = index.headless_fqdn(api)
    name, namespace = single.split(".")[:2]
    assert name != "api-headless"
    out = envoy.compile(project, TargetContext(version=__version__))
    (bootstrap,) = [a for a in out.artifacts if a.path.endswith(".json")]
    (cluster,) = [
        c
        for c in json.loads(bootstrap.content)["static_resources"]["clusters"]
        if c["name"] == "api"
    ]
    addresses = [
        (e["locality"]["region"], e["lb_endpoints"][0]["endpoint"]["address"]["socket_address"])
        for e in cluster["load_assignment"]["endpoints"]
    ]
    assert addresses == [
        (r, {"address": f"{name}.{namespace}.{r}.svc.cluster.local", "port_value": 80})
        for r in ("us-east-1", "eu-west-1")
    ]
    assert [index.headless_fqdn(api, r) for r in ("us-east-1", "eu-west-1")] == [
        a["address"] for _, a in addresses
    ]


def test_a_service_without_balancing_has_no_headless_service() -> None:
    text = 'package shop\nservice q {\n  image "x/q:1"\n  port 80\n}\nscale q { replicas 1..3 }\n'
    project = clean(text)
    docs = build(project)
    assert [d["metadata"]["name"] for d in docs.values() if d["kind"] == "Service"] == ["q"]
    with pytest.raises(KeyError):
        build_index(project).headless_fqdn(project.services[0])


# ------------------------------------------------------ budgets and spread


def allowed_disruptions(pdb: dict[str, Any], healthy: int) -> int:
    """What the disruption controller allows (percentages round up, as it does)."""
    spec = pdb["spec"]
    if "maxUnavailable" in spec:
        value = spec["maxUnavailable"]
        most = math.ceil(healthy * int(value[:-1]) / 100) if isinstance(value, str) else value
        return max(0, most - 0)  # every pod healthy: nothing is already unavailable
    value = spec["minAvailable"]
    least = math.ceil(healthy * int(value[:-1]) / 100) if isinstance(value, str) else value
    return max(0, healthy - least)


@settings(max_examples=40, deadline=None)
@given(
    replicas=st.integers(1, 12),
    scaled=st.booleans(),
    stateful=st.booleans(),
    live=st.integers(0, 11),
)
def test_a_budget_never_blocks_a_drain_and_keeps_the_rest(
    replicas: int, scaled: bool, stateful: bool, live: int
) -> None:
    body = '  image "x/q:1"\n  port 80\n' + ("  stateful\n" if stateful else "")
    if scaled:
        text = f"package shop\nservice q {{\n{body}}}\nscale q {{ replicas 1..{replicas} }}\n"
        healthy = 1 + live % replicas  # whatever the autoscaler chose
    else:
        text = f"package shop\nservice q {{\n{body}  replicas {replicas}\n}}\n"
        healthy = replicas
    docs = build(clean(text))
    pdb = one(docs, "PodDisruptionBudget", "q")
    allowed = allowed_disruptions(pdb, healthy)
    assert allowed >= 1  # a node drain can always make progress
    assert healthy - allowed >= healthy - 1  # and never takes more than one pod at a time


def test_pods_spread_over_regions_and_zones() -> None:
    text = (
        'package shop\nservice api {\n  image "x/a:1"\n  port 80\n'
        '  regions ["eu-north-1", "us-east-1"]\n}\nscale api { replicas 2..6 }\n'
        'service solo {\n  image "x/s:1"\n  port 81\n  replicas 1\n  stateful\n}\n'
    )
    docs = build(clean(text))
    spread = one(docs, "Deployment", "api")["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == [
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
    ]
    assert all(c["whenUnsatisfiable"] == "ScheduleAnyway" and c["maxSkew"] == 1 for c in spread)
    solo = one(docs, "StatefulSet", "solo")["spec"]["template"]["spec"]
    assert "topologySpreadConstraints" not in solo  # one pod: nothing to spread


def test_an_account_too_long_for_kubernetes_is_a_front_end_error() -> None:
    identity = "spiffe://x.local/ns/shop/sa/" + "a" * 254
    text = f'package shop\nservice a {{\n  image "x/a:1"\n  port 80\n  identity "{identity}"\n}}\n'
    _, _, diagnostics = compile_text(text)
    assert "E0313" in {d.code for d in diagnostics if d.is_error}
    fits = "spiffe://x.local/ns/shop/sa/" + "a" * 253
    text = f'package shop\nservice a {{\n  image "x/a:1"\n  port 80\n  identity "{fits}"\n  stateful\n}}\n'
    docs = build(clean(text))
    assert len(one(docs, "ServiceAccount", "a" * 253)["metadata"]["name"]) == 253
