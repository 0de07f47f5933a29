"""Compile: the IR to the artifacts clusters run, one module per target.

A target is a module in this package exporting

    NAME: str                                  # "kubernetes", "envoy", "opa", ...
    def compile(project: Project, ctx: TargetContext) -> TargetOutput

and a directory `targets/<NAME>/` with its templates and README.

A target never talks in free strings: what it cannot express as written it
says with `out.unsupported(code, ...)` (a warning that `build --strict` makes
an error: the clause is not enforced, dropped or narrowed), anything else with
`out.report(code, ...)`, and where it enforces an access rule with
`out.enforced(...)`.  All three are `Diagnostic`s with a code from the B01xx
family and the span of the declaration or clause concerned, so build findings
reach the same renderers (text, JSON, SARIF) as `check`'s.  Targets are
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

from mcpdsl.diagnostics import Diagnostic, Enforcement, Status, make
from mcpdsl.diagnostics.codes import STRICT_CODES
from mcpdsl.ir.model import Project
from mcpdsl.source import SourceMap, Span

__all__ = [
    "TARGETS",
    "Artifact",
    "Enforcement",
    "Status",
    "TargetContext",
    "TargetOutput",
    "load_target",
]

TARGETS: tuple[str, ...] = ("kubernetes", "envoy", "opa", "prometheus", "istio")


@dataclass(frozen=True)
class Artifact:
    """One generated file: a POSIX path relative to the build root, and its bytes."""

    path: str
    content: bytes


#: The code of an access rule enforced as written (the rows of the enforcement table).
ENFORCED = "B0120"
#: The codes of an access rule an enforcement point carries only in part, by status.
PARTIAL = {Status.NOT_ENFORCED: "B0121", Status.NARROWED: "B0122"}


@dataclass
class TargetOutput:
    """A target's artifacts and its build diagnostics (B01xx; see the module docstring)."""

    artifacts: list[Artifact] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def enforcement(self) -> list[Enforcement]:
        """The enforcement records the diagnostics carry, in report order."""
        return [d.enforcement for d in self.diagnostics if d.enforcement is not None]

    def report(
        self,
        code: str,
        message: str,
        span: Span | None,
        *,
        label: str = "",
        help: str | None = None,
        notes: tuple[str, ...] = (),
    ) -> None:
        """A finding that is not about enforcement (the code is not a `strict` one)."""
        if code in STRICT_CODES:
            raise AssertionError(f"{code} says a clause is not enforced: use unsupported()")
        self.diagnostics.append(make(code, message, span, label=label, help=help, notes=notes))

    def unsupported(
        self,
        code: str,
        message: str,
        span: Span | None,
        *,
        label: str = "",
        help: str | None = None,
        notes: tuple[str, ...] = (),
        enforcement: Enforcement | None = None,
    ) -> None:
        """A construct this target cannot express as written: not enforced, dropped, narrowed.

        A warning by default; `mcpdsl build --strict` (or a tree asking for it) makes it
        an error and refuses the build.  Only `strict` codes may be reported this way.
        """
        if code not in STRICT_CODES:
            raise AssertionError(f"{code} is not a `strict` code in the code table")
        self.diagnostics.append(
            make(
                code,
                message,
                span,
                label=label,
                help=help,
                notes=notes,
                enforcement=enforcement,
            )
        )

    def enforced(
        self,
        record: Enforcement,
        span: Span | None,
        *,
        message: str | None = None,
        why: tuple[str, ...] = (),
        help: str | None = None,
    ) -> None:
        """Where an access rule is enforced; a partial status is also `unsupported`."""
        if record.status is Status.ENFORCED:
            text = message or f"`{record.rule}` is enforced by {record.target}: {record.where}"
            self.diagnostics.append(make(ENFORCED, text, span, enforcement=record))
            return
        verb = "not enforced" if record.status is Status.NOT_ENFORCED else "narrowed"
        self.unsupported(
            PARTIAL[record.status],
            message or f"`{record.rule}` is {verb} by {record.target}: {record.where}",
            span,
            notes=why,
            help=help,
            enforcement=record,
        )


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
    sources: SourceMap | None = None  # for clause spans (`clause_span`), when known

    def clause_span(self, decl: Span | None, keyword: str) -> Span | None:
        """The span of a declaration's `keyword` clause, else the declaration's span."""
        from mcpdsl.ir.spans import clause_in

        return clause_in(self.sources, decl, keyword)


class TargetModule(Protocol):
    NAME: str
    compile: Callable[[Project, TargetContext], TargetOutput]


def rule_spans(project: Project) -> dict[str, Span | None]:
    """The span of every access rule by `POLICY/ID` (name and qualified name of the policy)."""
    spans: dict[str, Span | None] = {}
    for policy in project.policies:
        for rule in policy.rules:
            spans.setdefault(f"{policy.qualified}/{rule.id}", rule.span or policy.span)
            spans.setdefault(f"{policy.name}/{rule.id}", rule.span or policy.span)
    return spans


def load_target(name: str) -> ModuleType:
    if name not in TARGETS:
        raise KeyError(name)
    return importlib.import_module(f"mcpdsl.compile.{name}")
