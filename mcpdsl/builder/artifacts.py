"""`mcpdsl build`: run the front end, every requested target, and write atomically.

The output directory is replaced as a whole: artifacts are written into a
temporary sibling directory, then swapped in with renames.  On any error the
previous output stays untouched.  `manifest.json` lists every artifact with its
sha256, sorted by path, and no timestamps, so two builds of the same input are
byte-identical.  Besides the targets' files every build holds `ir/project.json`,
the IR the embedded engine loads from a signed build (docs/engine.md).

Targets and the optimiser report through the same `Diagnostic` model as the
front end (B01xx codes): what is not enforced, dropped or narrowed is a
warning, and an error under `strict` (`mcpdsl build --strict`), in which case
the build refuses to write anything.  The enforcement table is the
`enforcement` data of those diagnostics.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mcpdsl._gc import gc_paused
from mcpdsl._version import __version__
from mcpdsl.compile import TARGETS, Artifact, Enforcement, TargetContext, load_target
from mcpdsl.compile.serialize import dump_json
from mcpdsl.diagnostics import CompileError, Diagnostic, Severity, sort_diagnostics
from mcpdsl.diagnostics.codes import STRICT_CODES
from mcpdsl.ir.model import Project
from mcpdsl.outdir import (
    BUILD_FORMAT,
    IR_ARTIFACT,
    MANIFEST,
    SERVER_ARTIFACT,
    OutputPlan,
    prepare,
    replace,
)
from mcpdsl.pipeline import Compilation, InputError, compile_tree


@dataclass
class BuildResult:
    """A build: its artifacts and every diagnostic (front end's, then the build's own)."""

    out: Path
    artifacts: list[Artifact]
    diagnostics: list[Diagnostic]  # the front end's (check) diagnostics
    timings: dict[str, float]
    per_target: dict[str, int] = field(default_factory=dict)
    build_diagnostics: list[Diagnostic] = field(default_factory=list)  # targets, optimiser
    compilation: Compilation | None = None
    strict: bool = False

    @property
    def enforcement(self) -> list[Enforcement]:
        """The enforcement table: one row per access rule, target and enforcement point."""
        rows = [d.enforcement for d in self.build_diagnostics if d.enforcement is not None]
        return sorted(rows, key=lambda e: (e.rule, e.target, e.where))

    @property
    def has_errors(self) -> bool:
        """Whether the build must not be written (an error, e.g. a strict finding)."""
        return any(d.is_error for d in self.build_diagnostics)


def strict_rules(project: Project) -> frozenset[str]:
    """`POLICY/ID` of every rule of a `strict` policy (by name and by qualified name)."""
    keys: set[str] = set()
    for policy in project.policies:
        if policy.strict:
            for rule in policy.rules:
                keys.update((f"{policy.name}/{rule.id}", f"{policy.qualified}/{rule.id}"))
    return frozenset(keys)


def escalate(
    diagnostics: list[Diagnostic], strict: bool, rules: frozenset[str] = frozenset()
) -> list[Diagnostic]:
    """A strict warning (not enforced, dropped, narrowed) becomes an error.

    Every one under `strict` (`build --strict`); otherwise those about a rule of
    a policy marked `strict` in the tree (`rules`, see `strict_rules`).
    """

    def applies(d: Diagnostic) -> bool:
        if d.code not in STRICT_CODES or d.severity is not Severity.WARNING:
            return False
        return strict or (d.enforcement is not None and d.enforcement.rule in rules)

    return [
        d.model_copy(update={"severity": Severity.ERROR}) if applies(d) else d for d in diagnostics
    ]


def manifest(artifacts: list[Artifact], fmt: str = BUILD_FORMAT) -> Artifact:
    """Every artifact with its sha256; `format` marks the directory as ours (mcpdsl.outdir)."""
    entries = [
        {"path": a.path, "sha256": hashlib.sha256(a.content).hexdigest(), "size": len(a.content)}
        for a in sorted(artifacts, key=lambda a: a.path)
    ]
    doc = {"artifacts": entries, "format": fmt, "generator": "mcpdsl"}
    return Artifact(MANIFEST, dump_json(doc))


def ir_artifact(project: Project) -> Artifact:
    """`ir/project.json`: the IR itself, what `Engine.load(build, trust=...)` runs.

    `Project.canonical_json()` (sorted keys, no whitespace); spans are not IR and
    are not written.  Every build has it, so a signed build is loadable by the engine.
    """
    with gc_paused():  # large trees: the dump allocates millions of small objects
        return Artifact(IR_ARTIFACT, (project.canonical_json() + "\n").encode())


def server_artifact(project: Project) -> Artifact | None:
    """`ir/server.json`: the tree's `server` blocks, when it has one (None otherwise).

    Not part of the IR (a deployment setting: `ir/project.json` is the same with or
    without a server), but a build served as such (`mcpdsl serve BUILD`) must know
    the `mcp` endpoint the block declares; the manifest lists it, so a signed build
    signs it too.
    """
    if not project.servers:
        return None
    doc = {"servers": [s.model_dump(mode="json") for s in project.servers]}
    return Artifact(SERVER_ARTIFACT, dump_json(doc))


def compile_artifacts(
    compilation: Compilation, targets: tuple[str, ...] = TARGETS, *, strict: bool = False
) -> BuildResult:
    """Run the targets on a compiled project (no I/O).

    `strict` turns every B01xx warning that says a clause is not enforced, dropped
    or narrowed into an error (`BuildResult.has_errors`), as a `strict` policy does
    for its own rules; writing is the caller's.
    """
    if compilation.project is None:
        raise CompileError(compilation.diagnostics)
    artifacts: list[Artifact] = []
    found: list[Diagnostic] = []
    timings = dict(compilation.timings)
    per_target: dict[str, int] = {}
    plan = None
    if compilation.project.jobs and "kubernetes" in targets:  # CronJobs run where the plan says
        from mcpdsl.optimize import build_diagnostics, plan_for_build

        start = time.perf_counter()
        plan = plan_for_build(compilation.project)
        timings["optimize"] = time.perf_counter() - start
        found.extend(build_diagnostics(plan) if plan is not None else ())
    ctx = TargetContext(version=__version__, plan=plan, sources=compilation.sources)
    for name in targets:
        start = time.perf_counter()
        output = load_target(name).compile(compilation.project, ctx)
        timings[f"target:{name}"] = time.perf_counter() - start
        artifacts.extend(output.artifacts)
        found.extend(output.diagnostics)
        per_target[name] = len(output.artifacts)
    start = time.perf_counter()
    artifacts.append(ir_artifact(compilation.project))
    server = server_artifact(compilation.project)
    if server is not None:
        artifacts.append(server)
    timings["ir"] = time.perf_counter() - start
    paths = [a.path for a in artifacts]
    duplicates = {p for p, n in Counter(paths).items() if n > 1}
    if duplicates:  # a target bug, not a user error
        raise AssertionError(f"targets produced the same path twice: {sorted(duplicates)}")
    artifacts.sort(key=lambda a: a.path)
    artifacts.append(manifest(artifacts))
    return BuildResult(
        out=Path(),
        artifacts=artifacts,
        diagnostics=compilation.diagnostics,
        timings=timings,
        per_target=per_target,
        build_diagnostics=sort_diagnostics(
            escalate(found, strict, strict_rules(compilation.project))
        ),
        compilation=compilation,
        strict=strict,
    )


def write_atomically(
    out: str | os.PathLike[str] | OutputPlan,
    artifacts: list[Artifact],
    *,
    sources: tuple[str | os.PathLike[str], ...] = (),
    force: bool = False,
) -> OutputPlan:
    """Replace `out` with exactly these artifacts, or leave it untouched on failure.

    `out` must pass the output-directory policy of `mcpdsl.outdir` (raises
    `OutputError`, a `CompileError`); `sources` are the policy tree it may not
    overlap.  A plan from `outdir.prepare` is re-checked before the swap.
    """
    plan = out if isinstance(out, OutputPlan) else prepare(out, sources=sources, force=force)
    replace(plan, ((a.path, a.content) for a in artifacts), sources=sources, force=force)
    return plan


def build(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str] = "build",
    targets: tuple[str, ...] = TARGETS,
    *,
    analyze: bool = True,
    force: bool = False,
    strict: bool = False,
) -> BuildResult:
    """Compile a policy tree and write its artifacts; raises CompileError on errors.

    Like `mcpdsl build`, the z3 analyses run first and their errors (an
    over-committed pool, an unmeetable carbon budget) stop the build;
    `analyze=False` skips them.  The output directory is checked before the
    compilation starts.  Under `strict` a clause the targets do not enforce as
    written is an error: CompileError, and `out` is left untouched.
    """
    plan = prepare(out, sources=(path,), force=force)
    try:
        compilation = compile_tree(path, analyze=analyze)
    except InputError as exc:
        raise CompileError([exc.diagnostic]) from exc
    result = compile_artifacts(compilation, targets, strict=strict)
    if result.has_errors:
        raise CompileError(result.build_diagnostics)
    write_result(result, plan, sources=(path,), force=force)
    return result


def write_result(
    result: BuildResult,
    out: str | os.PathLike[str] | OutputPlan,
    *,
    sources: tuple[str | os.PathLike[str], ...] = (),
    force: bool = False,
) -> None:
    """Write a build's artifacts atomically into `out`, timing the write as a stage."""
    start = time.perf_counter()
    plan = write_atomically(out, result.artifacts, sources=sources, force=force)
    result.timings["write"] = time.perf_counter() - start
    result.out = Path(plan.given)
