"""Compile: the IR to the artifacts clusters run, one module per target.

A target is a module in this package exporting

    NAME: str                                  # "kubernetes", "envoy", "opa", ...
    def compile(project: Project, ctx: TargetContext) -> TargetOutput

and a directory `targets/<NAME>/` with its templates and README.  Targets are
listed by name in `TARGETS` (imported lazily so that a build for one target
does not pay for the others).  Adding a target: write the module, add its name
here, add its templates, add validator tests.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Protocol

from mcpdsl.ir.model import Project

TARGETS: tuple[str, ...] = ("kubernetes", "envoy", "opa", "prometheus")


@dataclass(frozen=True)
class Artifact:
    """One generated file: a POSIX path relative to the build root, and its bytes."""

    path: str
    content: bytes


@dataclass(frozen=True)
class Enforcement:
    """Where one access rule is enforced by one target (`mcpdsl build` prints these)."""

    rule: str  # POLICY/ID
    target: str
    where: str  # e.g. "rbac deny filter of gateway public", "ext_authz -> opa"


@dataclass
class TargetOutput:
    artifacts: list[Artifact] = field(default_factory=list)
    enforcement: list[Enforcement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class PlacementPlan(Protocol):
    """The optimiser's contract with the targets (`ctx.plan`): where and when a job runs.

    `placement("package.job")` returns `(region, "HH:MM", zone)` or None when the plan has
    nothing for that job.  A protocol, not `mcpdsl.optimize.plan.Plan`, so that compiling
    does not import the optimiser (OR-Tools) and tests can hand in a small fake.
    """

    def placement(self, job: str) -> tuple[str, str, str] | None: ...


@dataclass(frozen=True)
class TargetContext:
    """What a target may read besides the IR (kept explicit: no globals)."""

    version: str
    plan: PlacementPlan | None = None  # optimiser results, when a plan was computed


class TargetModule(Protocol):
    NAME: str
    compile: Callable[[Project, TargetContext], TargetOutput]


def load_target(name: str) -> ModuleType:
    if name not in TARGETS:
        raise KeyError(name)
    return importlib.import_module(f"mcpdsl.compile.{name}")
