"""Finding and reading policy files without trusting what a path names.

Every command that reads `.mcp` files (`check`, `build`, `watch`, `fmt`, `eval`,
the embedded engine's reload) goes through `find_sources` and `read_source`, so
the same rules hold everywhere (docs/sources.md):

* only regular files are read: a FIFO, socket or device named `*.mcp` is a
  diagnostic (E0504), never a read that blocks forever.  Files are opened with
  `O_NONBLOCK` and checked with `fstat` on the opened descriptor, so a file
  swapped for a FIFO between the `stat` and the `open` cannot block either;
* the size limit is checked before reading and the read itself is bounded, so
  a symlink to `/dev/zero` or a growing file cannot exhaust memory (E0502);
* a symlink, to a file or a directory, that resolves outside the tree root is
  refused (E0503): a policy tree cannot pull in `/etc/passwd`.  Symlinked
  directories that stay inside the root are not descended (their files are
  already found under their real path).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from mcpdsl.diagnostics import Diagnostic, make
from mcpdsl.source import Span

SUFFIX = ".mcp"
MAX_FILE_BYTES = 8 * 1024 * 1024
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


class InputError(Exception):
    """The input path itself is unusable (exit code 2), with a diagnostic."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


class Refused(Exception):
    """A source that is not read, with the diagnostic that says why."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def find_sources(path: Path) -> tuple[Path, list[Path]]:
    """The tree root and its `.mcp` candidates in sorted path order.

    Candidates are not yet trusted: `read_source` checks each one.  A symlinked
    directory that leaves the root is listed too, so that reading it reports the
    refusal instead of silently dropping what it holds.
    """
    if not os.path.lexists(path):
        raise InputError(make("E0501", f"`{path}` does not exist", None))
    if not path.is_dir():
        return path.parent, [path]
    real_root = path.resolve()
    files = []
    for dirpath, dirnames, filenames in os.walk(path):
        kept = []
        for d in sorted(dirnames):
            if d.startswith("."):
                continue
            full = Path(dirpath) / d
            if full.is_symlink():
                if not _inside(full.resolve(), real_root):
                    files.append(full)
                continue
            kept.append(d)
        dirnames[:] = kept
        files.extend(Path(dirpath) / name for name in filenames if name.endswith(SUFFIX))
    if not files:
        raise InputError(
            make(
                "E0501",
                f"no `{SUFFIX}` files under `{path}`",
                None,
                help=f"policy files end in `{SUFFIX}`; pass the directory that holds them",
            )
        )
    files.sort(key=lambda p: p.relative_to(path).as_posix())
    return path, files


def display_path(root: Path, file: Path) -> str:
    """The path shown in diagnostics: relative to the root, else the file name."""
    return file.relative_to(root).as_posix() if root in file.parents else file.name


def read_source(root: Path, file: Path) -> bytes:
    """The bytes of one candidate, or `Refused` with the diagnostic that says why.

    Raises `Refused` for every rule in the module docstring and for ordinary
    read errors (E0501); never blocks on a special file and never reads more
    than `MAX_FILE_BYTES + 1` bytes.
    """
    display = display_path(root, file)
    span = Span.point(display, 1, 1)
    try:
        real = file.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # dangling or looping symlink, vanished file
        raise Refused(_unreadable(display, exc, span)) from exc
    if not _inside(real, root.resolve()):
        raise Refused(
            make(
                "E0503",
                f"`{display}` is a symlink that leaves the tree root",
                span,
                help="policy trees are read only inside the directory given; "
                "copy the file into the tree or pass a directory that holds both",
            )
        )
    try:
        before = os.stat(real)  # refuse special and oversized files before opening them
        _check_kind_and_size(display, before.st_mode, before.st_size, span)
        fd = os.open(real, _OPEN_FLAGS)  # O_NONBLOCK: a FIFO swapped in since cannot block
    except OSError as exc:
        raise Refused(_unreadable(display, exc, span)) from exc
    try:
        st = os.fstat(fd)
        _check_kind_and_size(display, st.st_mode, st.st_size, span)  # what was opened
        data = _read_bounded(fd, MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise Refused(_unreadable(display, exc, span)) from exc
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:  # grew after the fstat
        raise Refused(too_large(display))
    return data


class NotRegularFile(OSError):
    """An auxiliary input that is not read: a FIFO, device, directory, or too large.

    An `OSError`, so that every caller that already reports an unreadable file
    (`cannot read `x`: <strerror>`) reports these too, with no second path.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(errno.EINVAL, reason, os.fspath(path))


def read_regular(path: str | os.PathLike[str], limit: int, *, follow: bool = True) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, else an `OSError`.

    For the files a command reads besides its policy tree (`eval --input`, key and
    keyring files, intensity CSVs, the language server's files): opened with
    `O_NONBLOCK` and checked with `fstat` on the descriptor, so a FIFO, socket or
    device (`/dev/zero`, a named pipe) is refused instead of blocking or filling
    memory, and the read is bounded.  `follow=False` refuses a final symlink too.
    Raises `NotRegularFile` (an `OSError` whose `strerror` says why) or the
    `OSError` of the failing system call.
    """
    flags = _OPEN_FLAGS if not follow else _OPEN_FLAGS & ~getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow and os.path.islink(path):
            raise NotRegularFile(path, "a symlink, not followed") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(path, f"not a regular file ({_kind(st.st_mode)})")
        if st.st_size > limit:
            raise NotRegularFile(path, f"larger than {_size(limit)}")
        data = _read_bounded(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # grew after the fstat
        raise NotRegularFile(path, f"larger than {_size(limit)}")
    return data


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 and not limit % (1 << 20) else f"{limit} bytes"


def _check_kind_and_size(display: str, mode: int, size: int, span: Span) -> None:
    if not stat.S_ISREG(mode):
        raise Refused(
            make(
                "E0504",
                f"`{display}` is not a regular file ({_kind(mode)})",
                span,
                help="policy files must be regular files; "
                "remove or rename special files in the tree",
            )
        )
    if size > MAX_FILE_BYTES:
        raise Refused(too_large(display))


def too_large(display: str) -> Diagnostic:
    return make(
        "E0502",
        f"file is larger than {MAX_FILE_BYTES >> 20} MiB",
        Span.point(display, 1, 1),
    )


def _read_bounded(fd: int, limit: int) -> bytes:
    chunks = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "a special file"


def _unreadable(display: str, exc: BaseException, span: Span) -> Diagnostic:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "symlink loop"
    return make("E0501", f"cannot read `{display}`: {reason.lower()}", span)
