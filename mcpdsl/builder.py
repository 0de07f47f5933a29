"""`mcpdsl build`: run the front end, every requested target, and write atomically.

The output directory is replaced as a whole: artifacts are written into a
temporary sibling directory, then swapped in with renames.  On any error the
previous output stays untouched.  `manifest.json` lists every artifact with its
sha256, sorted by path, and no timestamps, so two builds of the same input are
byte-identical.  Besides the targets' files every build holds `ir/project.json`,
the IR the embedded engine loads from a signed build (docs/engine.md).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mcpdsl import __version__
from mcpdsl.compile import TARGETS, Artifact, Enforcement, TargetContext, load_target
from mcpdsl.compile.serialize import dump_json
from mcpdsl.diagnostics import CompileError, Diagnostic
from mcpdsl.ir.model import Project
from mcpdsl.pipeline import Compilation, InputError, _no_gc, compile_tree
from mcpdsl.trust.common import IR_ARTIFACT, MANIFEST


@dataclass
class BuildResult:
    out: Path
    artifacts: list[Artifact]
    enforcement: list[Enforcement]
    diagnostics: list[Diagnostic]
    timings: dict[str, float]
    per_target: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    compilation: Compilation | None = None


def manifest(artifacts: list[Artifact]) -> Artifact:
    entries = [
        {"path": a.path, "sha256": hashlib.sha256(a.content).hexdigest(), "size": len(a.content)}
        for a in sorted(artifacts, key=lambda a: a.path)
    ]
    return Artifact(MANIFEST, dump_json({"artifacts": entries, "generator": "mcpdsl"}))


def ir_artifact(project: Project) -> Artifact:
    """`IR_ARTIFACT` (`ir/project.json`): the IR itself, what `Engine.load(build, trust=...)` runs.

    `Project.canonical_json()` (sorted keys, no whitespace); spans are not IR and
    are not written.  Every build has it, so a signed build is loadable by the engine.
    """
    with _no_gc():  # large trees: the dump allocates millions of small objects
        return Artifact(IR_ARTIFACT, (project.canonical_json() + "\n").encode())


def compile_artifacts(compilation: Compilation, targets: tuple[str, ...] = TARGETS) -> BuildResult:
    """Run the targets on a compiled project (no I/O)."""
    if compilation.project is None:
        raise CompileError(compilation.diagnostics)
    artifacts: list[Artifact] = []
    enforcement: list[Enforcement] = []
    timings = dict(compilation.timings)
    per_target: dict[str, int] = {}
    notes: list[str] = []
    plan = None
    if compilation.project.jobs and "kubernetes" in targets:  # CronJobs run where the plan says
        from mcpdsl.optimize import plan_for_build

        start = time.perf_counter()
        plan = plan_for_build(compilation.project)
        timings["optimize"] = time.perf_counter() - start
        notes.extend(plan.notes if plan is not None else ())
    ctx = TargetContext(version=__version__, plan=plan)
    for name in targets:
        start = time.perf_counter()
        output = load_target(name).compile(compilation.project, ctx)
        timings[f"target:{name}"] = time.perf_counter() - start
        artifacts.extend(output.artifacts)
        enforcement.extend(output.enforcement)
        notes.extend(output.notes)
        per_target[name] = len(output.artifacts)
    start = time.perf_counter()
    artifacts.append(ir_artifact(compilation.project))
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
        enforcement=sorted(enforcement, key=lambda e: (e.rule, e.target, e.where)),
        diagnostics=compilation.diagnostics,
        timings=timings,
        per_target=per_target,
        notes=notes,
        compilation=compilation,
    )


def write_atomically(out: Path, artifacts: list[Artifact]) -> None:
    """Replace `out` with exactly these artifacts, or leave it untouched on failure."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        for artifact in artifacts:
            target = staging / artifact.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(artifact.content)
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            os.rename(out, old)
        try:
            os.rename(staging, out)
        except OSError:
            if old is not None:
                os.rename(old, out)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def build(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str] = "build",
    targets: tuple[str, ...] = TARGETS,
) -> BuildResult:
    """Compile a policy tree and write its artifacts; raises CompileError on errors."""
    try:
        compilation = compile_tree(path)
    except InputError as exc:
        raise CompileError([exc.diagnostic]) from exc
    result = compile_artifacts(compilation, targets)
    write_result(result, out)
    return result


def write_result(result: BuildResult, out: str | os.PathLike[str]) -> None:
    """Write a build's artifacts atomically into `out`, timing the write as a stage."""
    start = time.perf_counter()
    write_atomically(Path(out), result.artifacts)
    result.timings["write"] = time.perf_counter() - start
    result.out = Path(out)
