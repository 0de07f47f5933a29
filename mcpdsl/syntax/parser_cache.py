"""A per-user, verified cache of the built LALR parser.

Building the parser from the grammar takes seconds; loading a saved one takes a
fraction of that.  Lark can cache by itself, but its cache is a pickle at a path
the caller names, and the obvious place, the system temp directory, is shared:
any local user could plant a pickle there and have mcpdsl run it.  So the cache
here trusts nothing it did not make:

* it lives in the user's own cache directory (`$XDG_CACHE_HOME/mcpdsl`, else
  `~/.cache/mcpdsl`), never in a shared directory and never in the package;
* that directory must be a real directory (not a symlink) owned by the effective
  user with no group or other permissions; the file must be a regular file (not
  a symlink, FIFO or device) owned by the user and writable by nobody else;
  the directory is opened once and the file relative to that descriptor, so
  the checks and the read see the same objects;
* the file carries the SHA-256 of its payload, checked before anything is
  decoded, so a torn or corrupted write is rebuilt, not half loaded;
* the payload is unpickled with every global refused: lark's saved parser is
  plain data (dicts, lists, strings, numbers), so a pickle that asks for any
  callable is rejected instead of executed;
* the file name is keyed by a hash of the grammar, the parser options, the lark
  version and the Python version, so a stale parser is never reused.

Any doubt means "do not load": the parser is then built from the grammar, and
saved only if the directory passed the same checks.  The directory and file
checks are `mcpdsl.cachedir`'s, shared with the front end's per-file cache.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import sys
from collections.abc import Mapping
from typing import Any

import lark
from lark import Lark

from mcpdsl.cachedir import MAX_CACHE_BYTES, cache_root, write_atomic
from mcpdsl.cachedir import open_private_dir as _open_private_dir
from mcpdsl.cachedir import read_verified as _read_verified
from mcpdsl.cachedir import unwrap as _unwrap
from mcpdsl.cachedir import wrap as _wrap

__all__ = ["MAX_CACHE_BYTES", "cache_root", "cached_parser", "read_verified", "unwrap", "wrap"]

FORMAT = b"mcpdsl-parser-cache 1"


def cached_parser(
    name: str,
    grammar: str,
    options: Mapping[str, Any],
    load_options: Mapping[str, Any] | None = None,
) -> Lark:
    """The parser for `grammar`, loaded from the verified cache or built (and saved).

    `options` shape the parse tables and are part of the cache key; `load_options`
    (callbacks, position tracking) are not saved and are applied when loading, as
    lark allows for exactly these options.
    """
    extra = dict(load_options or {})
    key = cache_key(grammar, options)
    filename = f"{name}-{key}.pickle"
    directory = _open_private_dir(cache_root())
    try:
        if directory is not None:
            payload = read_verified(directory, filename)
            if payload is not None:
                loaded = _load(payload, extra)
                if loaded is not None:
                    return loaded
        built = Lark(grammar, **options, **extra)
        if directory is not None:
            buf = io.BytesIO()
            built.save(buf, exclude_options=set(extra))
            _write(directory, filename, buf.getvalue())
        return built
    finally:
        if directory is not None:
            os.close(directory)


def cache_key(grammar: str, options: Mapping[str, Any]) -> str:
    """What the saved tables depend on: grammar, options, lark and Python versions."""
    digest = hashlib.sha256()
    for part in (
        FORMAT.decode(),
        lark.__version__,
        f"{sys.version_info.major}.{sys.version_info.minor}",
        repr(sorted(options.items())),
        grammar,
    ):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:32]


def read_verified(directory: int, filename: str) -> bytes | None:
    """The payload of a parser cache file that passes every check, else None."""
    return _read_verified(directory, filename, FORMAT)


def wrap(payload: bytes) -> bytes:
    """A parser cache file: the format line, the payload's SHA-256, then the payload."""
    return _wrap(payload, FORMAT)


def unwrap(data: bytes) -> bytes | None:
    """The payload of a well-formed parser cache file whose checksum matches, else None."""
    return _unwrap(data, FORMAT)


class _DataOnly(pickle.Unpickler):
    """An unpickler that refuses every global: only plain data can come out."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing `{module}.{name}` in a parser cache")


def load_data(payload: bytes) -> dict[str, Any] | None:
    """Decode a saved parser as plain data; None if it is anything else."""
    try:
        obj = _DataOnly(io.BytesIO(payload)).load()
    except Exception:  # any malformed pickle: rebuild instead
        return None
    if not isinstance(obj, dict) or set(obj) != {"data", "memo"}:
        return None
    return obj


def _load(payload: bytes, extra: dict[str, Any]) -> Lark | None:
    obj = load_data(payload)
    if obj is None:
        return None
    try:
        return Lark._load_from_dict(obj["data"], obj["memo"], **extra)
    except Exception:  # well-formed data but not a parser this lark can use
        return None


def _write(directory: int, filename: str, payload: bytes) -> None:
    write_atomic(directory, filename, payload, FORMAT)
