"""The decision server a tree declares (`server`): its language, its objects, who calls it.

The objects are checked against the strict Kubernetes schemas and for what the
cluster does with them (who the pods run as, what they mount, what they are
started with); the Envoy Bootstrap and the Istio mesh config against their own
validators, pointing at the very Service the Kubernetes target emits; the
ConfigMap's policy is loaded by the engine the way the pods load it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from validators import validate_envoy_bootstrap, validate_istio, validate_kubernetes

from mcpdsl._version import __version__
from mcpdsl.builder import ir_artifact
from mcpdsl.compile import TargetContext, envoy, istio, kubernetes
from mcpdsl.compile.kubernetes_scale import hpa
from mcpdsl.compile.kubernetes_server import POLICY_DIGEST
from mcpdsl.engine import Engine
from mcpdsl.engine.reload import BundleError
from mcpdsl.ir import model as m
from mcpdsl.ir.lower_server import redis_url_problem
from mcpdsl.pipeline import compile_tree

SERVER = """
server authz {
  namespace "mcp-system"
  image     "ghcr.io/acme/mcpdsl:1.0"
  replicas  2..10
  target    cpu 70%
  target    metric "mcpdsl_checks_per_second" 500 per pod
  cpu       250m
  memory    384Mi
  redis     secret "authz-redis" key "url"
  on redis down deny
}
"""

GATEWAY = """
service api {
  image "ghcr.io/acme/api:1.0"
  port  8080
  namespace "shop"
  replicas 2
}

gateway edge {
  listen 8443
  route "/**" -> service api
}

policy shop {
  allow any -> service api
  deny any -> service api when context.geo == "xx"
}
"""


def compile_text(text: str) -> tuple[m.Project | None, list[Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        (tree / "main.mcp").write_text("package shop\n" + text, encoding="utf-8")
        compilation = compile_tree(tree)
    return compilation.project, compilation.diagnostics


def clean(text: str) -> m.Project:
    project, diagnostics = compile_text(text)
    assert [f"{d.code}: {d.message}" for d in diagnostics if d.is_error] == []
    assert project is not None
    return project


def codes(text: str) -> list[str]:
    return [d.code for d in compile_text(text)[1]]


def k8s(project: m.Project) -> dict[str, dict[str, Any]]:
    out = kubernetes.compile(project, TargetContext(version=__version__))
    docs = {a.path: yaml.safe_load(a.content) for a in out.artifacts}
    for path, doc in docs.items():
        assert validate_kubernetes(doc) == [], path
    return docs


def of_kind(docs: dict[str, dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs.values() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


# ------------------------------------------------------------------ language


def test_the_declaration_lowers_to_the_server_it_spells() -> None:
    project = clean(SERVER)
    (server,) = project.servers
    assert (server.namespace, server.image) == ("mcp-system", "ghcr.io/acme/mcpdsl:1.0")
    assert (server.min_replicas, server.max_replicas) == (2, 10)
    assert [(t.metric, t.name, str(t.value)) for t in server.targets] == [
        ("cpu", None, "0.7"),
        ("pods", "mcpdsl_checks_per_second", "500"),
    ]
    assert (str(server.cpu), server.memory) == ("0.25", 384 * 2**20)
    assert server.redis == m.RedisStore(secret="authz-redis", secret_key="url")
    assert server.on_store_down == "deny"


def test_defaults_namespace_resources_and_fail_closed() -> None:
    (server,) = clean('server z { image "a/b:1" replicas 1 }').servers
    assert server.namespace == "shop"  # the package, as for a service
    assert (str(server.cpu), server.memory, server.on_store_down) == ("0.5", 512 * 2**20, "deny")
    assert server.redis is None


def test_the_server_is_not_in_the_ir_the_engine_loads() -> None:
    """A deployment setting: `ir/project.json` (and so the ConfigMap) is the same without it."""
    with_server = clean(SERVER + GATEWAY)
    without = clean(GATEWAY)
    assert with_server.servers and not without.servers
    assert ir_artifact(with_server).content == ir_artifact(without).content
    assert "servers" not in json.loads(with_server.canonical_json())


@pytest.mark.parametrize(
    ("clauses", "code"),
    [
        ("replicas 2..10", "W0112"),
        ("replicas 3", "W0112"),
        ('replicas 0..3 redis "redis://r:6379"', "E0303"),
        ('replicas 1 redis "http://r:6379"', "E1002"),
        ('replicas 1 redis "unix:///run/redis.sock"', "E1002"),
        ('replicas 1 redis "redis://:pw@r:6379/0"', "E1003"),
        ('replicas 1 redis "rediss://user:pw@r:6380"', "E1003"),
        ('replicas 1 redis "redis://r:6379/zero"', "E1002"),
        ('replicas 1 redis "redis://:6379"', "E1002"),
        ('replicas 1 redis secret "Not_A_Name" key "url"', "E0313"),
        ('replicas 1 redis secret "r" key "a/b"', "E0313"),
        ('replicas 1 redis "redis://r" redis secret "r" key "url"', "E0201"),
        ("replicas 1 on redis down allow on redis down deny", "E0201"),
        ("replicas 1 target cpu 0%", "E0303"),
        ("replicas 1", None),
        ('replicas 2..4 redis "rediss://redis.mcp-system.svc:6380/2"', None),
        ('replicas 1 redis "redis://user@r:6379"', None),  # a user name is no secret
    ],
)
def test_misuse_is_a_coded_diagnostic(clauses: str, code: str | None) -> None:
    found = codes(f'server z {{ image "a/b:1" {clauses} }}')
    assert found == ([code] if code else [])


def test_image_and_replicas_are_required() -> None:
    assert codes("server z { }") == ["E0202", "E0202"]


def test_a_second_server_is_an_error() -> None:
    text = 'server a { image "a/b:1" replicas 1 }\nserver b { image "a/b:1" replicas 1 }\n'
    assert codes(text) == ["E1001"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_url_is_judged_without_raising(url: str) -> None:
    problem = redis_url_problem(url)
    assert problem is None or isinstance(problem, str)
    if problem is None:
        assert url.startswith(("redis://", "rediss://"))


# ------------------------------------------------------------------ kubernetes


def test_objects_of_the_server_validate_and_run_locked_down() -> None:
    docs = k8s(clean(SERVER))
    kinds = sorted(d["kind"] for d in docs.values())
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Namespace",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    deployment = of_kind(docs, "Deployment", "authz")
    assert deployment["metadata"]["namespace"] == "mcp-system"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"] == {
        "limits": {"cpu": "250m", "memory": "384Mi"},
        "requests": {"cpu": "250m", "memory": "384Mi"},
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    args = container["args"]
    assert args[:2] == ["serve", "/policy/project.json"]
    assert args[args.index("--addr") + 1] == "0.0.0.0:8181"
    assert args[args.index("--grpc-addr") + 1] == "0.0.0.0:9191"
    assert args[args.index("--on-store-unavailable") + 1] == "deny"
    assert args[args.index("--redis") + 1] == "$(MCPDSL_REDIS_URL)"
    (redis,) = [e for e in container["env"] if e["name"] == "MCPDSL_REDIS_URL"]
    assert redis["valueFrom"]["secretKeyRef"] == {
        "key": "url",
        "name": "authz-redis",
        "optional": False,
    }
    mounts = {v["mountPath"]: v for v in container["volumeMounts"]}
    assert mounts["/policy"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["policy"]["configMap"]["name"] == "authz-policy"
    service = of_kind(docs, "Service", "authz")
    assert {(p["name"], p["port"], p.get("appProtocol")) for p in service["spec"]["ports"]} == {
        ("http", 8181, "http"),
        ("grpc", 9191, "grpc"),
    }
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert of_kind(docs, "PodDisruptionBudget", "authz")["spec"]["maxUnavailable"] == 1
    account = of_kind(docs, "ServiceAccount", "authz")
    assert account["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "authz"


def test_the_autoscaler_is_the_one_an_equivalent_scale_block_gets() -> None:
    """`replicas` and `target` of a server mean what they mean in a `scale` block."""
    docs = k8s(clean(SERVER))
    server_hpa = of_kind(docs, "HorizontalPodAutoscaler", "authz")["spec"]
    twin = clean(
        'service authz { image "a/b:1" port 80 }\n'
        "scale authz { replicas 2..10  target cpu 70%"
        '  target metric "mcpdsl_checks_per_second" 500 per pod }\n'
    )
    from mcpdsl.compile.kubernetes_index import build_index
    from mcpdsl.compile.kubernetes_workloads import TargetOutput

    scale_hpa = hpa(
        build_index(twin), twin.scales[0], TargetContext(version=__version__), TargetOutput()
    )["spec"]
    for key in ("behavior", "metrics", "minReplicas", "maxReplicas", "scaleTargetRef"):
        assert server_hpa[key] == scale_hpa[key], key


def test_a_fixed_replica_count_gets_no_autoscaler() -> None:
    docs = k8s(clean('server z { image "a/b:1" replicas 1 }'))
    assert "HorizontalPodAutoscaler" not in {d["kind"] for d in docs.values()}
    deployment = of_kind(docs, "Deployment", "z")
    assert deployment["spec"]["replicas"] == 1
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--redis" not in container["args"]
    assert [e["name"] for e in container["env"]] == ["XDG_CACHE_HOME"]


def test_a_plain_redis_url_is_written_as_it_is() -> None:
    docs = k8s(clean('server z { image "a/b:1" replicas 1..3 redis "redis://r.shop.svc:6379/1" }'))
    (container,) = of_kind(docs, "Deployment", "z")["spec"]["template"]["spec"]["containers"]
    (redis,) = [e for e in container["env"] if e["name"] == "MCPDSL_REDIS_URL"]
    assert redis["value"] == "redis://r.shop.svc:6379/1"


def test_the_config_map_holds_the_builds_ir_byte_for_byte() -> None:
    project = clean(SERVER + GATEWAY)
    docs = k8s(project)
    config = of_kind(docs, "ConfigMap", "authz-policy")
    ir = ir_artifact(project).content
    assert config["data"]["project.json"].encode() == ir
    template = of_kind(docs, "Deployment", "authz")["spec"]["template"]
    import hashlib

    assert template["metadata"]["annotations"][POLICY_DIGEST] == hashlib.sha256(ir).hexdigest()


def test_the_server_never_takes_a_services_name_in_its_namespace() -> None:
    text = SERVER.replace('"mcp-system"', '"shop"') + (
        'service authz { image "a/b:1" port 80 namespace "shop" replicas 1 }\n'
    )
    docs = k8s(clean(text))
    deployments = sorted(d["metadata"]["name"] for d in docs.values() if d["kind"] == "Deployment")
    assert len(deployments) == 2 and "authz" in deployments
    namespaces = [d["metadata"]["name"] for d in docs.values() if d["kind"] == "Namespace"]
    assert namespaces == ["shop"]  # one Namespace for the service and the server


def test_the_output_is_deterministic() -> None:
    project = clean(SERVER + GATEWAY)
    first = kubernetes.compile(project, TargetContext(version=__version__)).artifacts
    second = kubernetes.compile(clean(SERVER + GATEWAY), TargetContext(version=__version__))
    assert [(a.path, a.content) for a in first] == [(a.path, a.content) for a in second.artifacts]


def test_snapshot_of_the_server_objects(snapshot: Any) -> None:
    out = kubernetes.compile(clean(SERVER), TargetContext(version=__version__))
    assert {a.path: a.content.decode() for a in out.artifacts} == snapshot


# ---------------------------------------------------------- envoy and istio


def _ext_authz_address(bootstrap: dict[str, Any]) -> tuple[str, int]:
    (cluster,) = [c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "opa"]
    (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    address = endpoint["endpoint"]["address"]["socket_address"]
    return address["address"], address["port_value"]


def test_envoy_ext_authz_calls_the_declared_server() -> None:
    ctx = TargetContext(version=__version__)
    with_server = envoy.compile(clean(SERVER + GATEWAY), ctx)
    (artifact,) = with_server.artifacts
    bootstrap = json.loads(artifact.content)
    assert validate_envoy_bootstrap(bootstrap) == []
    assert _ext_authz_address(bootstrap) == ("authz.mcp-system.svc.cluster.local", 9191)
    records = [" ".join(d.notes) for d in with_server.diagnostics if d.code == "B0121"]
    assert records and all("ext_authz -> mcpdsl serve authz" in r for r in records)
    (plain,) = envoy.compile(clean(GATEWAY), ctx).artifacts
    assert _ext_authz_address(json.loads(plain.content)) == (
        "opa.mcpdsl-system.svc.cluster.local",
        9191,
    )


def test_the_addresses_agree_with_the_emitted_service() -> None:
    """Envoy and Istio name exactly the Service the Kubernetes target writes."""
    project = clean(SERVER + GATEWAY)
    service = of_kind(k8s(project), "Service", "authz")
    fqdn = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    grpc = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    (artifact,) = envoy.compile(project, TargetContext(version=__version__)).artifacts
    assert _ext_authz_address(json.loads(artifact.content)) == (fqdn, grpc)
    out = istio.compile(project, TargetContext(version=__version__))
    (mesh,) = [a for a in out.artifacts if a.path.endswith("mesh-config.yaml")]
    doc = yaml.safe_load(mesh.content)
    assert validate_istio(doc) == []
    (provider,) = doc["spec"]["meshConfig"]["extensionProviders"]
    assert (provider["envoyExtAuthzGrpc"]["service"], provider["envoyExtAuthzGrpc"]["port"]) == (
        fqdn,
        grpc,
    )
    assert provider["envoyExtAuthzGrpc"]["failOpen"] is False


# ------------------------------------------------------- the pods' policy load


def _config_map_volume(root: Path, data: bytes, generation: str) -> Path:
    """Lay out a directory as the kubelet mounts a ConfigMap: `..data` -> `..<gen>`."""
    target = root / f"..{generation}"
    target.mkdir()
    (target / "project.json").write_bytes(data)
    tmp = root / "..data_tmp"
    tmp.symlink_to(target.name)
    tmp.replace(root / "..data")
    link = root / "project.json"
    if not link.is_symlink():
        link.symlink_to("..data/project.json")
    return link


def test_the_engine_serves_the_config_maps_policy_and_reloads_it(tmp_path: Path) -> None:
    allow_all = clean(
        SERVER + GATEWAY.replace('  deny any -> service api when context.geo == "xx"\n', "")
    )
    deny_all = clean(SERVER + GATEWAY.replace("  allow any -> service api\n", ""))
    request = {
        "principal": {"type": "user", "id": "u"},
        "resource": {"type": "service", "id": "api"},
        "action": "GET",
    }
    path = _config_map_volume(tmp_path, ir_artifact(allow_all).content, "gen1")
    engine = Engine.load(path)
    try:
        assert engine.authorize(request).allowed
        _config_map_volume(tmp_path, ir_artifact(deny_all).content, "gen2")
        assert engine.reload().swapped
        assert not engine.authorize(request).allowed
        assert not engine.reload().swapped  # same bytes: nothing to do
        _config_map_volume(tmp_path, b'{"services": "not a list"}', "gen3")
        refused = engine.reload()
        assert not refused.ok and isinstance(refused.error, BundleError)
        assert not engine.authorize(request).allowed  # the last good policy stays
    finally:
        engine.close()


def test_an_unreadable_ir_file_is_refused_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "project.json"
    bad.write_bytes(b"\xff\x00 not json")
    with pytest.raises(BundleError, match=r"project\.json"):
        Engine.load(bad)


def test_a_policy_too_large_for_a_config_map_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """Applying it would fail; the pods would wait rather than run another policy."""
    from mcpdsl.compile import kubernetes_server

    project = clean(SERVER)
    assert [
        d.code for d in kubernetes.compile(project, TargetContext(version="0")).diagnostics
    ] == []
    monkeypatch.setattr(kubernetes_server, "CONFIGMAP_LIMIT", 100)
    out = kubernetes.compile(project, TargetContext(version="0"))
    (finding,) = out.diagnostics
    assert finding.code == "B0170" and "more than a ConfigMap holds" in finding.message
    assert any("configmap-authz-policy" in a.path for a in out.artifacts)


MCP_SERVER = """
provider agents {
  issuer    "https://agents.test"
  jwks      url "https://agents.test/jwks.json"
  audiences ["https://mcp.test/mcp"]
  type      agent
}

server gw {
  image    "ghcr.io/acme/mcpdsl:1.0"
  replicas 1
  mcp resource "https://mcp.test/mcp" accept [agents]
}
"""


def test_the_pods_serve_the_mcp_endpoint_the_block_declares() -> None:
    """The pods run the IR alone (the block is not in it): the endpoint reaches them as flags."""
    docs = k8s(clean(MCP_SERVER))
    (container,) = of_kind(docs, "Deployment", "gw")["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--mcp-resource") + 1] == "https://mcp.test/mcp"
    assert args[args.index("--mcp-accept") + 1] == "shop.agents"
    without = k8s(clean('server z { image "a/b:1" replicas 1 }'))
    (plain,) = of_kind(without, "Deployment", "z")["spec"]["template"]["spec"]["containers"]
    assert "--mcp-resource" not in plain["args"] and "--mcp-accept" not in plain["args"]
