"""Errors, formats and small helpers shared by keys, signing and verification."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mcpdsl.outdir import IR_ARTIFACT as IR_ARTIFACT  # re-exported: one definition
from mcpdsl.outdir import MANIFEST as MANIFEST
from mcpdsl.reader import read_regular

#: The two signature algorithms of a build signature; both must verify (hybrid).
ALGORITHMS: tuple[str, ...] = ("ed25519", "ml-dsa-65")
#: The algorithm of the JWT inside a signed OPA bundle (OPA cannot verify the others).
OPA_ALGORITHM = "ES256"

KEY_FORMAT = "mcpdsl-key/1"  # key.json of a private key directory
ENTRY_FORMAT = "mcpdsl-key-entry/1"  # public.json: one keyring entry

KEYRING_FORMAT = "mcpdsl-keyring/1"
SIGNATURE_FORMAT = "mcpdsl-signature/1"

# The layout of a build: `MANIFEST` and `IR_ARTIFACT` come from `mcpdsl.outdir` (the
# lowest layer that needs them); the signer's own names are defined here.
SIGNATURE = "signature.json"
OPA_BUNDLE = "opa/bundle.tar.gz"


class TrustError(Exception):
    """A build was refused; `reason` says precisely why (one line, no final period).

    `kind` is a stable machine-readable category: missing, malformed, unknown-key,
    revoked, expired, not-yet-valid, future, signature-missing, signature-invalid,
    manifest-mismatch, hash-mismatch, extra-file, unsafe-path, opa-bundle, rollback.
    """

    def __init__(self, reason: str, kind: str = "refused") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class TrustInputError(Exception):
    """An input of a trust command is unusable (exit code 2): bad key file, keyring, passphrase."""


def parse_time(text: str, what: str = "time") -> datetime:
    """An ISO 8601 time (`2026-01-31`, `2026-01-31T12:00:00Z`); naive times are UTC."""
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise TrustInputError(f"{what} `{text}` is not an ISO 8601 time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_time(value: datetime) -> str:
    """UTC, second precision, `Z` suffix: `2026-01-31T12:00:00Z`."""
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes that get signed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def pretty_json(value: Any) -> bytes:
    return (json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    """Strict base64: the canonical encoding only (no stray padding bits), else ValueError."""
    data = base64.b64decode(text.encode("ascii"), validate=True)
    if b64encode(data) != text:
        raise ValueError("non-canonical base64")
    return data


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict unpadded base64url (as in JWTs), else ValueError."""
    data = base64.b64decode(
        (text + "=" * (-len(text) % 4)).encode("ascii"), altchars=b"-_", validate=True
    )
    if b64url(data) != text:
        raise ValueError("non-canonical base64url")
    return data


def write_file_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `path` through a temporary sibling and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path, what: str) -> Any:
    """A key, entry or keyring file, parsed strictly (see `strict_json`)."""
    try:  # a FIFO or `/dev/zero` given as a keyring: refused, not read forever
        data = read_regular(path, MAX_KEY_FILE_BYTES)
    except FileNotFoundError:
        raise TrustInputError(f"{what} `{path}` does not exist") from None
    except OSError as exc:
        raise TrustInputError(f"cannot read {what} `{path}`: {exc.strerror}") from None
    try:
        return strict_json(data)
    except ValueError as exc:
        raise TrustInputError(f"{what} `{path}` is not valid JSON: {exc}") from None


# ------------------------------------------------------------------ hostile input
#
# Everything a verifier reads from a build is attacker-controlled until it has been
# checked: names are checked before they are joined to a directory, reads are
# bounded before they are made, and JSON is parsed strictly (duplicate keys would
# let two parsers see two different documents under one signature).

#: Upper bounds on what a verifier reads; far above any real build, low enough that a
#: hostile build cannot exhaust memory.
MAX_SIGNATURE_BYTES = 64 * 1024
MAX_KEY_FILE_BYTES = 16 * 1024 * 1024  # a key, keyring entry or keyring (thousands of keys)
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_ARTIFACT_BYTES = 512 * 1024 * 1024
MAX_BUNDLE_MEMBERS = 100_000
MAX_BUNDLE_UNPACKED = 512 * 1024 * 1024
#: The whole decompressed tar stream: the members plus their headers (pax, long names).
MAX_BUNDLE_TAR = MAX_BUNDLE_UNPACKED + 64 * 1024 * 1024
MAX_NAME = 1024  # a whole relative name
MAX_NAME_PART = 255  # one component (the usual file-system limit)
#: The largest revision: a signed 64-bit integer, so every consumer can store it.
MAX_REVISION = 2**63 - 1


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key `{key}`")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"`{name}` is not JSON")


def strict_json(data: bytes) -> Any:
    """JSON as RFC 8259 intends it, else ValueError with a one-line reason.

    Refuses duplicate object keys, NaN/Infinity, invalid UTF-8, numbers too long
    for Python to convert, and nesting too deep to parse (a RecursionError, which
    `json` lets escape, is turned into a ValueError here).
    """
    try:
        text = data.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at line {exc.lineno})") from None


def unsafe_name_reason(name: object) -> str | None:
    """Why `name` is not a safe relative POSIX path inside a build or bundle (None: safe).

    Refused: non-strings, empty, absolute, backslashes (a separator on Windows),
    control characters including NUL, `.`/`..`/empty components, and names or
    components longer than file systems allow.
    """
    if not isinstance(name, str) or not name:
        return "is empty or not a string"
    if len(name) > MAX_NAME:
        return f"is longer than {MAX_NAME} characters"
    if name.startswith("/"):
        return "is absolute"
    if "\\" in name:
        return "contains a backslash"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return "contains a control character"
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "has an empty, `.` or `..` component"
    if any(len(part) > MAX_NAME_PART for part in parts):
        return f"has a component longer than {MAX_NAME_PART} characters"
    return None


def colliding_names(names: list[str]) -> tuple[str, str] | None:
    """Two names that are one file on some file system: equal, or equal ignoring case and
    Unicode normalisation (macOS and Windows defaults); None when all are distinct."""
    import unicodedata

    seen: dict[str, str] = {}
    for name in names:
        folded = unicodedata.normalize("NFC", name).casefold()
        if folded in seen:
            return seen[folded], name
        seen[folded] = name
    return None


def shown(name: object, limit: int = 120) -> str:
    """A hostile name made printable on one line (control characters escaped, truncated)."""
    text = json.dumps(name, ensure_ascii=False)[1:-1] if isinstance(name, str) else repr(name)
    return text if len(text) <= limit else text[:limit] + "..."


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of a regular file, not following a final symlink, at most `limit` bytes.

    Raises ValueError naming the problem (symlink, not a regular file, too large) and
    FileNotFoundError when absent.  The type and size are checked on the open file, so a
    file swapped after a check cannot be read instead.
    """
    import stat

    try:
        fd = os.open(
            path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        )
    except OSError as exc:
        if path.is_symlink():
            raise ValueError("is a symlink") from None
        if isinstance(exc, FileNotFoundError | NotADirectoryError):
            raise FileNotFoundError(str(path)) from None  # a parent that is a file: absent
        raise ValueError(f"cannot be read ({exc.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ValueError("is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > limit:
            raise ValueError(f"is larger than {limit} bytes")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"is larger than {limit} bytes")
    return data
