"""`mcpdsl.Engine`: in-process decisions from a compiled policy tree.

Everything compiled lives in ONE immutable `CompiledProject` held by
`Engine._compiled`; a reload builds a new one and swaps that single
attribute (an atomic reference assignment), so readers never see a mix.
Token buckets (`admit`) and the decision-log sink are the only mutable state
and are safe to share between threads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mcpdsl.engine.decision_log import DEFAULT_MASK, DecisionLog, Sink
from mcpdsl.engine.limits import BucketSpec, Limiter, limit_specs
from mcpdsl.engine.policy import CompiledPolicies, Decision
from mcpdsl.engine.route import CompiledGateway, RouteDecision, compile_gateway, find
from mcpdsl.engine.scale import ScaleDecision, decide, find_scale
from mcpdsl.engine.transform import CompiledTransform, compile_transform
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


class Engine:
    """Authorize, scale, route, transform and rate-limit with a compiled policy tree.

    >>> engine = Engine.load("policies/")            # doctest: +SKIP
    >>> engine.authorize({"principal": {"type": "service", "id": "frontend"}, ...}).allowed  # doctest: +SKIP
    """

    def __init__(
        self,
        compiled: CompiledProject,
        *,
        decision_log: Sink | None = None,
        mask: Iterable[str] = DEFAULT_MASK,
    ) -> None:
        self._compiled = compiled  # the ONE reference a reload swaps
        self._log = DecisionLog(decision_log, mask) if decision_log is not None else None
        self._limiter = Limiter()

    # ------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        decision_log: Sink | None = None,
        mask: Iterable[str] = DEFAULT_MASK,
    ) -> Engine:
        """Compile a policy tree (a directory or one file); raises `mcpdsl.CompileError`."""
        from mcpdsl.diagnostics.model import CompileError
        from mcpdsl.pipeline import InputError, compile_tree

        try:
            compilation = compile_tree(path)
        except InputError as exc:
            raise CompileError([exc.diagnostic]) from exc
        if compilation.project is None:
            raise CompileError(compilation.diagnostics)
        compiled = compile_project(compilation.project, str(compilation.root))
        return cls(compiled, decision_log=decision_log, mask=mask)

    @classmethod
    def from_project(
        cls,
        project: m.Project,
        *,
        decision_log: Sink | None = None,
        mask: Iterable[str] = DEFAULT_MASK,
    ) -> Engine:
        """An engine for an already compiled IR project."""
        return cls(compile_project(project), decision_log=decision_log, mask=mask)

    @property
    def project(self) -> m.Project:
        return self._compiled.project

    @property
    def compiled(self) -> CompiledProject:
        return self._compiled

    # ------------------------------------------------------------ access

    def authorize(self, request: dict[str, Any]) -> Decision:
        """The access decision for one request (docs/semantics.md)."""
        log = self._log
        if log is None:
            return self._compiled.policies.authorize(request)
        start = time.perf_counter_ns()
        decision = self._compiled.policies.authorize(request)
        latency = (time.perf_counter_ns() - start) / 1000
        log.record(request, decision, latency)
        return decision

    # ------------------------------------------------------------ scaling

    def scale(
        self,
        service: str,
        metrics: Mapping[str, object],
        current_replicas: int,
        history: Iterable[tuple[datetime | float, int]] | None = None,
        now: datetime | float | None = None,
    ) -> ScaleDecision:
        """The replicas the Kubernetes HPA would set for `service` (mcpdsl.engine.scale).

        `metrics`: `cpu`/`memory` as utilisation ratios (0.95 = 95%), custom metrics
        as their average value per pod.  `history`: earlier (timestamp, recommendation)
        pairs for the stabilisation windows.  `now`: a datetime (naive = UTC) or epoch
        seconds; None is the current time.
        """
        scale = find_scale(self._compiled.project.scales, service)
        if now is None:
            moment = datetime.now(UTC)
        elif isinstance(now, datetime):
            moment = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        else:
            moment = datetime.fromtimestamp(float(now), UTC)
        return decide(scale, metrics, current_replicas, history, moment)

    # ------------------------------------------------------------ routing

    def route(
        self,
        gateway: str,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
    ) -> RouteDecision | None:
        """The first route of `gateway` taking `method path`, or None."""
        compiled: CompiledGateway = find(self._compiled.gateways, gateway, "gateway")
        return compiled.route(method, path, headers)

    # ----------------------------------------------------------- transform

    def transform(self, integration: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Apply the integration's `map` block; raises `TransformError`."""
        compiled: CompiledTransform = find(self._compiled.transforms, integration, "integration")
        return compiled.apply(payload)

    # -------------------------------------------------------------- limits

    def admit(self, key: str, now: float | None = None) -> bool:
        """Take a token from the bucket of `key` (see mcpdsl.engine.limits); False = limited.

        `now` is a monotonic clock in seconds (default `time.monotonic()`).
        """
        return self._limiter.admit(self._compiled.limits, key, now)

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
