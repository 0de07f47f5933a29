"""Team quotas: the one mapping (`mcpdsl/ir/quotas.py`), what the cluster gets, what `check` says.

The property that matters: for every namespace, what the emitted
ResourceQuotas impose is exactly what the capacity analysis assumed, the pods
they count are exactly the workloads the analysis counted, and `A0134` fires
exactly when those pods could not all run.  The trees are generated as
source text and go through the real front end, target and analysis.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from validators import validate_kubernetes

from mcpdsl._version import __version__
from mcpdsl.analysis import analyze
from mcpdsl.compile import TargetContext, kubernetes
from mcpdsl.ir.quotas import DIMENSIONS, quota_plan, split
from mcpdsl.pipeline import compile_tree

REPO = Path(__file__).resolve().parents[2]
_HARD_KEYS = {"cpu": "requests.cpu", "memory": "requests.memory", "gpu": "requests.nvidia.com/gpu"}


def quantity(text: str, dim: str) -> Fraction:
    """A Kubernetes quantity in the mapping's units (millicores, bytes, GPUs)."""
    if dim == "cpu":
        return Fraction(text[:-1]) if text.endswith("m") else Fraction(text) * 1000
    for suffix, factor in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if text.endswith(suffix):
            return Fraction(text[: -len(suffix)]) * factor
    return Fraction(text)


def compile_source(text: str) -> tuple[Any, dict[str, dict[str, Any]], list[Any]]:
    """(project, artifact path -> document, capacity findings) of a one-file tree."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        (tree / "main.mcp").write_text(text, encoding="utf-8")
        compilation = compile_tree(tree)
    errors = [f"{d.code}: {d.message}" for d in compilation.diagnostics if d.is_error]
    assert compilation.project is not None and errors == [], errors
    out = kubernetes.compile(compilation.project, TargetContext(version=__version__))
    docs = {a.path: yaml.safe_load(a.content) for a in out.artifacts}
    findings = analyze(compilation.project, only=["capacity"]).diagnostics
    return compilation.project, docs, findings


def pod_templates(docs: dict[str, dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """(workload document, most pods it runs at once) for every service and job.

    Trees here have no `scale`, so a Deployment or StatefulSet runs `replicas`
    pods; a CronJob (concurrencyPolicy Forbid) one.
    """
    out = []
    for doc in docs.values():
        if doc["kind"] in ("Deployment", "StatefulSet"):
            if doc["metadata"]["labels"]["app.kubernetes.io/component"] == "service":
                out.append((doc, doc["spec"]["replicas"]))
        elif doc["kind"] == "CronJob":
            assert doc["spec"]["concurrencyPolicy"] == "Forbid"
            out.append((doc, 1))
    return out


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def requests_of(doc: dict[str, Any], dim: str) -> Fraction:
    resources = pod_spec(doc)["containers"][0].get("resources", {})
    if dim == "gpu":
        value = resources.get("limits", {}).get("nvidia.com/gpu")
    else:
        value = resources.get("requests", {}).get(dim)
    return quantity(value, dim) if value is not None else Fraction(0)


# -------------------------------------------------------------- generation

NAMESPACES = ("edge", "core", "data")
TEAMS = ("web", "ml", "ops")
POOLS = ("general", "gpu")


@st.composite
def trees(draw: st.DrawFn) -> str:
    """A tree of pools with team quotas and services/jobs spread over namespaces."""
    parts = ["package t\n"]
    for pool in POOLS:
        quotas = []
        for team in draw(st.lists(st.sampled_from(TEAMS), unique=True, max_size=3)):
            cpu = draw(st.integers(0, 40))
            memory = draw(st.integers(0, 64))
            gpu = draw(st.integers(0, 8))
            quotas.append(f'  quota team "{team}" {{ cpu {cpu}, memory {memory}Gi, gpu {gpu} }}\n')
        parts.append(
            f"pool {pool} {{\n  node {{ cpu 64, memory 256Gi, gpu 8 }}\n  nodes 1..10\n"
            + "".join(quotas)
            + "}\n"
        )
    count = draw(st.integers(1, 7))
    for i in range(count):
        namespace = draw(st.sampled_from(NAMESPACES))
        team = draw(st.sampled_from((*TEAMS, None)))
        pool = draw(st.sampled_from((*POOLS, None)))
        cpu = draw(st.sampled_from(("250m", "500m", "1", "2", "3")))
        memory = draw(st.sampled_from(("256Mi", "1Gi", "3Gi", "1500Mi")))
        gpu = draw(st.integers(0, 2))
        clauses = [f'  namespace "{namespace}"', f"  cpu {cpu}", f"  memory {memory}"]
        clauses += [f"  gpu {gpu}"] if gpu else []
        clauses += [f"  pool {pool}"] if pool else []
        if draw(st.booleans()):
            if team is not None:
                label = draw(st.booleans())
                clauses.append(f'  labels {{ team: "{team}" }}' if label else f'  team "{team}"')
            replicas = draw(st.integers(1, 6))
            parts.append(
                f'service s{i} {{\n  image "x/s{i}:1"\n  port {8000 + i}\n  stateful\n'
                f"  replicas {replicas}\n" + "\n".join(clauses) + "\n}\n"
            )
        else:
            clauses += [f'  team "{team}"'] if team is not None else []
            parts.append(
                f'job j{i} {{\n  image "x/j{i}:1"\n  runs 1h\n  window 01:00-03:00 UTC\n'
                + "\n".join(clauses)
                + "\n}\n"
            )
    return "\n".join(parts)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(trees())
def test_artifacts_impose_what_the_analysis_assumed(text: str) -> None:
    project, docs, findings = compile_source(text)
    plan = quota_plan(project)
    quotas = [d for d in docs.values() if d["kind"] == "ResourceQuota"]

    # 1. Per namespace, the sum of what the ResourceQuotas impose is what the analysis assumed.
    imposed: dict[tuple[str, str], Fraction | None] = {}
    assumed: dict[tuple[str, str], Fraction | None] = {}
    for doc in quotas:
        hard = doc["spec"]["hard"]
        for dim in DIMENSIONS:
            key = (doc["metadata"]["namespace"], dim)
            value = hard.get(_HARD_KEYS[dim])
            before = imposed.get(key, Fraction(0))
            imposed[key] = (
                None if value is None or before is None else before + quantity(value, dim)
            )
    for scoped in plan.scoped:
        for dim in DIMENSIONS:
            key = (scoped.namespace, dim)
            value = scoped.hard.get(dim)
            before = assumed.get(key, Fraction(0))
            assumed[key] = None if value is None or before is None else before + value
    assert imposed == assumed

    # 2. Each quota counts exactly the pods the analysis counted for it, and
    # A0134 fires exactly when those pods request more than the quota allows.
    over = False
    for doc in quotas:
        namespace = doc["metadata"]["namespace"]
        (scope,) = doc["spec"]["scopeSelector"]["matchExpressions"]
        assert (scope["scopeName"], scope["operator"]) == ("PriorityClass", "In")
        counted = [
            (w, pods)
            for w, pods in pod_templates(docs)
            if w["metadata"]["namespace"] == namespace
            and pod_spec(w).get("priorityClassName") in scope["values"]
        ]
        (scoped,) = [
            s
            for s in plan.scoped
            if s.namespace == namespace and docs_class(docs, s.pool) in scope["values"]
        ]
        assert sorted(w["metadata"]["name"] for w, _ in counted) == sorted(
            w.qualified.split(".", 1)[1].lower() for w in scoped.workloads
        )
        for dim in DIMENSIONS:
            demand = sum((pods * requests_of(w, dim) for w, pods in counted), Fraction(0))
            assert demand == scoped.demand(dim)
            cap = doc["spec"]["hard"].get(_HARD_KEYS[dim])
            if cap is not None and demand > quantity(cap, dim):
                over = True
    assert over == any(d.code == "A0134" for d in findings)

    # 3. A team's shares add up to its declared quota, and a team that fits as a
    # whole fits in every namespace it runs in.
    by_quota: dict[tuple[str, int], list[Any]] = defaultdict(list)
    for scoped in plan.scoped:
        for share in scoped.shares:
            by_quota[(share.pool, share.position)].append(share)
    pools = {p.qualified: p for p in project.pools}
    for (pool, position), shares in by_quota.items():
        declared = pools[pool].quotas[position].resources
        members = [
            w
            for s in plan.scoped
            for w in s.workloads
            if w.pool == pool and w.team == shares[0].team
        ]
        for dim, total in (
            ("cpu", int(declared.cpu * 1000)),
            ("memory", declared.memory),
            ("gpu", declared.gpu),
        ):
            if total == 0:
                assert all(s.hard.get(dim) is None for s in shares)
                continue
            assert sum(s.hard.get(dim) or 0 for s in shares) == total
            if sum(w.total(dim) for w in members) <= total:
                for s in shares:
                    mine = sum(w.total(dim) for w in members if w.namespace == s.namespace)
                    assert (s.hard.get(dim) or 0) >= mine

    for doc in quotas:
        assert validate_kubernetes(doc) == []


def docs_class(docs: dict[str, dict[str, Any]], pool: str) -> str:
    """The PriorityClass the target emitted for a pool (by its annotation-free name)."""
    name = pool.split(".", 1)[1]
    (found,) = [
        d["metadata"]["name"]
        for d in docs.values()
        if d["kind"] == "PriorityClass" and d["metadata"]["name"] == f"mcpdsl-{name}"
    ]
    return found


# ------------------------------------------------------------------ split


@given(
    st.integers(0, 10**12),
    st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 10**9), min_size=1),
)
def test_split_adds_up_and_keeps_proportions(total: int, weights: dict[str, int]) -> None:
    parts = split(total, weights)
    assert sum(parts.values()) == total
    denominator = sum(weights.values()) or len(weights)
    for key, part in parts.items():
        weight = weights[key] if sum(weights.values()) else 1
        assert part >= total * weight // denominator
        assert part <= -(-total * weight // denominator) + 1
    assert split(total, dict(reversed(list(weights.items())))) == parts


def test_split_in_mebibytes_stays_whole() -> None:
    parts = split(128 * 2**30, {"edge": 24 * 2**30, "core": 60 * 2**30}, 2**20)
    assert sum(parts.values()) == 128 * 2**30
    assert all(p % 2**20 == 0 for p in parts.values())
    assert parts["edge"] >= 24 * 2**30 and parts["core"] >= 60 * 2**30


# --------------------------------------------------------------- policies


def test_policies_fit_their_quotas() -> None:
    """`policies/` fits by construction: each namespace's pods fit its ResourceQuota."""
    compilation = compile_tree(REPO / "policies")
    assert compilation.project is not None
    findings = analyze(compilation.project, only=["capacity"]).diagnostics
    assert [d for d in findings if d.code in ("A0132", "A0134")] == []
    out = kubernetes.compile(compilation.project, TargetContext(version=__version__))
    assert not any(d.code == "B0116" for d in out.diagnostics)
    plan = quota_plan(compilation.project)
    placed = {(s.namespace, s.pool.split(".")[1]) for s in plan.scoped}
    assert placed == {
        ("edge", "standard"),
        ("core", "standard"),
        ("agents", "standard"),
        ("data", "standard"),
        ("data", "gpu"),
        ("ml", "gpu"),
    }
    for scoped in plan.scoped:
        for dim in DIMENSIONS:
            cap = scoped.hard.get(dim)
            assert cap is None or scoped.demand(dim) <= cap, (scoped.namespace, dim)
    # Namespace `data`: the standard pool's quota counts postgres, vector-store and the two
    # nightly jobs (36 cpu of 40), the gpu pool's only embedding-backfill.
    data = {s.pool: s for s in plan.scoped if s.namespace == "data"}
    assert data["platform.standard"].demand("cpu") == 36_000
    assert data["platform.standard"].hard.cpu == 40_000
    assert data["platform.gpu"].demand("gpu") == 2


@pytest.mark.parametrize("namespace", ["default", "kube-system", "kube-public", "kube-node-lease"])
def test_no_namespace_object_for_namespaces_the_policy_does_not_own(namespace: str) -> None:
    text = (
        "package t\n"
        f'service api {{\n  image "x/api:1"\n  port 80\n  namespace "{namespace}"\n  stateful\n}}\n'
        'service web {\n  image "x/web:1"\n  port 81\n  namespace "shop"\n  stateful\n}\n'
    )
    _, docs, _ = compile_source(text)
    names = {d["metadata"]["name"] for d in docs.values() if d["kind"] == "Namespace"}
    assert names == {"shop"}
    assert any(d.get("metadata", {}).get("namespace") == namespace for d in docs.values())
