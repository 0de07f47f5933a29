"""Verdicts on `jwks file`s, kept between runs in the user's cache directory.

Checking a JWKS file means building every key with PyJWT, and importing PyJWT
and cryptography for that was about a quarter of a warm `mcpdsl check
--no-analyze` of `policies/` (docs/performance.md, "Start-up").  The verdict
(`mcpdsl.ir.jwks.parse_jwks`) is a function of the file's bytes, of the checking
code and of the libraries alone, so it is stored, and a run that finds it imports
neither library.  Reading the file, and refusing one outside the tree or
unreadable, is not cached: `load_jwks` always does it and passes the bytes here.

Staleness: an entry is named by the SHA-256 of `FORMAT`, the Python version,
the source of `mcpdsl/ir/jwks.py`, the version files of PyJWT
(`jwt/__init__.py`) and cryptography (`cryptography/__about__.py`), as bytes, and
the file's bytes; any change to one of them is another name.

Trust: the directory and file checks of `mcpdsl.cachedir`, as for the front-end
cache.  An entry is JSON holding the verdict only, `{"problem": null}` (usable)
or `{"problem": "..."}`, never the keys: the keys the IR carries are always
those of the file just read.  A stored "usable" skips PyJWT's part of the check
only; the project's own policy (`policy_problem`: no private, symmetric,
`alg: none` or encryption keys) runs again on every key.  A stored problem can
only refuse a file.  Anything else in an entry (not JSON, another shape, a
checksum that does not match) is ignored and the file checked again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from contextlib import suppress
from functools import cache
from importlib.util import find_spec
from pathlib import Path

from mcpdsl.cachedir import (
    cache_root,
    open_private_dir,
    prune_oldest,
    read_verified,
    write_atomic,
)
from mcpdsl.ir import jwks
from mcpdsl.ir.jwks import Jwks, parse_jwks, policy_problem

FORMAT = b"mcpdsl-jwks-cache 1"
PREFIX = "jwks-"
SUFFIX = ".json"
MAX_ENTRIES = 64  # a tree has a handful of JWKS files
MAX_PROBLEM = 400  # longer than any problem `parse_jwks` words


@cache
def toolchain() -> bytes | None:
    """What a verdict depends on besides the file: this check's code and its libraries.

    None when the checker's source cannot be read (nothing is cached then).
    """
    digest = hashlib.sha256(FORMAT)
    digest.update(b"\x00python\x00" + sys.version.encode())
    try:
        digest.update(b"\x00jwks.py\x00" + Path(jwks.__file__).read_bytes())
    except OSError:
        return None
    for library, version_file in (("jwt", "__init__.py"), ("cryptography", "__about__.py")):
        digest.update(f"\x00{library}\x00".encode())
        spec = find_spec(library)  # finds the package without importing it
        origin = spec.origin if spec is not None else None
        if origin is not None:
            with suppress(OSError):
                digest.update((Path(origin).parent / version_file).read_bytes())
    return digest.digest()


def entry_name(data: bytes) -> str | None:
    """The file name of the verdict on `data`, or None when verdicts cannot be keyed."""
    tools = toolchain()
    if tools is None:
        return None
    digest = hashlib.sha256(tools)
    digest.update(data)
    return f"{PREFIX}{digest.hexdigest()[:40]}{SUFFIX}"


def encode(verdict: Jwks) -> bytes:
    return json.dumps({"problem": verdict.problem}).encode()


class _Miss:
    """No usable stored verdict."""


MISS = _Miss()


def decode(payload: bytes) -> str | _Miss | None:
    """The stored problem (None: usable) of a verified payload, or `MISS`."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return MISS
    if not (isinstance(doc, dict) and list(doc) == ["problem"]):
        return MISS
    problem = doc["problem"]
    if problem is None or (isinstance(problem, str) and 0 < len(problem) <= MAX_PROBLEM):
        return problem
    return MISS


def from_store(data: bytes, problem: str | None) -> Jwks:
    """The verdict on `data` given a stored problem (see the module's "Trust")."""
    if problem is not None:
        return Jwks(None, problem)
    return parse_jwks(data, policy_problem)


class StoredJwksCheck:
    """`parse_jwks`, with its verdicts kept in the user's cache directory.

    One per compilation (`compile_tree(stored=True)`): `resolve` and `typecheck`
    both read each `jwks file`, and the second read of the same bytes is answered
    from `seen` without touching the disk.
    """

    def __init__(self) -> None:
        self.seen: dict[bytes, Jwks] = {}

    def __call__(self, data: bytes) -> Jwks:
        key = hashlib.sha256(data).digest()
        verdict = self.seen.get(key)
        if verdict is None:
            verdict = self.seen[key] = stored_verdict(data)
        return verdict


def stored_verdict(data: bytes) -> Jwks:
    """The verdict on `data`, from the store when it holds one, else computed and stored."""
    name = entry_name(data)
    directory = None if name is None else open_private_dir(cache_root())
    if name is None or directory is None:
        return parse_jwks(data)
    try:
        payload = read_verified(directory, name, FORMAT)
        problem = MISS if payload is None else decode(payload)
        if not isinstance(problem, _Miss):
            return from_store(data, problem)
        verdict = parse_jwks(data)
        write_atomic(directory, name, encode(verdict), FORMAT)
        prune(directory)
        return verdict
    finally:
        os.close(directory)


def prune(directory: int, keep: int = MAX_ENTRIES) -> None:
    """Delete the oldest verdicts beyond `keep` (by modification time)."""
    prune_oldest(directory, _is_verdict, keep)


def _is_verdict(name: str) -> bool:
    return name.startswith(PREFIX) and name.endswith(SUFFIX)
