"""Where an engine's policy comes from, reloading it, and watching it.

* `TreeSource`: a policy tree (a directory or one file), compiled through
  `mcpdsl.pipeline.cache.FrontEndCache`, so a reload re-parses only the files whose
  bytes changed; a reload whose files are byte-identical to the loaded ones
  does nothing.
* `BundleSource`: a build directory (`mcpdsl build` + `mcpdsl sign`), verified
  with `mcpdsl.trust.verify_build` on every load and reload.  The policy is
  rebuilt from the verified bytes of `ir/project.json` only
  (`VerifiedBuild.files`), never from a second read of the disk.
* `IrSource`: one `project.json` (a build's `ir/project.json`, e.g. mounted from
  the ConfigMap the Kubernetes target emits for a `server`), unsigned: whoever
  may write the file decides the policy, as with a tree.
* `Reload`: what one reload did; given to `on_reload` / `on_error`.
* `EngineWatch`: the daemon thread behind `Engine.watch` (watchfiles).

A source builds a new `PreparedProject` or reports why it could not; the
engine swaps it in (one attribute assignment) or keeps the old one.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeAlias

from mcpdsl._gc import gc_paused
from mcpdsl.diagnostics import CompileError, Diagnostic
from mcpdsl.evaluate.project import PreparedProject, prepare_project
from mcpdsl.ir import model as m
from mcpdsl.outdir import SERVER_ARTIFACT
from mcpdsl.pipeline import SUFFIX, InputError, find_files
from mcpdsl.pipeline.cache import CacheStats, FrontEndCache
from mcpdsl.reader import Refused, display_path, read_source
from mcpdsl.source import SourceMap
from mcpdsl.trust.common import IR_ARTIFACT, MANIFEST, SIGNATURE, TrustError, format_time

if TYPE_CHECKING:
    import watchfiles

    from mcpdsl.engine.engine import Engine
    from mcpdsl.trust.keys import Keyring

#: A keyring, or the path of a keyring file (re-read on every reload, so a
#: revocation takes effect at the next reload).
Trust: TypeAlias = "Keyring | str | os.PathLike[str]"


class BundleError(TrustError):
    """A build directory the engine refuses for a reason of its own.

    A `TrustError`, so `except TrustError` catches every refusal of a build.
    Kinds: `unsigned` (a build directory without `trust=`), `ir-missing`,
    `ir-invalid` (an `ir/project.json` this version cannot read).
    """


@dataclass(frozen=True)
class Reload:
    """What one reload did.

    `ok`: the engine runs the policy of its source as it is now (`swapped` says
    whether a new policy was installed; False when nothing changed).  When not
    ok the previous policy stays in force and `diagnostics` (compile errors)
    or `error` (`CompileError`, `TrustError`, or an unexpected exception) say why.
    """

    ok: bool
    swapped: bool
    source: str
    message: str
    diagnostics: tuple[Diagnostic, ...] = ()
    error: BaseException | None = None
    changed: tuple[str, ...] = ()
    seconds: float = 0.0
    stats: CacheStats | None = None

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.is_error)


ReloadCallback = Callable[[Reload], object]


@dataclass
class Outcome:
    """A source's answer: a new policy, "unchanged", or a failure."""

    compiled: PreparedProject | None = None
    unchanged: bool = False
    diagnostics: tuple[Diagnostic, ...] = ()
    sources: SourceMap = field(default_factory=SourceMap)
    error: BaseException | None = None
    stats: CacheStats | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


class PolicySource(Protocol):
    path: Path

    def load(self, *, force: bool = False) -> Outcome:
        """Build the policy; `force=False` may answer "unchanged"."""
        ...

    def watch_spec(self) -> tuple[Path, Callable[[watchfiles.Change, str], bool]]:
        """The directory to watch and the filter of relevant events."""
        ...


# ---------------------------------------------------------------- source trees


class TreeSource:
    """A policy tree; reloads go through the per-file parse/lower cache."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._cache = FrontEndCache(keep_parsed=False)
        self._loaded: dict[str, str] | None = None  # display path -> sha256 of the loaded policy

    def _fingerprint(self) -> dict[str, str]:
        root, files = find_files(self.path)
        prints = {}
        for file in files:
            display = display_path(root, file)
            try:
                prints[display] = hashlib.sha256(read_source(root, file)).hexdigest()
            except Refused:
                prints[display] = ""  # refused, vanished or unreadable: the compile reports it
        return prints

    def load(self, *, force: bool = False) -> Outcome:
        try:
            if not force and self._loaded is not None and self._fingerprint() == self._loaded:
                return Outcome(unchanged=True)
            with gc_paused():
                compilation, stats = self._cache.compile(self.path)
        except InputError as exc:
            return Outcome(diagnostics=(exc.diagnostic,), error=CompileError([exc.diagnostic]))
        diagnostics = tuple(compilation.diagnostics)
        if compilation.project is None:
            return Outcome(
                diagnostics=diagnostics,
                sources=compilation.sources,
                error=CompileError(list(diagnostics)),
                stats=stats,
            )
        compiled = prepare_project(compilation.project, str(compilation.root))
        # What was compiled (not what was fingerprinted: a file may change in between).
        self._loaded = {d: hashlib.sha256(b).hexdigest() for d, b in compilation.raw.items()}
        return Outcome(
            compiled=compiled, diagnostics=diagnostics, sources=compilation.sources, stats=stats
        )

    def watch_spec(self) -> tuple[Path, Callable[[watchfiles.Change, str], bool]]:
        import watchfiles

        default = watchfiles.DefaultFilter()
        if self.path.is_file():
            only = self.path.resolve()
            return only.parent, lambda change, path: Path(path).resolve() == only
        return (
            self.path.resolve(),
            lambda change, path: path.endswith(SUFFIX) and default(change, path),
        )


# ---------------------------------------------------------------- build directories


def is_build_dir(path: Path) -> bool:
    return path.is_dir() and ((path / MANIFEST).is_file() or (path / SIGNATURE).is_file())


def project_from_ir(data: bytes) -> m.Project:
    """The IR `Project` of an `ir/project.json`; raises `BundleError` (`ir-invalid`)."""
    from pydantic import ValidationError

    try:
        with gc_paused():
            return m.Project.model_validate_json(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": str(exc)}
        where = ".".join(str(part) for part in first.get("loc", ())) or "document"
        raise BundleError(
            f"{IR_ARTIFACT} is not an IR this mcpdsl can read ({len(errors)} error(s); first:"
            f" {where}: {first.get('msg', '')}); rebuild it with this version",
            "ir-invalid",
        ) from None


def with_servers(project: m.Project, data: bytes | None) -> m.Project:
    """The IR's project with the build's `server` blocks (`ir/server.json`) attached.

    They are not part of the IR JSON (a deployment setting), but `mcpdsl serve`
    reads the MCP endpoint from them; a build without one has no such file.
    Raises `BundleError` (`ir-invalid`) for a file this mcpdsl cannot read.
    """
    if data is None:
        return project
    from pydantic import TypeAdapter, ValidationError

    try:
        doc = TypeAdapter(dict[str, tuple[m.Server, ...]]).validate_json(data)
    except ValidationError as exc:
        raise BundleError(
            f"{SERVER_ARTIFACT} is not a server block this mcpdsl can read"
            f" ({exc.error_count()} error(s)); rebuild it with this version",
            "ir-invalid",
        ) from None
    return project.model_copy(update={"servers": doc.get("servers", ())})


class BundleSource:
    """A build directory: verified (or, with `allow_unsigned`, hash-checked) on every load."""

    def __init__(self, path: str | os.PathLike[str], trust: Trust | None) -> None:
        self.path = Path(path)
        self.trust = trust  # None: allow_unsigned was given explicitly
        self._manifest: str | None = None  # sha256 of the loaded manifest
        # The newest build accepted so far (signed revision, signing time): a reload never
        # goes back to an older, validly signed build (rollback).
        self._revision: int | None = None
        self._signed_at: datetime | None = None

    def load(self, *, force: bool = False) -> Outcome:
        try:
            digest, files, detail, newest = self._verified()
            if not force and digest == self._manifest:
                return Outcome(unchanged=True, detail=detail)
            self._refuse_rollback(*newest)
            data = files.get(IR_ARTIFACT)
            if data is None:
                raise BundleError(
                    f"build has no {IR_ARTIFACT} (built by an older mcpdsl?); rebuild and re-sign it",
                    "ir-missing",
                )
            project = with_servers(project_from_ir(data), files.get(SERVER_ARTIFACT))
            compiled = prepare_project(project, str(self.path))
        except TrustError as exc:
            return Outcome(error=exc)
        self._manifest = digest
        self._revision, self._signed_at = newest
        return Outcome(compiled=compiled, detail=detail)

    def _refuse_rollback(self, revision: int | None, signed_at: datetime | None) -> None:
        """A verified build older than the one in force is refused (kind `rollback`).

        Equal is accepted: two builds signed in the same second get the same default
        revision, and both came from the signer; only going back is an attack.
        """
        from mcpdsl.trust.verify import check_freshness

        if signed_at is None:  # allow_unsigned: nothing signed to compare
            return
        check_freshness(
            signed_at, revision, not_before=self._signed_at, min_revision=self._revision
        )

    def _verified(self) -> tuple[str, Mapping[str, bytes], str, tuple[int | None, datetime | None]]:
        from mcpdsl.trust.verify import verify_build

        if self.trust is None:
            from mcpdsl.trust.verify import read_artifacts

            if not self.path.is_dir():
                raise TrustError(f"build `{self.path}` is not a directory", "missing")
            manifest, files = read_artifacts(self.path)  # integrity only: no signature check
            unsigned = "unsigned (allow_unsigned=True)"
            return hashlib.sha256(manifest).hexdigest(), files, unsigned, (None, None)
        verified = verify_build(self.path, self.trust)
        detail = f"verified, signed by {verified.key_id} at {format_time(verified.signed_at)}"
        if verified.revision is not None:
            detail += f", revision {verified.revision}"
        newest = (verified.revision, verified.signed_at)
        return verified.manifest_sha256, verified.files, detail, newest

    def watch_spec(self) -> tuple[Path, Callable[[watchfiles.Change, str], bool]]:
        # `mcpdsl build` and `mcpdsl sign` replace the directory as a whole (renames):
        # watch its parent, and keep the events at or under the build directory.
        bundle = self.path.resolve()
        prefix = str(bundle) + os.sep

        def relevant(change: watchfiles.Change, path: str) -> bool:
            return path == str(bundle) or path.startswith(prefix)

        return bundle.parent, relevant


class IrSource:
    """One IR file (`ir/project.json` of a build), read whole on every load.

    What the decision server's pods run: the Kubernetes target puts the build's
    IR in a ConfigMap mounted read-only (docs/serve-kubernetes.md).  The kubelet
    updates such a volume by swapping a symlink, so the whole directory is
    watched and a load whose bytes are unchanged does nothing.
    """

    #: An IR larger than this is refused before it is parsed (a ConfigMap holds 1 MiB).
    MAX_BYTES = 256 * 2**20

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._loaded: str | None = None  # sha256 of the loaded bytes

    def load(self, *, force: bool = False) -> Outcome:
        from mcpdsl.trust.common import read_bounded

        try:
            # A ConfigMap volume's file is a symlink into its current data directory:
            # follow it here, then read the regular file it names (never a symlink).
            data = read_bounded(self.path.resolve(strict=True), self.MAX_BYTES)
        except (OSError, ValueError) as exc:
            return Outcome(error=BundleError(f"cannot read `{self.path}`: {exc}", "missing"))
        digest = hashlib.sha256(data).hexdigest()
        if not force and digest == self._loaded:
            return Outcome(unchanged=True, detail="unsigned IR")
        try:
            compiled = prepare_project(project_from_ir(data), str(self.path.parent))
        except TrustError as exc:
            return Outcome(error=exc)
        self._loaded = digest
        return Outcome(compiled=compiled, detail="unsigned IR")

    def watch_spec(self) -> tuple[Path, Callable[[watchfiles.Change, str], bool]]:
        return self.path.resolve().parent, lambda change, path: True


def is_ir_file(path: Path) -> bool:
    return path.is_file() and path.suffix == ".json"


def open_source(
    path: str | os.PathLike[str], trust: Trust | None, allow_unsigned: bool
) -> PolicySource:
    """The source for `Engine.load(path, trust=..., allow_unsigned=...)`."""
    p = Path(path)
    if trust is not None:
        return BundleSource(p, trust)  # whatever `path` is: no keyring check is ever skipped
    if is_build_dir(p):
        if not allow_unsigned:
            raise BundleError(
                f"`{p}` is a build directory and no keyring was given: pass trust=KEYRING"
                " to verify it (or allow_unsigned=True to load it unverified)",
                "unsigned",
            )
        return BundleSource(p, None)
    if is_ir_file(p):
        return IrSource(p)
    return TreeSource(p)


# ---------------------------------------------------------------- reporting


def describe(source: PolicySource, outcome: Outcome, seconds: float) -> str:
    where = str(source.path)
    if outcome.unchanged:
        return f"{where}: unchanged" + (f" ({outcome.detail})" if outcome.detail else "")
    if outcome.error is None:
        parts = [f"reloaded {where} in {seconds * 1000:.0f} ms"]
        if outcome.stats is not None:
            parts.append(
                f"({outcome.stats.compiled} file(s) compiled, {outcome.stats.reused} reused)"
            )
        if outcome.detail:
            parts.append(f"({outcome.detail})")
        warnings = len(outcome.diagnostics)
        if warnings:
            parts.append(f"with {warnings} warning{'s' * (warnings != 1)}")
        return " ".join(parts)
    if isinstance(outcome.error, TrustError):
        return f"refused {where}: {outcome.error.reason}; keeping the previous policy"
    if outcome.diagnostics:
        from mcpdsl.diagnostics.render import render_human

        errors = sum(d.is_error for d in outcome.diagnostics)
        rendered = render_human(list(outcome.diagnostics), outcome.sources, colour=False)
        return (
            f"{rendered.rstrip()}\nreload of {where} failed ({errors} error{'s' * (errors != 1)});"
            " keeping the previous policy"
        )
    error = outcome.error
    return f"reload of {where} failed: {type(error).__name__}: {error}; keeping the previous policy"


# ---------------------------------------------------------------- watching


class EngineWatch:
    """A daemon thread that reloads `engine` after every debounced change of its source.

    `stop()` ends it (also on leaving a `with` block).  `ready` is set once the
    OS watch is in place; edits made before that are caught up then.
    """

    def __init__(
        self, engine: Engine, *, debounce_ms: int = 50, force_polling: bool | None = None
    ) -> None:
        source = engine._source
        if source is None:
            raise RuntimeError("this engine was not loaded from a path; there is nothing to watch")
        self.engine = engine
        self.debounce_ms = debounce_ms
        self.force_polling = force_polling
        self.ready = threading.Event()
        self.error: BaseException | None = None  # why the watcher stopped on its own, if it did
        self._stop = threading.Event()
        self._root, self._filter = source.watch_spec()
        self._thread = threading.Thread(
            target=self._run, name=f"mcpdsl-engine-watch:{source.path}", daemon=True
        )
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> EngineWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        import watchfiles

        base = self._root
        try:
            for changes in watchfiles.watch(
                base,
                watch_filter=self._filter,
                debounce=self.debounce_ms,
                step=min(50, max(self.debounce_ms, 1)),
                stop_event=self._stop,
                rust_timeout=200,  # wake up regularly: the first wake-up proves the watch is set
                yield_on_timeout=True,
                raise_interrupt=False,
                force_polling=self.force_polling,
            ):
                if not self.ready.is_set():
                    # The OS watch is in place: catch up with edits made before it was,
                    # then announce it (later edits are events).
                    self.engine._reload((), background=True)
                    self.ready.set()
                    continue
                if changes:
                    self.engine._reload(_names(base, changes), background=True)
        except Exception as exc:  # the watch itself failed (e.g. its directory vanished)
            self.error = exc
            self.engine._report_watch_failure(exc)
        finally:
            self.ready.set()


def _names(base: Path, changes: Iterable[tuple[object, str]]) -> tuple[str, ...]:
    names = set()
    for _, path in changes:
        try:
            names.add(Path(path).relative_to(base).as_posix())
        except ValueError:
            names.add(path)
    return tuple(sorted(names))


def timed(source: PolicySource, force: bool) -> tuple[Outcome, float]:
    start = time.perf_counter()
    try:
        outcome = source.load(force=force)
    except Exception as exc:  # a bug in a stage: report it, keep the previous policy
        outcome = Outcome(error=exc)
    return outcome, time.perf_counter() - start
