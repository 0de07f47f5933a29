"""Tests for tests/validators.py: each validator accepts a valid sample and catches real errors.

These pin down that the helpers really use the strict schemas / real engines
(a validator that accepts everything would make every compiler test vacuous).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from validators import (
    RegoEvalError,
    RegoEvaluator,
    opa_available,
    promql_available,
    regopy_has_builtin,
    run_opa,
    run_rego,
    validate_envoy_bootstrap,
    validate_kubernetes,
    validate_promql,
)

# ---------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------


def deployment() -> dict[str, Any]:
    """A minimal valid apps/v1 Deployment."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "team-a", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "frontend"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.27",
                            "ports": [{"containerPort": 8080}],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"cpu": "1", "memory": "256Mi"},
                            },
                        }
                    ]
                },
            },
        },
    }


def container(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]["containers"][0]


def cronjob(schedule: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "OnFailure",
                            "containers": [{"name": "job", "image": "busybox:1.36"}],
                        }
                    }
                }
            },
        },
    }


def scaled_object() -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {
            "scaleTargetRef": {"name": "web"},
            "minReplicaCount": 1,
            "maxReplicaCount": 10,
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": "http://prometheus:9090",
                        "query": "sum(rate(http_requests_total[1m]))",
                        "threshold": "100",
                    },
                }
            ],
        },
    }


def test_valid_deployment_passes() -> None:
    assert validate_kubernetes(deployment()) == []


def test_unknown_field_rejected_strict_mode() -> None:
    doc = deployment()
    container(doc)["imagePullPolcy"] = "Always"
    doc["metadata"]["labelz"] = {}
    errors = validate_kubernetes(doc)
    assert any("'imagePullPolcy' was unexpected" in e for e in errors), errors
    assert any("'labelz' was unexpected" in e for e in errors), errors
    assert all(e.startswith("Deployment/web: ") for e in errors)


def test_wrong_type_rejected() -> None:
    doc = deployment()
    doc["spec"]["replicas"] = "two"
    errors = validate_kubernetes(doc)
    assert errors == ["Deployment/web: spec.replicas: 'two' is not of type 'integer', 'null'"]


@pytest.mark.parametrize(
    ("name", "ok"),
    [("web", True), ("web-1", True), ("Web", False), ("web.api", False), ("a" * 64, False)],
)
def test_deployment_name_is_dns_label(name: str, ok: bool) -> None:
    doc = deployment()
    doc["metadata"]["name"] = name
    errors = validate_kubernetes(doc)
    assert (errors == []) is ok, errors


def test_service_name_is_rfc1035_and_ports_in_range() -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    assert validate_kubernetes(svc) == []
    svc["metadata"]["name"] = "1web"
    svc["spec"]["ports"][0]["port"] = 70000
    errors = validate_kubernetes(svc)
    assert any("RFC 1035" in e for e in errors), errors
    assert any("70000 not in 1-65535" in e for e in errors), errors


def test_rbac_names_may_contain_colons() -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "system:mcpdsl-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    }
    assert validate_kubernetes(role) == []


@pytest.mark.parametrize(
    ("quantity", "ok"),
    [
        ("100m", True),
        ("1.5", True),
        ("128Mi", True),
        ("1G", True),
        ("1e3", True),
        (".5", True),
        (2, True),
        ("100 m", False),
        ("1.5GB", False),
        ("128mi", False),
        ("-1", False),
        ("1e", False),
        ("", False),
    ],
)
def test_resource_quantity_grammar(quantity: Any, ok: bool) -> None:
    doc = deployment()
    container(doc)["resources"] = {"requests": {"cpu": quantity}}
    errors = validate_kubernetes(doc)
    assert (errors == []) is ok, errors


def test_request_above_limit_rejected() -> None:
    doc = deployment()
    container(doc)["resources"]["requests"]["memory"] = "1Gi"
    errors = validate_kubernetes(doc)
    assert errors == [
        "Deployment/web: spec.template.spec.containers[0].resources.requests.memory: must be "
        "less than or equal to the memory limit ('256Mi')"
    ]


def test_resource_quota_hard_quantities() -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "quota", "namespace": "team-a"},
        "spec": {"hard": {"requests.cpu": "10", "limits.memory": "20Gi", "pods": "50"}},
    }
    assert validate_kubernetes(quota) == []
    quota["spec"]["hard"]["limits.memory"] = "20 GiB"
    assert len(validate_kubernetes(quota)) == 1


def test_selector_must_match_template_labels() -> None:
    doc = deployment()
    doc["spec"]["selector"]["matchLabels"]["app"] = "api"
    errors = validate_kubernetes(doc)
    assert any("selector does not match template labels" in e for e in errors), errors
    doc = deployment()
    doc["spec"]["selector"] = {}
    assert any("empty selector" in e for e in validate_kubernetes(doc))


@pytest.mark.parametrize(
    "schedule", ["0 3 * * *", "*/15 * * * *", "0 9-17 * * MON-FRI", "30 2 1,15 JAN,JUL ?", "@daily"]
)
def test_cron_schedule_valid(schedule: str) -> None:
    assert validate_kubernetes(cronjob(schedule)) == []


@pytest.mark.parametrize(
    "schedule",
    ["0 3 * *", "60 * * * *", "* 24 * * *", "0 0 0 * *", "0 0 * 13 *", "0 0 * * 7", "*/0 * * * *",
     "0 5-3 * * *", "TZ=UTC 0 3 * * *", "@fortnightly", "every day"],
)  # fmt: skip
def test_cron_schedule_invalid(schedule: str) -> None:
    errors = validate_kubernetes(cronjob(schedule))
    assert errors and all("spec.schedule" in e for e in errors), errors


def test_keda_scaledobject_structural_check() -> None:
    assert validate_kubernetes(scaled_object()) == []
    bad = scaled_object()
    bad["spec"]["scaleTargetRef"] = {}
    bad["spec"]["minReplicaCount"] = 5
    bad["spec"]["maxReplicaCount"] = 2
    bad["spec"]["triggers"][0]["metadata"]["threshold"] = 100
    bad["spec"]["pollingIntervall"] = 30
    errors = validate_kubernetes(bad)
    # the strict cloudcoil model reports first, then the structural check
    assert "ScaledObject/web: spec.scaleTargetRef.name: Field required" in errors
    assert (
        "ScaledObject/web: spec.triggers.0.metadata.threshold: Input should be a valid string"
        in (errors)
    )
    assert errors[-4:] == [
        "ScaledObject/web: spec.pollingIntervall: unknown field",
        "ScaledObject/web: spec.scaleTargetRef.name: required non-empty string",
        "ScaledObject/web: spec.minReplicaCount (5) must be <= spec.maxReplicaCount (2)",
        "ScaledObject/web: spec.triggers[0].metadata.threshold: values must be strings, got int",
    ]
    no_triggers = scaled_object()
    no_triggers["spec"]["triggers"] = []
    assert validate_kubernetes(no_triggers) == [
        "ScaledObject/web: spec.triggers: required non-empty list"
    ]


def test_keda_models_are_strict() -> None:
    """cloudcoil's models ignore extra keys and coerce; `strict_model_errors` does neither."""
    bad = scaled_object()
    bad["spec"]["minReplicaCount"] = "1"
    bad["spec"]["advanced"] = {
        "horizontalPodAutoscalerConfig": {
            "behavior": {
                "scaleUp": {
                    "policies": [{"periodSeconds": 15, "type": "Pods", "value": 4, "typo": 1}],
                    "selectPolicy": "Maximum",
                    "stabilizationWindowSeconds": 4000,
                },
                "scaleDown": {"policies": [{"periodSeconds": 0, "type": "Pod", "value": 1}]},
            }
        }
    }
    errors = validate_kubernetes(bad)
    assert "ScaledObject/web: spec.minReplicaCount: Input should be a valid integer" in errors
    bad["spec"]["minReplicaCount"] = 1
    errors = validate_kubernetes(bad)
    at = "ScaledObject/web: spec.advanced.horizontalPodAutoscalerConfig.behavior"
    assert (
        f"{at}.scaleUp.stabilizationWindowSeconds: "
        "Input should be less than or equal to 3600" in errors
    )
    assert f"{at}.scaleUp.stabilizationWindowSeconds: 4000 not in 0..3600" in errors
    assert f"{at}.scaleUp.selectPolicy: 'Maximum' not Max/Min/Disabled" in errors
    behavior = bad["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    behavior["scaleUp"]["stabilizationWindowSeconds"] = 0
    errors = validate_kubernetes(bad)
    assert f"{at}.scaleUp.policies[0].typo: unknown field" in errors
    assert f"{at}.scaleDown.policies[0].periodSeconds: 0 not in 1..1800" in errors
    assert f"{at}.scaleDown.policies[0].type: not Pods/Percent" in errors


def test_keda_cron_trigger_metadata() -> None:
    doc = scaled_object()
    cron = {"start": "0 8 * * 1-5", "end": "0 20 * * 1-5", "timezone": "Europe/Stockholm"}
    doc["spec"]["triggers"] = [{"type": "cron", "metadata": {**cron, "desiredReplicas": "6"}}]
    assert validate_kubernetes(doc) == []
    cron = {"start": "0 8 * *", "end": "0 8 * *", "timezone": "Europe/Stokholm"}
    doc["spec"]["triggers"] = [{"type": "cron", "metadata": {**cron, "desiredReplicas": "-1"}}]
    at = "ScaledObject/web: spec.triggers[0].metadata"
    assert validate_kubernetes(doc) == [
        f"{at}.timezone: 'Europe/Stokholm' is not an IANA zone",
        f"{at}.start: '0 8 * *' is not a 5-field cron",
        f"{at}.end: '0 8 * *' is not a 5-field cron",
        f"{at}: start and end must differ",
        f"{at}.desiredReplicas: '-1' is not a replica count",
    ]


def test_keda_trigger_authentication() -> None:
    doc = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": "prom", "namespace": "web"},
        "spec": {"secretTargetRef": [{"parameter": "bearerToken", "name": "prom", "key": "t"}]},
    }
    assert validate_kubernetes(doc) == []
    doc["spec"]["secretTargetRef"][0]["keyy"] = "t"
    del doc["spec"]["secretTargetRef"][0]["key"]
    errors = validate_kubernetes(doc)
    assert "TriggerAuthentication/prom: spec.secretTargetRef.0.key: Field required" in errors
    assert "TriggerAuthentication/prom: spec.secretTargetRef[0].keyy: unknown field" not in errors


def test_kubernetes_validate_ships_no_keda_schema() -> None:
    """Why ScaledObject gets a structural check: the schema set has no KEDA CRDs."""
    from pathlib import Path

    import kubernetes_validate

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    assert not list(root.glob("v1.33.0-local-strict/scaledobject*"))


def test_unknown_kind_is_an_error_unless_allowed() -> None:
    doc = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert "no schema" in validate_kubernetes(doc)[0]
    assert validate_kubernetes(doc, allow_unknown_kinds=True) == []


def test_kubernetes_version_selection() -> None:
    assert validate_kubernetes(deployment(), "v1.33") == []
    with pytest.raises(ValueError):
        validate_kubernetes(deployment(), "1.99.0")
    with pytest.raises(ValueError):
        validate_kubernetes(deployment(), "1.20.0")


def test_kubernetes_validator_is_reused_across_documents() -> None:
    """Many documents of one kind validate through the cached validator (speed is benchmarked)."""
    docs = []
    for i in range(100):
        doc = deployment()
        doc["metadata"]["name"] = f"web-{i}"
        docs.append(doc)
    assert all(validate_kubernetes(d) == [] for d in docs)


# ---------------------------------------------------------------------------
# Envoy
# ---------------------------------------------------------------------------

HCM_URL = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
ROUTER_URL = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
HCM_PATH = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"


def bootstrap() -> dict[str, Any]:
    """Listener with HCM + router, routing to one STRICT_DNS cluster."""
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9901}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "ingress",
                    "address": {"socket_address": {"address": "0.0.0.0", "port_value": 10000}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": HCM_URL,
                                        "stat_prefix": "ingress_http",
                                        "route_config": {
                                            "name": "local_route",
                                            "virtual_hosts": [
                                                {
                                                    "name": "backend",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "route": {"cluster": "service_a"},
                                                        }
                                                    ],
                                                }
                                            ],
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {"@type": ROUTER_URL},
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "service_a",
                    "connect_timeout": "0.25s",
                    "type": "STRICT_DNS",
                    "lb_policy": "ROUND_ROBIN",
                    "load_assignment": {
                        "cluster_name": "service_a",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "service-a",
                                                    "port_value": 8080,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


def hcm(config: dict[str, Any]) -> dict[str, Any]:
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]


def cluster(config: dict[str, Any]) -> dict[str, Any]:
    return config["static_resources"]["clusters"][0]


def test_valid_bootstrap_passes() -> None:
    assert validate_envoy_bootstrap(bootstrap()) == []


def test_unknown_field_is_a_parse_error() -> None:
    config = bootstrap()
    cluster(config)["conect_timeout"] = "1s"
    errors = validate_envoy_bootstrap(config)
    assert len(errors) == 1
    assert errors[0].startswith("parse: ")
    assert 'no field named "conect_timeout"' in errors[0]


def test_unknown_field_inside_typed_config_is_a_parse_error() -> None:
    config = bootstrap()
    hcm(config)["stat_prefx"] = "x"
    errors = validate_envoy_bootstrap(config)
    assert len(errors) == 1 and "stat_prefx" in errors[0], errors


def test_unknown_type_url_is_a_parse_error() -> None:
    config = bootstrap()
    hcm(config)["http_filters"][0]["typed_config"]["@type"] = "type.googleapis.com/no.such.V3"
    errors = validate_envoy_bootstrap(config)
    assert len(errors) == 1 and "no.such.V3" in errors[0], errors


def _set(path: list[Any], value: Any) -> Any:
    def mutate(config: dict[str, Any]) -> None:
        target: Any = config
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return mutate


_DELETE = object()
_LISTENER = ["static_resources", "listeners", 0]
_CLUSTER = ["static_resources", "clusters", 0]
_VHOST = ["route_config", "virtual_hosts", 0]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            _set([*_LISTENER, "address", "socket_address", "port_value"], 70000),
            "static_resources.listeners[0].address.socket_address.port_value: "
            "is not lesser than or equal to 65535 [pgv]",
            id="uint32-lte",
        ),
        pytest.param(
            _set([*_CLUSTER, "connect_timeout"], "0s"),
            "static_resources.clusters[0].connect_timeout: is not greater than 0.0 [pgv]",
            id="duration-gt",
        ),
        pytest.param(
            _set([*_CLUSTER, "lb_policy"], 77),
            "static_resources.clusters[0].lb_policy: is not defined [pgv]",
            id="enum-defined-only",
        ),
        pytest.param(
            _set([*_LISTENER, "address"], {}),
            "static_resources.listeners[0].address: Oneof address is required [pgv]",
            id="oneof-required",
        ),
        pytest.param(
            _set([*_CLUSTER, "load_assignment", "cluster_name"], ""),
            "static_resources.clusters[0].load_assignment.cluster_name: "
            "length is less than 1 [pgv]",
            id="string-min-len",
        ),
    ],
)
def test_pgv_rules_on_bootstrap(mutate: Any, expected: str) -> None:
    config = bootstrap()
    mutate(config)
    assert validate_envoy_bootstrap(config) == [expected]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            _set(["stat_prefix"], ""),
            f"{HCM_PATH}.stat_prefix: length is less than 1 [pgv]",
            id="string-min-len-in-any",
        ),
        pytest.param(
            _set(["route_config"], _DELETE),
            f"{HCM_PATH}: Oneof route_specifier is required [pgv]",
            id="oneof-in-any",
        ),
        pytest.param(
            _set([*_VHOST, "domains"], []),
            f"{HCM_PATH}.route_config.virtual_hosts[0].domains: "
            "needs to contain at least 1 items [pgv]",
            id="repeated-min-items",
        ),
        pytest.param(
            _set([*_VHOST, "routes", 0, "match"], _DELETE),
            f"{HCM_PATH}.route_config.virtual_hosts[0].routes[0]: match is required. [pgv]",
            id="message-required",
        ),
        pytest.param(
            _set(
                ["route_config", "request_headers_to_add"],
                [{"header": {"key": "x-mcp\n", "value": "1"}}],
            ),
            f"{HCM_PATH}.route_config.request_headers_to_add[0].header.key: "
            "pattern does not match ^[^\\x00\\n\\r]*$ [pgv]",
            id="well-known-header-trailing-newline",
        ),
    ],
)
def test_pgv_rules_inside_any(mutate: Any, expected: str) -> None:
    config = bootstrap()
    mutate(hcm(config))
    assert validate_envoy_bootstrap(config) == [expected]


def test_route_to_unknown_cluster() -> None:
    config = bootstrap()
    hcm(config)["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["cluster"] = "nope"
    assert validate_envoy_bootstrap(config) == [
        f"{HCM_PATH}.route_config.virtual_hosts[0].routes[0].route.cluster: cluster 'nope' is "
        "not defined in static_resources.clusters"
    ]


def test_cluster_references_outside_routes_are_checked() -> None:
    config = bootstrap()
    hcm(config)["http_filters"].insert(
        0,
        {
            "name": "envoy.filters.http.ext_authz",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
                "grpc_service": {"envoy_grpc": {"cluster_name": "authz"}},
                "transport_api_version": "V3",
            },
        },
    )
    errors = validate_envoy_bootstrap(config)
    assert errors == [
        f"{HCM_PATH}.http_filters[0].typed_config.grpc_service.envoy_grpc.cluster_name: "
        "cluster 'authz' is not defined in static_resources.clusters"
    ]
    authz = copy.deepcopy(cluster(config))
    authz["name"] = "authz"
    authz["load_assignment"]["cluster_name"] = "authz"
    config["static_resources"]["clusters"].append(authz)
    assert validate_envoy_bootstrap(config) == []


def test_cds_disables_static_cluster_check() -> None:
    config = bootstrap()
    hcm(config)["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["cluster"] = "dynamic"
    config["dynamic_resources"] = {"cds_config": {"ads": {}}}
    assert validate_envoy_bootstrap(config) == []


def test_router_must_be_last_http_filter() -> None:
    config = bootstrap()
    hcm(config)["http_filters"].append(
        {
            "name": "envoy.filters.http.cors",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
            },
        }
    )
    errors = validate_envoy_bootstrap(config)
    assert errors == [
        f"{HCM_PATH}.http_filters[0]: router filter must be the last HTTP filter",
        f"{HCM_PATH}.http_filters[1]: last HTTP filter is 'envoy.filters.http.cors', "
        f"not the router ({ROUTER_URL})",
    ]


def test_duplicate_names_and_domains() -> None:
    config = bootstrap()
    config["static_resources"]["clusters"].append(copy.deepcopy(cluster(config)))
    listener = copy.deepcopy(config["static_resources"]["listeners"][0])
    listener["address"]["socket_address"]["port_value"] = 10001
    config["static_resources"]["listeners"].append(listener)
    hcm(config)["route_config"]["virtual_hosts"].append(
        {"name": "other", "domains": ["*"], "routes": []}
    )
    errors = validate_envoy_bootstrap(config)
    assert "static_resources.listeners[1]: duplicate listener name 'ingress'" in errors
    assert "static_resources.clusters[1]: duplicate cluster name 'service_a'" in errors
    assert (
        f"{HCM_PATH}.route_config.virtual_hosts[1]: domain '*' already used by virtual host "
        "'backend'" in errors
    )


def test_envoy_validation_is_repeatable() -> None:
    """Validating the same bootstrap again gives the same (empty) result."""
    for _ in range(10):
        assert validate_envoy_bootstrap(bootstrap()) == []


# ---------------------------------------------------------------------------
# Rego (regopy and, when installed, the real OPA engine)
# ---------------------------------------------------------------------------

AUTHZ = {
    "authz.rego": """package authz

import rego.v1

default allow := false

allow if input.user in data.admins

deny contains msg if {
    input.user == "eve"
    msg := sprintf("%s is blocked", [input.user])
}
"""
}
DATA = {"admins": ["alice", "bob"]}

# (input, query, expected) shared by the regopy and OPA tests: one result contract.
CASES: list[tuple[dict[str, Any], str, object]] = [
    ({"user": "alice"}, "data.authz.allow", True),
    ({"user": "eve"}, "data.authz.allow", False),
    ({"user": "eve"}, "data.authz.deny", ["eve is blocked"]),
    ({"user": "alice"}, "data.authz.deny", []),
    ({"user": "alice"}, "data.authz.missing", None),
    ({"user": "alice"}, "data.admins[_]", ["alice", "bob"]),
    ({"user": "alice"}, "x := data.authz.allow", {"x": True}),
    ({"user": "alice"}, 'input.user == "alice"', True),
    ({"user": "eve"}, 'input.user == "alice"', None),
]


@pytest.mark.parametrize(("input_doc", "query", "expected"), CASES)
def test_run_rego(input_doc: dict[str, Any], query: str, expected: object) -> None:
    assert run_rego(AUTHZ, DATA, input_doc, query) == expected


def test_run_rego_default_for_undefined() -> None:
    assert run_rego(AUTHZ, DATA, {}, "data.authz.missing", default="undef") == "undef"


def test_run_rego_reports_syntax_errors() -> None:
    bad = {"bad.rego": "package bad\n\nimport rego.v1\n\nallow if { input.x == }\n"}
    with pytest.raises(RegoEvalError, match=r"bad\.rego:5"):
        run_rego(bad, None, {}, "data.bad.allow")


def test_run_rego_reports_bad_query() -> None:
    with pytest.raises(RegoEvalError, match="unclosed"):
        run_rego(AUTHZ, DATA, {}, "data.authz[")


def test_regopy_lacks_cidr_builtins() -> None:
    """Documented limitation: rego-cpp has no net.cidr_*; run_rego says so loudly."""
    assert not regopy_has_builtin("net.cidr_contains")
    assert regopy_has_builtin("sprintf")
    cidr = {"net.rego": 'package net\n\nimport rego.v1\n\nallow if net.cidr_contains("10.0.0.0/8", input.ip)\n'}  # fmt: skip
    with pytest.raises(RegoEvalError, match=r"net\.cidr_contains"):
        run_rego(cidr, None, {"ip": "10.1.2.3"}, "data.net.allow")


def test_rego_evaluator_compiles_once() -> None:
    evaluator = RegoEvaluator(AUTHZ, DATA, "data.authz.allow", ["data.authz.deny"])
    assert evaluator.evaluate({"user": "alice"}) is True
    assert evaluator.evaluate({"user": "eve"}) is False
    assert evaluator.evaluate_entrypoint("authz/deny", {"user": "eve"}) == ["eve is blocked"]
    assert evaluator.evaluate_entrypoint("data.authz.deny", {"user": "bob"}) == []
    results = [evaluator.evaluate({"user": f"user{i}"}) for i in range(1000)]
    assert results == [False] * 1000
    with pytest.raises(ValueError):
        evaluator.evaluate_entrypoint("authz/allow", {})


def test_rego_evaluator_reports_compile_errors() -> None:
    with pytest.raises(RegoEvalError):
        RegoEvaluator({"x.rego": "package x\n\nallow if {"}, None, "data.x.allow")


needs_opa = pytest.mark.skipif(
    not opa_available(), reason="system component missing: opa-golib-python-bindings"
)


@needs_opa
@pytest.mark.parametrize(("input_doc", "query", "expected"), CASES)
def test_run_opa_agrees_with_regopy(
    input_doc: dict[str, Any], query: str, expected: object
) -> None:
    assert run_opa(AUTHZ, DATA, input_doc, query) == expected


@needs_opa
def test_run_opa_rejects_rego_v0_and_has_cidr() -> None:
    with pytest.raises(RegoEvalError, match="`if` keyword is required"):
        run_opa({"v0.rego": "package v0\n\nallow { input.x == 1 }\n"}, None, {}, "data.v0.allow")
    cidr = {"net.rego": 'package net\n\nimport rego.v1\n\nallow if net.cidr_contains("10.0.0.0/8", input.ip)\n'}  # fmt: skip
    assert run_opa(cidr, None, {"ip": "10.1.2.3"}, "data.net.allow") is True
    assert run_opa(cidr, None, {"ip": "192.0.2.1"}, "data.net.allow") is None


# ---------------------------------------------------------------------------
# PromQL
# ---------------------------------------------------------------------------

needs_promql = pytest.mark.skipif(
    not promql_available(), reason="system component missing: promql-parser"
)


@needs_promql
@pytest.mark.parametrize(
    "expr",
    [
        'sum by (tool) (rate(mcp_tool_calls_total{server="fs"}[5m])) > 10',
        "histogram_quantile(0.99, sum by (le) (rate(mcp_latency_seconds_bucket[5m])))",
        "up == 0",
    ],
)
def test_promql_valid(expr: str) -> None:
    assert validate_promql(expr) == []


@needs_promql
@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("sum(rate(x[5m])", "unclosed left parenthesis"),
        ("rate(x)", "expected type matrix"),
        ("nosuchfunc(x)", "unknown function"),
        ("x[5m]", "range vector"),
    ],
)
def test_promql_invalid(expr: str, fragment: str) -> None:
    errors = validate_promql(expr)
    assert len(errors) == 1 and fragment in errors[0], errors


@needs_promql
def test_promql_range_allowed_when_not_instant() -> None:
    assert validate_promql("x[5m]", instant=False) == []
