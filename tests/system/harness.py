"""The system-level differential of RUNTIME.md §5 at the Envoy edge.

For each gateway of a tree: build the artifacts (envoy + opa targets, as
`mcpdsl build` does), load the Envoy bootstrap into `envoy_model.EnvoyModel`
and the OPA bundle (`opa/bundle.tar.gz`, its rego modules and data) into the
real OPA engine at the entry point `opa/config.yaml` declares for the
OPA-Envoy plugin; draw requests (`traffic.Traffic`); decide each one through
the modelled filter chain (CheckRequests evaluated in OPA in batches) and
through `expect.Expectation` (`Engine.authorize` on the canonical request);
count agreements and disagreements per category and keep the shortest
disagreeing example of each.

`Report.summary()` prints the counts; a disagreement names the axis values it
was drawn with (`token=valid`, `peer=service`, ...) and the two stages that
decided (`expected policy allow, artifact ext_authz deny`).
"""

from __future__ import annotations

import io
import json
import random
import shutil
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from credentials import Credentials
from envoy_model import CheckResult, EnvoyModel, Outcome, run_all
from expect import Expectation, Expected
from traffic import Drawn, Traffic

from mcpdsl.builder.artifacts import compile_artifacts
from mcpdsl.compile.server import artifact_view
from mcpdsl.engine import Engine
from mcpdsl.ir import model as m
from mcpdsl.pipeline import compile_tree

__all__ = ["NOW", "Opa", "Report", "build", "differential"]

#: The clock of a run (tokens are issued around it; both sides check exp/nbf on it).
NOW = float(int(time.time()))
JWKS_URI = "https://idp.sysdiff.test/.well-known/jwks.json"
ProjectEdit = Callable[[m.Project], m.Project]


def build(
    tree: Path, edit: ProjectEdit | None = None, targets: tuple[str, ...] = ("envoy", "opa")
) -> tuple[Engine, dict[str, bytes]]:
    """The engine and the artifacts of `tree` (optionally with its IR edited first).

    The engine decides as the artifacts can: rules on the decision server's
    counters are left out (`artifact_view`, B0171; only `mcpdsl serve` counts).

    A provider whose JWKS is a file gets the test key set written there (in a
    copy of the tree), so that the artifacts that inline it trust the test keys.
    """
    work = Path(tempfile.mkdtemp(prefix="sysdiff-"))
    try:
        copy = work / "tree"
        shutil.copytree(tree, copy)
        compilation = compile_tree(copy)
        project = compilation.project
        if project is None:
            errors = [f"{d.code} {d.message}" for d in compilation.diagnostics if d.is_error]
            raise AssertionError(f"{tree} does not compile: {errors}")
        if edit is not None:
            project = edit(project)
        jwks = json.dumps(Credentials.make().jwks())
        rewritten = False
        for provider in project.providers:
            if provider.jwks_file:
                (copy / provider.jwks_file).write_text(jwks, encoding="utf-8")
                rewritten = True
        if rewritten and edit is None:
            compilation = compile_tree(copy)
            project = compilation.project
            assert project is not None
        compilation.project = project
        result = compile_artifacts(compilation, targets)
        files = {a.path: a.content for a in result.artifacts}
        # what the generated artifacts can decide: a rule needing the decision server's
        # counters never fires there (B0171), so the engine is held to that view
        return Engine.from_project(artifact_view(project)), files
    finally:
        shutil.rmtree(work, ignore_errors=True)


class Opa:
    """The OPA bundle an OPA-Envoy sidecar would load, in the real OPA engine."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        from opa_bindings import OpaEngine

        config = yaml.safe_load(files["opa/config.yaml"])
        plugin = config.get("plugins", {}).get("envoy_ext_authz_grpc", {})
        if "query" in plugin:
            self.entry = plugin["query"]
        else:
            self.entry = "data." + plugin.get("path", "envoy/authz/allow").strip("/").replace(
                "/", "."
            )
        self.engine = OpaEngine()
        with tarfile.open(fileobj=io.BytesIO(files["opa/bundle.tar.gz"])) as bundle:
            for member in sorted(bundle.getmembers(), key=lambda t: t.name):
                handle = bundle.extractfile(member)
                if handle is None:
                    continue
                text = handle.read().decode("utf-8")
                if member.name.endswith(".rego"):
                    self.engine.add_policy(member.name, text)
                elif member.name.endswith("data.json"):
                    prefix = member.name.removesuffix("data.json").strip("/")
                    self.engine.add_data(json.loads(text), prefix)
        self._cache: dict[str, CheckResult] = {}
        self.query = (
            f"out := [[i, x] | some i, r in input.batch; x := {self.entry} with input as r]"
        )

    def __call__(self, batch: list[dict[str, Any]]) -> list[CheckResult]:
        """OPA-Envoy's reading of each result: a boolean, or an object's `allowed`."""
        keys = [json.dumps(c, sort_keys=True) for c in batch]
        todo = sorted({k for k in keys if k not in self._cache})
        for start in range(0, len(todo), 200):
            chunk = todo[start : start + 200]
            result = self.engine.eval_query(self.query, {"batch": [json.loads(k) for k in chunk]})
            answers: dict[int, Any] = {i: v for i, v in result[0]["out"]} if result else {}
            for i, key in enumerate(chunk):
                value = answers.get(i)
                if isinstance(value, dict):
                    value = value.get("allowed")
                self._cache[key] = value if isinstance(value, bool) else None
        return [self._cache[k] for k in keys]


@dataclass
class Report:
    """Agreements and disagreements, per axis value and per deciding-stage pair."""

    total: int = 0
    agree: int = 0
    allowed: int = 0  # requests both sides allowed (an all-deny run proves little)
    stages: Counter[str] = field(default_factory=Counter)  # where the artifacts decided
    by_axis: Counter[tuple[str, str, bool]] = field(default_factory=Counter)
    by_stage: Counter[str] = field(default_factory=Counter)
    examples: dict[str, tuple[Drawn, Expected, Outcome]] = field(default_factory=dict)

    @property
    def disagree(self) -> int:
        return self.total - self.agree

    def add(self, drawn: Drawn, expected: Expected, outcome: Outcome) -> None:
        self.total += 1
        same = expected.allowed == outcome.allowed
        self.agree += same
        self.allowed += same and outcome.allowed
        self.stages[f"{outcome.stage} {'allow' if outcome.allowed else 'deny'}"] += 1
        for axis, value in drawn.axes:
            self.by_axis[(axis, value, same)] += 1
        if not same:
            key = (
                f"expected {expected.stage} {'allow' if expected.allowed else 'deny'}, "
                f"artifact {outcome.stage} {'allow' if outcome.allowed else 'deny'}"
            )
            self.by_stage[key] += 1
            best = self.examples.get(key)
            if best is None or len(drawn.request.path) + len(drawn.request.headers) < len(
                best[0].request.path
            ) + len(best[0].request.headers):
                self.examples[key] = (drawn, expected, outcome)

    def merge(self, other: Report) -> None:
        self.total += other.total
        self.agree += other.agree
        self.allowed += other.allowed
        self.stages.update(other.stages)
        self.by_axis.update(other.by_axis)
        self.by_stage.update(other.by_stage)
        for key, example in other.examples.items():
            self.examples.setdefault(key, example)

    def disagreements(self, axis: str, value: str) -> int:
        return self.by_axis[(axis, value, False)]

    def summary(self) -> str:
        lines = [
            f"{self.total} requests: {self.agree} agree ({self.allowed} allowed by both), "
            f"{self.disagree} disagree",
            "  artifact decided at: "
            + ", ".join(f"{k} {n}" for k, n in sorted(self.stages.items())),
        ]
        axes = sorted({(a, v) for a, v, _ in self.by_axis})
        for axis, value in axes:
            ok, bad = self.by_axis[(axis, value, True)], self.by_axis[(axis, value, False)]
            lines.append(f"  {axis}={value}: {ok} agree, {bad} disagree")
        for key, count in self.by_stage.most_common():
            drawn, expected, outcome = self.examples[key]
            req = drawn.request
            lines.append(f"  DISAGREE x{count}: {key}")
            lines.append(
                f"    e.g. {req.method} {req.path} headers={_short(req.headers)} "
                f"source={req.source_ip} peer={req.peer.uri_sans if req.peer else None} "
                f"axes={dict(drawn.axes)}"
            )
            why = " | ".join(expected.reason.splitlines()[:3])
            lines.append(f"    expected: {why[:300]}")
            lines.append(f"    artifact: {outcome.status} {outcome.reason}")
        return "\n".join(lines)


def _short(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers for a report line: long values (tokens) cut to their start."""
    return [(k, v if len(v) <= 48 else v[:40] + "...") for k, v in headers]


def _bootstraps(files: Mapping[str, bytes]) -> dict[str, dict[str, Any]]:
    """Each gateway's bootstrap, by the gateway's qualified name (the bootstrap's node id)."""
    out = {}
    for path, content in sorted(files.items()):
        if path.startswith("envoy/") and path.endswith(".json"):
            doc = json.loads(content)
            out[doc["node"]["id"]] = doc
    return out


def differential(
    engine: Engine,
    files: Mapping[str, bytes],
    *,
    requests: int,
    seed: int,
    assume_mtls: bool = False,
    opa: Opa | None = None,
    gateways: Sequence[str] | None = None,
) -> Report:
    """Draw `requests` per gateway and compare the artifacts' decisions with the contract's."""
    opa = opa or Opa(files)
    jwks = Credentials.make().jwks()
    report = Report()
    project = engine.project
    for key, bootstrap in _bootstraps(files).items():
        if gateways is not None and key not in gateways:
            continue
        gateway = next(g for g in project.gateways if g.qualified == key)
        providers = {str(r) for r in gateway.providers}
        served = {p.qualified: jwks for p in project.providers if p.qualified in providers}
        uris = {p.jwks_uri: jwks for p in project.providers if p.jwks_uri}
        model = EnvoyModel(bootstrap, jwks={**uris, JWKS_URI: jwks}, now=NOW)
        model.assume_peer_verified = assume_mtls
        expectation = Expectation(engine, key, jwks=served, now=NOW, assume_mtls=assume_mtls)
        traffic = Traffic(project, gateway, now=NOW, tls=gateway.tls is not None or assume_mtls)
        rng = random.Random(f"{seed}/{key}")
        drawn = [traffic.draw(rng) for _ in range(requests)]
        outcomes = run_all(model, [d.request for d in drawn], opa)
        for d, outcome in zip(drawn, outcomes, strict=True):
            report.add(d, expectation.expect(d.request), outcome)
    return report
