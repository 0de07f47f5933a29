"""A whole IR project prepared for evaluation: one immutable value.

Everything the evaluator needs (indexed rules, route tables, transforms,
token-bucket specs) is built once from the IR and never mutated, so a host
(`mcpdsl.engine.Engine`) can swap a new one in with a single reference
assignment and readers never see a mix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mcpdsl.evaluate.limits import BucketSpec, limit_specs
from mcpdsl.evaluate.policy import Decision, PreparedPolicies
from mcpdsl.evaluate.route import PreparedGateway, RouteDecision, find, prepare_gateway
from mcpdsl.evaluate.transform import PreparedTransform, prepare_transform
from mcpdsl.ir import model as m
from mcpdsl.ir.door import DoorMapping, doors


@dataclass(frozen=True, slots=True)
class PreparedProject:
    """Everything the evaluator needs, prepared once; never mutated."""

    project: m.Project
    policies: PreparedPolicies
    gateways: Mapping[str, PreparedGateway]
    transforms: Mapping[str, PreparedTransform]
    limits: Mapping[str, BucketSpec]
    root: str = ""
    #: The CheckRequest door table (`mcpdsl.ir.door.doors`): swapped with the policy
    #: it was built from, so a decision server never maps with one and decides with another.
    doors: Mapping[str, DoorMapping] = field(default_factory=dict)

    def authorize(self, request: dict[str, Any]) -> Decision:
        """The access decision for one request (what `Engine.authorize` returns, unlogged)."""
        return self.policies.authorize(request)

    def route(
        self, gateway: str, method: str, path: str, headers: Mapping[str, str] | None = None
    ) -> RouteDecision | None:
        """The first route of `gateway` taking `method path`, or None (as `Engine.route`)."""
        compiled: PreparedGateway = find(self.gateways, gateway, "gateway")
        return compiled.route(method, path, headers)


def prepare_project(project: m.Project, root: str = "") -> PreparedProject:
    gateways: dict[str, PreparedGateway] = {}
    for g in project.gateways:
        compiled = prepare_gateway(g, project.integrations)
        gateways.setdefault(g.name, compiled)
        gateways[g.qualified] = compiled
    transforms: dict[str, PreparedTransform] = {}
    for i in project.integrations:
        t = prepare_transform(i)
        transforms.setdefault(i.name, t)
        transforms[i.qualified] = t
    return PreparedProject(
        project=project,
        policies=PreparedPolicies(project.policies),
        gateways=gateways,
        transforms=transforms,
        limits=limit_specs(project),
        root=root,
        doors=doors(project),
    )
