"""The per-user cache directory and the verified files kept in it.

Three caches live here: the built parser (`mcpdsl.syntax.parser_cache`), the
front end's per-file results (`mcpdsl.pipeline.disk_cache`) and the verdicts on
JWKS files (`mcpdsl.pipeline.jwks_cache`).  The first two hold pickles, so all
trust nothing they did not make:

* the directory is the user's own (`$XDG_CACHE_HOME/mcpdsl`, else
  `~/.cache/mcpdsl`), never a shared one and never the package directory; it
  must be a real directory (not a symlink) owned by the effective user with no
  group or other permissions;
* a file must be a regular file (not a symlink, FIFO or device) owned by the
  user and writable by nobody else; the directory is opened once and files
  relative to that descriptor, so the checks and the read see the same objects;
* a file starts with a format line and the SHA-256 of its payload, checked
  before anything is decoded, so a torn or corrupted write is recomputed, not
  half loaded;
* writes go to a private temporary file renamed over the old one.

Any doubt means "do not load".  This module has no dependency of its own so
that a warm `mcpdsl check` can read its cache without importing the parser.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path

MAX_CACHE_BYTES = 64 * 1024 * 1024  # a saved parser is about 1 MiB, a file's IR far less
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)


def cache_root(environ: Mapping[str, str] | None = None) -> Path | None:
    """The user's cache directory for mcpdsl, by the XDG base-directory rules.

    A relative `XDG_CACHE_HOME` is ignored, as the specification says.  None when
    no home directory can be found (nothing is cached then).
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME", "")
    if base and os.path.isabs(base):
        return Path(base) / "mcpdsl"
    try:
        home = Path.home()
    except (KeyError, RuntimeError):
        return None
    return home / ".cache" / "mcpdsl"


def open_private_dir(path: Path | None) -> int | None:
    """A descriptor of the cache directory, or None unless it is private to this user."""
    if path is None or not hasattr(os, "geteuid") or os.open not in os.supports_dir_fd:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with suppress(FileExistsError):
            path.mkdir(mode=0o700)
        fd = os.open(path, _DIR_FLAGS)
    except OSError:
        return None
    st = os.fstat(fd)
    if (
        not stat.S_ISDIR(st.st_mode)
        or st.st_uid != os.geteuid()
        or stat.S_IMODE(st.st_mode) & 0o077
    ):
        os.close(fd)
        return None
    return fd


def read_verified(directory: int, filename: str, header: bytes) -> bytes | None:
    """The payload of a cache file that passes every check, else None."""
    try:
        fd = os.open(filename, _OPEN_FLAGS, dir_fd=directory)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_uid != os.geteuid()
            or stat.S_IMODE(st.st_mode) & 0o022
            or st.st_size > MAX_CACHE_BYTES
        ):
            return None
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(MAX_CACHE_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return unwrap(data, header)


def wrap(payload: bytes, header: bytes) -> bytes:
    """A cache file: the format line, the payload's SHA-256, then the payload."""
    return header + b"\n" + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def unwrap(data: bytes, header: bytes) -> bytes | None:
    """The payload of a well-formed cache file whose checksum matches, else None."""
    first, _, rest = data.partition(b"\n")
    digest, _, payload = rest.partition(b"\n")
    if first != header or len(data) > MAX_CACHE_BYTES:
        return None
    if digest != hashlib.sha256(payload).hexdigest().encode():
        return None
    return payload


def write_atomic(directory: int, filename: str, payload: bytes, header: bytes) -> None:
    """Save atomically (a private temp file renamed over); failures are ignored."""
    tmp = f".{filename}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, 0o600, dir_fd=directory)
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(wrap(payload, header))
        os.replace(tmp, filename, src_dir_fd=directory, dst_dir_fd=directory)
    except OSError:
        with suppress(OSError):
            os.unlink(tmp, dir_fd=directory)


def prune_oldest(directory: int, is_entry: Callable[[str], bool], keep: int) -> None:
    """Delete the oldest of the entries (`is_entry` names) beyond `keep`, by modification time.

    Shared by the caches kept here, so that each stays bounded the same way;
    failures are ignored (a file another process removed meanwhile is gone anyway).
    """
    try:
        names = [n for n in os.listdir(directory) if is_entry(n)]
    except OSError:
        return
    if len(names) <= keep:
        return
    aged = []
    for name in names:
        with suppress(OSError):
            st = os.stat(name, dir_fd=directory, follow_symlinks=False)
            aged.append((st.st_mtime_ns, name))
    aged.sort()
    for _, name in aged[: len(aged) - keep]:
        with suppress(OSError):
            os.unlink(name, dir_fd=directory)
