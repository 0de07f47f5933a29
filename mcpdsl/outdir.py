"""The one policy for output directories that `build`, `watch` and `report` replace.

An output directory is replaced as a whole (staged in a hidden sibling, then
swapped in with two renames), so choosing it is the one place where a typo can
delete a user's work.  `prepare` decides, on real paths (symbolic links and
`..` resolved) and, for existing directories, by device and inode (bind
mounts), whether the directory may be replaced:

* allowed: absent, empty, or an earlier output of the same kind, recognised by
  the format marker of its `manifest.json` (`BUILD_FORMAT`, `REPORT_FORMAT`);
* E0801: the current directory or a parent of it;
* E0802: the sources, a parent of them, or a directory inside the source tree
  that is not allowed by the first rule;
* E0803: anything that is not a directory (file, device, FIFO, socket, loop);
* E0804: a non-empty directory without our marker (`force=True` overrides only
  this one);
* E0805: the file system refuses (permissions, a parent that is a file, ...).

`replace` writes the files and swaps them in, re-checking the target right
before the swap.  A crash between the two renames leaves `.<out>.old-*` (the
previous output) and maybe `.<out>.staging-*`; the next `prepare` restores or
removes them and says so.  A writer holds an advisory lock (`flock`) on its
staging and old directories, so a concurrent run never removes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mcpdsl.diagnostics import CompileError, Diagnostic, make
from mcpdsl.source import Span

BUILD_FORMAT = "mcpdsl-build/1"
REPORT_FORMAT = "mcpdsl-report/1"
# The layout of a build, shared by the writer (`mcpdsl.builder`), the output policy,
# the signer (`mcpdsl.trust`) and the engine that loads a signed build: each name is
# defined here, the lowest layer that needs it, and nowhere else.
MANIFEST = "manifest.json"
#: The IR of the build (`mcpdsl.builder.ir_artifact`), what `Engine.load(build, trust=...)` runs.
IR_ARTIFACT = "ir/project.json"
#: The tree's `server` block (`mcpdsl.builder.server_artifact`), beside the IR and not in it:
#: a deployment setting (the IR is the same with or without one), but `mcpdsl serve BUILD`
#: needs its `mcp` endpoint to serve the MCP gateway as the tree declares it.
SERVER_ARTIFACT = "ir/server.json"
#: A manifest larger than this is not read to recognise an output (5,000 artifacts: ~0.6 MB).
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


class OutputError(CompileError):
    """The output path may not (or cannot) be replaced; exit code 2, one diagnostic."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__([diagnostic])
        self.diagnostic = diagnostic


@dataclass(frozen=True)
class OutputPlan:
    """Where to write: the path as given, its real path, and what recovery did."""

    given: str
    target: Path
    kind: str
    notes: tuple[str, ...] = ()


_E0805_HELP = "check that the parents of the path are directories you may write"


def _error(code: str, given: str, message: str, help: str | None = None) -> OutputError:
    """A diagnostic positioned at the `--out` argument itself (as E0501 is for inputs).

    When links or `..` make the path name another directory than it reads as,
    a note says which one (relative to the working directory, as typed paths are).
    """
    notes = []
    with contextlib.suppress(OSError, ValueError):
        target = real(given)
        if Path(os.path.normpath(os.path.abspath(given))) != target:
            notes.append(f"`{given}` resolves to `{os.path.relpath(target)}`")
    if help is None and code == "E0805":
        help = _E0805_HELP
    return OutputError(make(code, message, Span.point(given, 1, 1), help=help, notes=notes))


def real(path: str | os.PathLike[str]) -> Path:
    """The real path: symbolic links, `.` and `..` resolved as the kernel would.

    Component by component, a link before the `..` after it (`link/..` is the
    link target's parent); `os.path.abspath` would collapse `..` first and name
    another directory than the one the user's shell would.
    """
    return Path(os.path.realpath(path))


def _same(a: Path, b: Path) -> bool:
    """One directory under two names (a bind mount, a case-folding file system)?"""
    try:
        return os.path.samestat(os.stat(a), os.stat(b))
    except (OSError, ValueError):
        return False


def _at_or_below(inner: Path, outer: Path) -> bool:
    """`inner` is `outer` or lies below it, by name or by identity (device and inode).

    Names catch what does not exist yet; identity catches a directory reached
    through a bind mount or under another letter case, which `realpath` keeps apart.
    """
    if inner == outer or outer in inner.parents:
        return True
    return any(_same(p, outer) for p in (inner, *inner.parents) if os.path.lexists(p))


def marker(directory: Path) -> str | None:
    """The format marker of `directory/manifest.json`, or None when it is not ours.

    The manifest must be a regular file (a symlink is never followed), small,
    and a JSON object with `"format"`; a manifest without `format` but with
    `"generator": "mcpdsl"` and an `artifacts` list is a build written before
    the marker existed.
    """
    try:
        fd = os.open(directory / MANIFEST, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_MANIFEST_BYTES:
            return None
        with os.fdopen(os.dup(fd), "rb") as handle:
            doc = json.loads(handle.read(MAX_MANIFEST_BYTES + 1))
    except (OSError, ValueError, RecursionError):  # RecursionError: `[[[[...` nesting
        return None
    finally:
        os.close(fd)
    if not isinstance(doc, dict):
        return None
    found = doc.get("format")
    if isinstance(found, str) and found in (BUILD_FORMAT, REPORT_FORMAT):
        return found
    if (
        found is None
        and doc.get("generator") == "mcpdsl"
        and isinstance(doc.get("artifacts"), list)
    ):
        return BUILD_FORMAT
    return None


def _state(target: Path, kind: str) -> str:
    """`absent`, `empty`, `ours`, `foreign` (a non-empty directory) or `other` (not a dir)."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return "absent"
    if not stat.S_ISDIR(info.st_mode):
        return "other"
    with os.scandir(target) as entries:
        if next(entries, None) is None:
            return "empty"
    return "ours" if marker(target) == kind else "foreign"


def check(
    given: str,
    target: Path,
    kind: str,
    sources: Sequence[Path],
    *,
    force: bool,
    cwd: Path,
) -> None:
    """Raise OutputError unless `target` (a real path) may be replaced; no side effects."""
    check_place(given, target, sources, cwd=cwd)
    check_state(given, target, kind, sources, force=force)


def check_place(given: str, target: Path, sources: Sequence[Path], *, cwd: Path) -> None:
    """Where the target is: never the current directory, the sources, or a parent of either."""
    if _at_or_below(cwd, target):
        same = target == cwd or _same(target, cwd)
        what = "the current directory" if same else "a parent of the current directory"
        raise _error(
            "E0801",
            given,
            f"refusing to replace `{given}`: it is {what}",
            help="name a directory of its own, such as `build`",
        )
    for source in sources:
        if _at_or_below(source, target):
            same = target == source or _same(target, source)
            what = "the policy sources" if same else "a parent of the policy sources"
            raise _error(
                "E0802",
                given,
                f"refusing to replace `{given}`: it is {what}",
                help="write the output next to the sources, such as `--out build`",
            )


def check_state(
    given: str, target: Path, kind: str, sources: Sequence[Path], *, force: bool
) -> None:
    """What the target is: absent, empty or ours; a foreign directory only with `force`."""
    try:
        state = _state(target, kind)
    except OSError as exc:
        raise _error("E0805", given, f"cannot inspect `{given}`: {_reason(exc)}") from exc
    if state == "other":
        raise _error(
            "E0803",
            given,
            f"refusing to replace `{given}`: it is not a directory",
            help="name a directory (absent, empty or an earlier output)",
        )
    if state != "foreign":
        return
    for source in sources:
        if source.is_dir() and _at_or_below(target, source):
            raise _error(
                "E0802",
                given,
                f"refusing to replace `{given}`: it is inside the policy sources and is"
                " not an earlier output",
                help="`--force` does not apply inside the sources; choose another `--out`",
            )
    if not force:
        what = "a report" if kind == REPORT_FORMAT else "a build"
        raise _error(
            "E0804",
            given,
            f"refusing to replace `{given}`: it is not empty and not {what} of mcpdsl",
            help="choose another `--out`, or pass `--force` to delete its contents",
        )


def prepare(
    out: str | os.PathLike[str],
    *,
    kind: str = BUILD_FORMAT,
    sources: Iterable[str | os.PathLike[str]] = (),
    force: bool = False,
) -> OutputPlan:
    """Recover leftovers of an interrupted run, then check the policy; raise OutputError."""
    given = os.fspath(out)
    if not given:
        raise OutputError(make("E0803", "the output path is empty", None))
    try:
        target = real(given)
        real_sources = [real(s) for s in sources]
        cwd = real(os.getcwd())
    except (OSError, ValueError) as exc:  # a NUL byte, a deleted working directory
        raise _error("E0805", given, f"cannot resolve `{given}`: {str(exc).lower()}") from exc
    check_place(given, target, real_sources, cwd=cwd)
    notes = recover(target)
    check_state(given, target, kind, real_sources, force=force)
    return OutputPlan(given, target, kind, notes)


# ----------------------------------------------------------------------- recovery


def _leftovers(target: Path, what: str) -> list[Path]:
    prefix = f".{target.name}.{what}-"
    try:
        with os.scandir(target.parent) as entries:
            found = [Path(e.path) for e in entries if e.name.startswith(prefix)]
    except OSError:
        return []
    return sorted(found)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[bool]:
    """Yield whether an exclusive lock on the (real, not symlinked) directory was taken."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def recover(target: Path) -> tuple[str, ...]:
    """Restore or remove `.<out>.old-*` / `.<out>.staging-*` left by an interrupted run.

    Only real directories that no running writer holds are touched.  When the
    output is absent, the newest old directory that is an earlier output is
    renamed back; staging directories, and old directories that are ours or
    empty, are removed; any other old directory is named in a note and kept.
    """
    notes: list[str] = []
    olds = _leftovers(target, "old")
    stagings = _leftovers(target, "staging")
    if not olds and not stagings:
        return ()
    shown = target.name
    if not os.path.lexists(target):
        candidates = []
        for old in olds:
            with contextlib.suppress(OSError):
                if stat.S_ISDIR(os.lstat(old).st_mode) and marker(old) is not None:
                    candidates.append((os.lstat(old).st_ctime_ns, old))
        for _, old in sorted(candidates, reverse=True)[:1]:
            with _locked(old) as free:
                if free:
                    try:
                        os.rename(old, target)
                    except OSError:
                        continue
                    notes.append(
                        f"restored the previous output `{shown}` from `{old.name}`"
                        " (an earlier run was interrupted)"
                    )
                    olds.remove(old)
    for leftover in [*olds, *stagings]:
        try:
            is_dir = stat.S_ISDIR(os.lstat(leftover).st_mode)
        except OSError:
            continue
        removable = is_dir and (
            leftover in stagings or marker(leftover) is not None or _empty(leftover)
        )
        if not removable:
            notes.append(f"left `{leftover.name}` alone: it is not an mcpdsl output")
            continue
        with _locked(leftover) as free:
            if not free:
                continue  # a running writer's directory
            shutil.rmtree(leftover, ignore_errors=True)
        if not os.path.lexists(leftover):
            notes.append(f"removed `{leftover.name}` left by an interrupted run")
    return tuple(notes)


def _empty(directory: Path) -> bool:
    try:
        with os.scandir(directory) as entries:
            return next(entries, None) is None
    except OSError:
        return False


# ---------------------------------------------------------------------- replacing


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (threads)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def replace(
    plan: OutputPlan,
    files: Iterable[tuple[str, bytes]],
    *,
    sources: Iterable[str | os.PathLike[str]] = (),
    force: bool = False,
) -> None:
    """Replace `plan.target` with exactly `files`, or leave it untouched on failure.

    The policy is checked again right before the swap, and the directory that
    is moved aside is checked once more after the rename (and moved back if it
    changed in between), so a race cannot turn an allowed target into another.
    """
    target, given = plan.target, plan.given
    real_sources = [real(s) for s in sources]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    except OSError as exc:
        raise _error("E0805", given, f"cannot create `{given}`: {_reason(exc)}") from exc
    lock = -1
    try:
        lock = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(lock, fcntl.LOCK_EX)  # tells `recover` in other runs: in use
        for path, content in files:
            destination = staging / path
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(content)
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; outputs are shared
        check(given, target, plan.kind, real_sources, force=force, cwd=real(os.getcwd()))
        _swap(plan, staging, force)
    except OSError as exc:
        raise _error("E0805", given, f"cannot write `{given}`: {_reason(exc)}") from exc
    finally:
        if lock >= 0:
            os.close(lock)
        if os.path.lexists(staging):
            shutil.rmtree(staging, ignore_errors=True)


def _swap(plan: OutputPlan, staging: Path, force: bool) -> None:
    target = plan.target
    if not os.path.lexists(target):
        os.rename(staging, target)
        return
    old = target.parent / f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(target, old)
        # Out of reach under a random name now: is it still what was checked?
        state = _state(old, plan.kind)
        if not os.path.samestat(os.fstat(fd), os.lstat(old)) or (
            state not in ("empty", "ours") and not force
        ):
            os.rename(old, target)  # changed between the check and the rename
            raise _error("E0805", plan.given, f"`{plan.given}` changed while writing")
        try:
            os.rename(staging, target)
        except OSError:
            os.rename(old, target)
            raise
    finally:
        os.close(fd)
    shutil.rmtree(old, ignore_errors=True)


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()
