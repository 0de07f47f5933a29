"""Values a target platform would refuse are compile errors (E0312, E0313) at their span.

The table gives, for each field that reaches an artifact from a user value, a
value just past the target's limit; the property tests walk the boundaries and
show that every value is either refused with a diagnostic or produces artifacts
that pass the (strengthened) validators of tests/validators.py.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from validators import validate_envoy_bootstrap, validate_kubernetes

from mcpdsl import __version__
from mcpdsl.compile import TargetContext, envoy, kubernetes
from mcpdsl.diagnostics import Diagnostic
from mcpdsl.ir import limits
from mcpdsl.pipeline import Compilation, compile_tree

SERVICE = """package shop

service api {{
  image {image}
  port  8080
  cpu {cpu}
  memory {memory}
}}
"""
SCALE = """
scale api {{
  replicas {replicas}
  target cpu {utilization}
  target metric {metric} {average} per pod
  up by {pods} pods every 1m
  during weekdays 09:00-17:00 UTC {{ replicas {during} }}
}}
"""
BALANCE = """
balance api {{
  strategy ring-hash
  health http "/healthz" every {interval} timeout 1s healthy 2 unhealthy 3
  eject after 5 errors for {eject}
  limit {rate}
}}
"""
DEFAULTS: dict[str, str] = {
    "image": '"ghcr.io/shop/api:1.0"',
    "cpu": "500m",
    "memory": "256Mi",
    "replicas": "2..10",
    "utilization": "70%",
    "metric": '"http_requests"',
    "average": "100",
    "pods": "4",
    "during": "3..12",
    "interval": "10s",
    "eject": "30s",
    "rate": "100/s",
}


def source(**values: str) -> str:
    filled = {**DEFAULTS, **values}
    return (SERVICE + SCALE + BALANCE).format(**filled)


def compile_source(tmp_path: Path, text: str) -> Compilation:
    tree = tmp_path / "tree"
    tree.mkdir(exist_ok=True)
    (tree / "main.mcp").write_text(text, encoding="utf-8")
    return compile_tree(tree)


def spanned(text: str, diagnostic: Diagnostic) -> str:
    span = diagnostic.span
    assert span is not None and span.line == span.end_line
    return text.splitlines()[span.line - 1][span.column - 1 : span.end_column - 1]


CASES = [
    ("replicas", "1..99999999999999999999999", "99999999999999999999999", "E0312"),
    ("replicas", "2147483648", "2147483648", "E0312"),
    ("during", "1..3000000000", "3000000000", "E0312"),
    ("pods", "2147483648", "2147483648", "E0312"),
    ("utilization", "2147483648%", "2147483648%", "E0312"),
    ("cpu", "9223372036854776", "9223372036854776", "E0312"),
    ("memory", "8Ei", "8Ei", "E0312"),
    ("average", "9223372036854775808", "9223372036854775808", "E0312"),
    ("interval", "2147483648s", "2147483648s", "E0312"),
    ("interval", "315576000001s", "315576000001s", "E0312"),
    ("eject", "400000000000s", "400000000000s", "E0312"),
    ("rate", "5000000000/s", "5000000000/s", "E0312"),
    ("rate", "0.000000000001/s", "0.000000000001/s", "E0312"),
    ("image", '"ghcr.io/Shop/api:1.0"', '"ghcr.io/Shop/api:1.0"', "E0313"),
    ("image", '"api:"', '"api:"', "E0313"),
    ("image", '"api:' + "t" * 129 + '"', '"api:' + "t" * 129 + '"', "E0313"),
    ("image", '"api@sha256:abc"', '"api@sha256:abc"', "E0313"),
    ("image", '"-api"', '"-api"', "E0313"),
    ("image", '"registry:port/api"', '"registry:port/api"', "E0313"),
    ("metric", '"http.requests"', '"http.requests"', "E0313"),
    ("metric", '"1xx_total"', '"1xx_total"', "E0313"),
]


@pytest.mark.parametrize(
    "field, value, underlined, code", CASES, ids=[f"{c[0]}={c[1][:30]}" for c in CASES]
)
def test_value_the_target_refuses_is_a_diagnostic_at_its_span(
    tmp_path: Path, field: str, value: str, underlined: str, code: str
) -> None:
    text = source(**{field: value})
    compilation = compile_source(tmp_path, text)
    ours = [d for d in compilation.diagnostics if d.code == code]
    assert ours, [f"{d.code} {d.message}" for d in compilation.diagnostics]
    assert spanned(text, ours[0]) == underlined
    assert not ours[0].message[0].isupper() and not ours[0].message.endswith(".")


def test_values_at_the_limits_are_accepted(tmp_path: Path) -> None:
    text = source(
        replicas="1..2147483647",
        pods="2147483647",
        utilization="2147483647%",
        cpu="9223372036854775",
        memory="7Ei",
        image='"registry.example.com:5000/team/api__v2:1.0-rc.1@sha256:' + "a" * 64 + '"',
        metric='"http:requests_total"',
        average="9223372036854775807",
        interval="2147483647s",
        eject="315576000000s",
        rate="4294967295/s",
    )
    compilation = compile_source(tmp_path, text)
    assert not [d for d in compilation.diagnostics if d.is_error], [
        f"{d.code} {d.message}" for d in compilation.diagnostics
    ]
    assert artifact_errors(compilation) == []


def artifact_errors(compilation: Compilation) -> list[str]:
    """Every validator error of the Kubernetes and Envoy artifacts of a clean compilation."""
    assert compilation.project is not None
    context = TargetContext(version=__version__)
    errors: list[str] = []
    for artifact in kubernetes.compile(compilation.project, context).artifacts:
        for doc in yaml.safe_load_all(artifact.content.decode("utf-8")):
            if isinstance(doc, dict):
                errors.extend(validate_kubernetes(doc))
    for artifact in envoy.compile(compilation.project, context).artifacts:
        if artifact.path.endswith(".json"):
            errors.extend(validate_envoy_bootstrap(json.loads(artifact.content)))
    return errors


# ------------------------------------------------------------------ boundaries

INT32 = limits.INT32_MAX


def around(limit: int, spread: int = 3) -> st.SearchStrategy[int]:
    return st.integers(min_value=max(1, limit - spread), max_value=limit + spread)


VALUES: dict[str, st.SearchStrategy[str]] = {
    "replicas": around(INT32).map(lambda n: f"1..{n}"),
    "pods": around(INT32).map(str),
    "utilization": around(INT32).map(lambda n: f"{n}%"),
    "cpu": around(int(limits.CPU_CORES_MAX)).map(str),
    "memory": around(limits.QUANTITY_MAX, 2).map(str),
    "average": around(limits.QUANTITY_MAX, 2).map(str),
    "interval": around(INT32).map(lambda n: f"{n}s"),
    "eject": around(limits.DURATION_MAX_SECONDS).map(lambda n: f"{n}s"),
    "rate": around(limits.UINT32_MAX).map(lambda n: f"{n}/s"),
    "image": st.from_regex(r"[a-zA-Z0-9._:/@-]{1,12}", fullmatch=True).map(json.dumps),
    "metric": st.from_regex(r"[a-zA-Z0-9_:.-]{1,8}", fullmatch=True).map(json.dumps),
}


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(field=st.sampled_from(sorted(VALUES)), data=st.data())
def test_every_value_near_a_limit_is_refused_or_valid(
    tmp_path: Path, field: str, data: st.DataObject
) -> None:
    value = data.draw(VALUES[field], label=field)
    compilation = compile_source(tmp_path, source(**{field: value}))
    errors = [d for d in compilation.diagnostics if d.is_error]
    if errors:
        assert {d.code for d in errors} & {"E0312", "E0313", "E0303", "E0206", "E0311"}, [
            f"{d.code} {d.message}" for d in errors
        ]
        return
    assert artifact_errors(compilation) == []


# ------------------------------------------------------------------ the validators themselves


def hpa(**spec: Any) -> dict[str, Any]:
    base = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
        "minReplicas": 1,
        "maxReplicas": 3,
    }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {**base, **spec},
    }


def deployment(image: str, cpu: str) -> dict[str, Any]:
    labels = {"app": "api"}
    container = {
        "name": "api",
        "image": image,
        "resources": {"limits": {"cpu": cpu}, "requests": {"cpu": cpu}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


@pytest.mark.parametrize(
    "doc, needle",
    [
        (hpa(maxReplicas=2**31), "maxReplicas"),
        (
            hpa(
                behavior={
                    "scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 1801}]}
                }
            ),
            "periodSeconds",
        ),
        (
            hpa(behavior={"scaleDown": {"stabilizationWindowSeconds": 3601}}),
            "stabilizationWindowSeconds",
        ),
        (
            hpa(
                metrics=[
                    {
                        "type": "Pods",
                        "pods": {
                            "metric": {"name": "a.b"},
                            "target": {"type": "AverageValue", "averageValue": "1"},
                        },
                    }
                ]
            ),
            "not a metric name",
        ),
        (
            hpa(
                metrics=[
                    {
                        "type": "Pods",
                        "pods": {
                            "metric": {"name": "ab"},
                            "target": {"type": "AverageValue", "averageValue": str(2**63)},
                        },
                    }
                ]
            ),
            "averageValue",
        ),
        (deployment("ghcr.io/Shop/api:1", "1"), "not a valid image reference"),
        (deployment("api", "9223372036854776"), "quantity limit"),
        (deployment("api", str(Decimal(2**63))), "quantity limit"),
    ],
)
def test_validators_catch_out_of_range_and_invalid_values(doc: dict[str, Any], needle: str) -> None:
    errors = validate_kubernetes(doc)
    assert any(needle in e for e in errors), errors


def test_validators_accept_values_at_the_limits() -> None:
    assert validate_kubernetes(hpa(maxReplicas=2**31 - 1)) == []
    assert validate_kubernetes(deployment("localhost:5000/a/b__c:v1", "9223372036854775")) == []


def test_job_run_time_beyond_int64_seconds_is_refused(tmp_path: Path) -> None:
    text = (
        'package shop\n\njob etl {\n  image "etl:2.1"\n'
        "  runs 9223372036854775808s\n  window 01:00-05:00 UTC\n}\n"
    )
    compilation = compile_source(tmp_path, text)
    ours = [d for d in compilation.diagnostics if d.code == "E0312"]
    assert ours and spanned(text, ours[0]) == "9223372036854775808s"
