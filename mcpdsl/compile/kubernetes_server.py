"""The decision server: `server` -> the `mcpdsl serve` deployment that enforces the tree.

    ServiceAccount   the pods' identity; no API token mounted (the server never calls the API)
    ConfigMap        `<name>-policy`: the build's IR, `project.json`, byte for byte
    Deployment       `mcpdsl serve /policy/project.json` on 0.0.0.0:8181 (HTTP) and :9191 (gRPC),
                     non-root, read-only root filesystem, no capabilities, probes on
                     /health and /ready, the Redis URL from a Secret
    Service          http 8181, grpc 9191 (`appProtocol: grpc`): what Envoy and Istio call
    HorizontalPodAutoscaler  from `replicas MIN..MAX` and `target` (ir/autoscaling.py)
    PodDisruptionBudget      at most one pod down by a voluntary disruption

Why the IR and not the tree or the build: the IR is the one artifact the
engine runs (a signed build is reduced to it too), it needs no compile in the
pod, and it is written by the same function as the build's `ir/project.json`
(`Project.canonical_json`), so the bytes the pods load are the bytes the
build's manifest lists.  The whole build cannot travel in one of its own
artifacts: its manifest hashes this ConfigMap (docs/serve-kubernetes.md).
"""

from __future__ import annotations

import hashlib
from typing import Any

from mcpdsl.compile import TargetOutput
from mcpdsl.compile.kubernetes_common import metadata, pod_metadata, resources, selector, source_of
from mcpdsl.compile.kubernetes_index import SERVER_GRPC_PORT, SERVER_HTTP_PORT, Index
from mcpdsl.compile.kubernetes_scale import behavior, hpa_metric
from mcpdsl.compile.kubernetes_workloads import Placement, apply_placement
from mcpdsl.ir import model as m
from mcpdsl.ir.autoscaling import scale_targets, server_scale

SERVER_COMPONENT = "decision-server"
POLICY_DIR = "/policy"
POLICY_FILE = "project.json"
#: Where the server may write (Python's caches); the root filesystem is read-only.
TMP_DIR = "/tmp"
#: The environment variable the Redis URL reaches the server through.
REDIS_ENV = "MCPDSL_REDIS_URL"
#: A non-root user and group for the pods (the distroless `nonroot` ids).
RUN_AS = 65532
#: What a ConfigMap may hold in total (the API server refuses more); kept below it for metadata.
CONFIGMAP_LIMIT = 1_000_000
#: The pod annotation that changes with the policy, so that applying a new build rolls the pods.
POLICY_DIGEST = "mcpdsl.io/policy-sha256"


def policy_bytes(project: m.Project) -> bytes:
    """The IR as `mcpdsl build` writes `ir/project.json` (`builder.ir_artifact`), byte for byte."""
    return (project.canonical_json() + "\n").encode()


def server_objects(index: Index, server: m.Server, report: TargetOutput) -> list[dict[str, Any]]:
    """Every object of the server, in a fixed order (the emitter sorts by path anyway)."""
    policy = policy_bytes(index.project)
    if len(policy) > CONFIGMAP_LIMIT:
        report.unsupported(
            "B0170",
            f"the policy IR is {len(policy)} bytes, more than a ConfigMap holds; the server "
            f"`{server.qualified}` cannot receive it this way",
            server.span,
            label="its pods would wait for a ConfigMap the API server refuses",
            help="split the tree, or deliver the build to the pods another way "
            "(docs/serve-kubernetes.md)",
        )
    docs = [
        _service_account(index, server),
        _config_map(index, server, policy),
        _deployment(index, server, policy),
        _service(index, server),
        _disruption_budget(index, server),
    ]
    if server.max_replicas > server.min_replicas:
        docs.append(_autoscaler(index, server))
    return docs


def _meta(index: Index, server: m.Server, name: str | None = None) -> dict[str, Any]:
    return metadata(
        name or index.server_name(server),
        package=server.package,
        component=SERVER_COMPONENT,
        namespace=index.namespace(server.namespace),
        source=source_of(server.span),
        source_name=server.name,
    )


def _selector(index: Index, server: m.Server) -> dict[str, str]:
    return selector(index.server_name(server), SERVER_COMPONENT)


def config_map_name(index: Index, server: m.Server) -> str:
    return f"{index.server_name(server)}-policy"


def _service_account(index: Index, server: m.Server) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "automountServiceAccountToken": False,
        "kind": "ServiceAccount",
        "metadata": _meta(index, server),
    }


def _config_map(index: Index, server: m.Server, policy: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "data": {POLICY_FILE: policy.decode()},
        "kind": "ConfigMap",
        "metadata": _meta(index, server, config_map_name(index, server)),
    }


def server_args(server: m.Server) -> list[str]:
    """`mcpdsl serve` as the pods run it: every address explicit, nothing left to defaults."""
    args = [
        "serve",
        f"{POLICY_DIR}/{POLICY_FILE}",
        "--addr",
        f"0.0.0.0:{SERVER_HTTP_PORT}",
        "--grpc-addr",
        f"0.0.0.0:{SERVER_GRPC_PORT}",
        "--on-store-unavailable",
        server.on_store_down,
        "--decision-log",
        "-",
    ]
    if server.mcp is not None:
        # The pods run the IR alone (the server block is not in it): the block's MCP
        # endpoint reaches `serve` as its flags, which is what they are for.
        args += ["--mcp-resource", server.mcp.resource]
        if server.mcp.providers:
            accept = ",".join(str(r) for r in server.mcp.providers)
            args += ["--mcp-accept", accept]
    if server.redis is not None:
        # Expanded by the kubelet from the container's environment (a Secret's value
        # never appears in the manifest).
        args += ["--redis", f"$({REDIS_ENV})"]
    return args


def _env(server: m.Server) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": "XDG_CACHE_HOME", "value": f"{TMP_DIR}/cache"}]
    redis = server.redis
    if redis is not None and redis.url is not None:
        env.append({"name": REDIS_ENV, "value": redis.url})
    elif redis is not None:
        ref = {"key": redis.secret_key, "name": redis.secret, "optional": False}
        env.append({"name": REDIS_ENV, "valueFrom": {"secretKeyRef": ref}})
    return sorted(env, key=lambda e: str(e["name"]))


def _container(server: m.Server) -> dict[str, Any]:
    probe = {"periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3}
    return {
        "args": server_args(server),
        "command": ["mcpdsl"],
        "env": _env(server),
        "image": server.image,
        "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}, **probe},
        "name": "server",
        "ports": [
            {"containerPort": SERVER_HTTP_PORT, "name": "http", "protocol": "TCP"},
            {"containerPort": SERVER_GRPC_PORT, "name": "grpc", "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": "http"},
            **probe,
            "periodSeconds": 5,
        },
        "resources": resources(server.cpu, server.memory, 0),
        # Liveness starts only once the process answers: a slow start (a large IR on a
        # busy node) is not mistaken for a hung server and restarted in a loop.
        "startupProbe": {
            "failureThreshold": 60,
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": 2,
            "timeoutSeconds": 2,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        },
        "volumeMounts": [
            {"mountPath": POLICY_DIR, "name": "policy", "readOnly": True},
            {"mountPath": TMP_DIR, "name": "tmp"},
        ],
    }


def _deployment(index: Index, server: m.Server, policy: bytes) -> dict[str, Any]:
    name = index.server_name(server)
    pods = _selector(index, server)
    pod_meta = pod_metadata(
        name,
        package=server.package,
        component=SERVER_COMPONENT,
        annotations={POLICY_DIGEST: hashlib.sha256(policy).hexdigest()},
    )
    pod_spec = apply_placement(
        {
            "automountServiceAccountToken": False,
            "containers": [_container(server)],
            "securityContext": {
                "runAsGroup": RUN_AS,
                "runAsNonRoot": True,
                "runAsUser": RUN_AS,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "serviceAccountName": name,
            "terminationGracePeriodSeconds": 30,
            "volumes": [
                {
                    "configMap": {"defaultMode": 0o444, "name": config_map_name(index, server)},
                    "name": "policy",
                },
                {"emptyDir": {"sizeLimit": "64Mi"}, "name": "tmp"},
            ],
        },
        Placement(),
        pods,
        several=server.max_replicas > 1,
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(index, server),
        "spec": {
            "replicas": server.min_replicas,
            "selector": {"matchLabels": pods},
            "strategy": {
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
                "type": "RollingUpdate",
            },
            "template": {"metadata": pod_meta, "spec": pod_spec},
        },
    }


def _service(index: Index, server: m.Server) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(index, server),
        "spec": {
            "ports": [
                {
                    "appProtocol": "http",
                    "name": "http",
                    "port": SERVER_HTTP_PORT,
                    "protocol": "TCP",
                    "targetPort": "http",
                },
                {
                    "appProtocol": "grpc",
                    "name": "grpc",
                    "port": SERVER_GRPC_PORT,
                    "protocol": "TCP",
                    "targetPort": "grpc",
                },
            ],
            "selector": _selector(index, server),
            "type": "ClusterIP",
        },
    }


def _disruption_budget(index: Index, server: m.Server) -> dict[str, Any]:
    """At most one pod down by a drain: the others keep answering every check."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(index, server),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(index, server)}},
    }


def _autoscaler(index: Index, server: m.Server) -> dict[str, Any]:
    """autoscaling/v2 HPA from the server's `replicas`/`target`, as a `scale` block's."""
    scale = server_scale(server)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(index, server),
        "spec": {
            "behavior": behavior(scale),
            "maxReplicas": server.max_replicas,
            "metrics": [hpa_metric(t) for t in scale_targets(scale)],
            "minReplicas": server.min_replicas,
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": index.server_name(server),
            },
        },
    }
