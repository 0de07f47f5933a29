"""A whole IR project prepared for evaluation: one immutable value.

Everything the evaluator needs (indexed rules, route tables, transforms,
token-bucket specs) is built once from the IR and never mutated, so a host
(`mcpdsl.engine.Engine`) can swap a new one in with a single reference
assignment and readers never see a mix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcpdsl.evaluate.limits import BucketSpec, limit_specs
from mcpdsl.evaluate.policy import CompiledPolicies, Decision
from mcpdsl.evaluate.route import CompiledGateway, RouteDecision, compile_gateway, find
from mcpdsl.evaluate.transform import CompiledTransform, compile_transform
from mcpdsl.ir import model as m


@dataclass(frozen=True, slots=True)
class CompiledProject:
    """Everything the engine evaluates, compiled once; never mutated."""

    project: m.Project
    policies: CompiledPolicies
    gateways: Mapping[str, CompiledGateway]
    transforms: Mapping[str, CompiledTransform]
    limits: Mapping[str, BucketSpec]
    root: str = ""

    def authorize(self, request: dict[str, Any]) -> Decision:
        """The access decision for one request (what `Engine.authorize` returns, unlogged)."""
        return self.policies.authorize(request)

    def route(
        self, gateway: str, method: str, path: str, headers: Mapping[str, str] | None = None
    ) -> RouteDecision | None:
        """The first route of `gateway` taking `method path`, or None (as `Engine.route`)."""
        compiled: CompiledGateway = find(self.gateways, gateway, "gateway")
        return compiled.route(method, path, headers)


def compile_project(project: m.Project, root: str = "") -> CompiledProject:
    gateways: dict[str, CompiledGateway] = {}
    for g in project.gateways:
        compiled = compile_gateway(g, project.integrations)
        gateways.setdefault(g.name, compiled)
        gateways[g.qualified] = compiled
    transforms: dict[str, CompiledTransform] = {}
    for i in project.integrations:
        t = compile_transform(i)
        transforms.setdefault(i.name, t)
        transforms[i.qualified] = t
    return CompiledProject(
        project=project,
        policies=CompiledPolicies(project.policies),
        gateways=gateways,
        transforms=transforms,
        limits=limit_specs(project),
        root=root,
    )
