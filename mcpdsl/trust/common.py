"""Errors, formats and small helpers shared by keys, signing and verification."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: The two signature algorithms of a build signature; both must verify (hybrid).
ALGORITHMS: tuple[str, ...] = ("ed25519", "ml-dsa-65")
#: The algorithm of the JWT inside a signed OPA bundle (OPA cannot verify the others).
OPA_ALGORITHM = "ES256"

KEY_FORMAT = "mcpdsl-key/1"  # key.json of a private key directory
ENTRY_FORMAT = "mcpdsl-key-entry/1"  # public.json: one keyring entry
KEYRING_FORMAT = "mcpdsl-keyring/1"
SIGNATURE_FORMAT = "mcpdsl-signature/1"

# The layout of a build, shared by the writer (`mcpdsl.builder`), the signer and the
# engine that loads a signed build: each name is defined here and nowhere else.
MANIFEST = "manifest.json"
SIGNATURE = "signature.json"
OPA_BUNDLE = "opa/bundle.tar.gz"
#: The IR of the build (`mcpdsl.builder.ir_artifact`), what `Engine.load(build, trust=...)` runs.
IR_ARTIFACT = "ir/project.json"


class TrustError(Exception):
    """A build was refused; `reason` says precisely why (one line, no final period).

    `kind` is a stable machine-readable category: missing, malformed, unknown-key,
    revoked, expired, not-yet-valid, future, signature-missing, signature-invalid,
    manifest-mismatch, hash-mismatch, extra-file, unsafe-path, opa-bundle.
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
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise TrustInputError(f"{what} `{path}` does not exist") from None
    except OSError as exc:
        raise TrustInputError(f"cannot read {what} `{path}`: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrustInputError(f"{what} `{path}` is not valid JSON: {exc}") from None
