"""`verify_build`: accept a signed build only if every check passes.

Order of checks (the first failure is the reason given):

1. `signature.json` and `manifest.json` exist and are well-formed;
2. the key id is in the keyring and not revoked as compromised;
3. both signatures are present and verify (Ed25519 and ML-DSA-65) over the
   signed statement {format, key_id, algorithms, manifest_sha256, signed_at};
4. the manifest's sha256 is the signed one;
5. the key was valid when the build was signed (not_before <= signed_at <=
   not_after), is still valid now (now <= not_after), signed_at is not in the
   future, and a `superseded` revocation is later than signed_at;
6. every manifest entry is a safe relative path to a regular file whose sha256
   and size match, and the build holds no other file;
7. if the build has `opa/bundle.tar.gz`, its `.signatures.json` is an ES256 JWT
   from the same key covering exactly the bundle's files.

The bytes checked are returned in `VerifiedBuild.files`, so a loader uses
exactly what was verified (no second read, no time-of-check/time-of-use gap).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

from cryptography.exceptions import InvalidSignature

from mcpdsl.trust.common import (
    ALGORITHMS,
    MANIFEST,
    OPA_BUNDLE,
    SIGNATURE,
    SIGNATURE_FORMAT,
    TrustError,
    b64decode,
    canonical_json,
    format_time,
    parse_time,
    utcnow,
)
from mcpdsl.trust.common import TrustInputError as _TrustInputError
from mcpdsl.trust.keys import KeyEntry, Keyring
from mcpdsl.trust.opa import verify_bundle

#: How far in the future a signature time may be (clock skew between machines).
CLOCK_SKEW = timedelta(minutes=5)
RESERVED = frozenset({MANIFEST, SIGNATURE})


@dataclass(frozen=True)
class VerifiedBuild:
    """A build whose every artifact was checked; `files` holds the verified bytes."""

    path: Path
    key_id: str
    signed_at: datetime
    manifest_sha256: str
    files: Mapping[str, bytes] = field(repr=False)
    opa_bundle_files: tuple[str, ...] = ()

    def read(self, artifact: str) -> bytes:
        return self.files[artifact]


def signed_statement(
    key_id: str, manifest_sha256: str, signed_at: str, algorithms: tuple[str, ...] = ALGORITHMS
) -> dict[str, Any]:
    return {
        "format": SIGNATURE_FORMAT,
        "key_id": key_id,
        "algorithms": list(algorithms),
        "manifest_sha256": manifest_sha256,
        "signed_at": signed_at,
    }


def signing_input(statement: Mapping[str, Any]) -> bytes:
    """The bytes both algorithms sign: a domain prefix and the canonical statement."""
    return SIGNATURE_FORMAT.encode() + b"\x00" + canonical_json(dict(statement))


def safe_path(path: object) -> str:
    if (
        not isinstance(path, str)
        or not path
        or "\\" in path
        or "\x00" in path
        or path.startswith("/")
        or any(part in ("", ".", "..") for part in path.split("/"))
        or path in RESERVED
    ):
        raise TrustError(f"manifest entry `{path}` is not a safe relative path", "unsafe-path")
    return str(PurePosixPath(path))


def parse_manifest(data: bytes) -> list[dict[str, Any]]:
    try:
        doc = json.loads(data)
        entries = doc["artifacts"]
        if not isinstance(entries, list):
            raise TypeError
        result = []
        for entry in entries:
            path = safe_path(entry["path"])
            digest, size = entry["sha256"], entry["size"]
            if not isinstance(digest, str) or not isinstance(size, int):
                raise TypeError
            result.append({"path": path, "sha256": digest, "size": size})
    except TrustError:
        raise
    except (ValueError, KeyError, TypeError):
        raise TrustError("manifest.json is malformed", "malformed") from None
    paths = [e["path"] for e in result]
    if len(set(paths)) != len(paths):
        raise TrustError("manifest.json lists a path twice", "malformed")
    return result


def _regular_file(root: Path, rel: str) -> Path:
    path = root / rel
    for parent in [*reversed(PurePosixPath(rel).parents[:-1]), PurePosixPath(rel)]:
        if (root / parent).is_symlink():
            raise TrustError(f"artifact {rel} is not a regular file (symlink)", "unsafe-path")
    return path


def read_artifacts(root: Path) -> tuple[bytes, dict[str, bytes]]:
    """The manifest bytes and every artifact, checked against the manifest (hashes, extras)."""
    manifest_path = root / MANIFEST
    if not manifest_path.is_file() or manifest_path.is_symlink():
        raise TrustError("manifest.json missing", "missing")
    manifest = manifest_path.read_bytes()
    entries = parse_manifest(manifest)
    files: dict[str, bytes] = {}
    for entry in entries:
        rel = entry["path"]
        path = _regular_file(root, rel)
        if not path.exists():
            raise TrustError(f"artifact {rel} missing", "missing")
        if not path.is_file():
            raise TrustError(f"artifact {rel} is not a regular file", "unsafe-path")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"] or len(data) != entry["size"]:
            raise TrustError(f"artifact {rel} hash mismatch", "hash-mismatch")
        files[rel] = data
    for extra in _all_files(root):
        if extra not in files and extra not in RESERVED:
            raise TrustError(f"unexpected file {extra} is not in the manifest", "extra-file")
    return manifest, files


def _all_files(root: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in dirnames:
            if (base / name).is_symlink():
                found.append((base / name).relative_to(root).as_posix())
        found.extend((base / name).relative_to(root).as_posix() for name in filenames)
    return sorted(found)


def _load_signature(root: Path) -> dict[str, Any]:
    path = root / SIGNATURE
    if not path.is_file():
        raise TrustError("signature.json missing", "missing")
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        raise TrustError("signature.json is not valid JSON", "malformed") from None
    if not isinstance(doc, dict):
        raise TrustError("signature.json is malformed", "malformed")
    if doc.get("format") != SIGNATURE_FORMAT:
        raise TrustError(f"signature.json format is not {SIGNATURE_FORMAT}", "malformed")
    for name in ("key_id", "manifest_sha256", "signed_at"):
        if not isinstance(doc.get(name), str):
            raise TrustError(f"signature.json lacks `{name}`", "malformed")
    if not isinstance(doc.get("signatures", {}), dict):
        raise TrustError("signature.json `signatures` must be an object", "malformed")
    return doc


def _check_signatures(doc: dict[str, Any], entry: KeyEntry) -> None:
    signatures = doc.get("signatures", {})
    statement = signed_statement(doc["key_id"], doc["manifest_sha256"], doc["signed_at"])
    if doc.get("algorithms") != list(ALGORITHMS):
        # A signature stripped from `algorithms` (a downgrade) changes the signed statement;
        # say which one is missing rather than "invalid".
        algorithms = doc.get("algorithms")
        listed: list[Any] = algorithms if isinstance(algorithms, list) else []
        for algorithm in ALGORITHMS:
            if algorithm not in listed or algorithm not in signatures:
                raise TrustError(f"{algorithm} signature missing", "signature-missing")
        raise TrustError("signature.json `algorithms` is malformed", "malformed")
    for algorithm in ALGORITHMS:
        if not isinstance(signatures.get(algorithm), str) or not signatures[algorithm]:
            raise TrustError(f"{algorithm} signature missing", "signature-missing")
    message = signing_input(statement)
    keys: dict[str, Any] = {"ed25519": entry.ed25519_key(), "ml-dsa-65": entry.ml_dsa_65_key()}
    for algorithm in ALGORITHMS:
        try:
            keys[algorithm].verify(b64decode(signatures[algorithm]), message)
        except (InvalidSignature, ValueError):
            raise TrustError(f"{algorithm} signature invalid", "signature-invalid") from None


def verify_build(
    path: str | os.PathLike[str],
    keyring: Keyring | str | os.PathLike[str],
    *,
    now: datetime | None = None,
) -> VerifiedBuild:
    """Verify a signed build against a keyring; raise TrustError(reason) if refused.

    A keyring given as a path is loaded (a malformed keyring raises
    TrustInputError, which is a usage error, not a refusal).
    """
    root = Path(path)
    if not isinstance(keyring, Keyring):
        keyring = Keyring.load(Path(keyring))
    now = now or utcnow()
    if not root.is_dir():
        raise TrustError(f"build `{root}` is not a directory", "missing")
    doc = _load_signature(root)
    key_id = doc["key_id"]
    entry = keyring.keys.get(key_id)
    if entry is None:
        raise TrustError(f"unknown key id `{key_id}`", "unknown-key")
    revocation = keyring.revoked.get(key_id)
    if revocation is not None and revocation.reason == "compromised":
        raise TrustError(f"key {key_id} revoked at {format_time(revocation.revoked_at)}", "revoked")
    _check_signatures(doc, entry)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file() or manifest_path.is_symlink():
        raise TrustError("manifest.json missing", "missing")
    if hashlib.sha256(manifest_path.read_bytes()).hexdigest() != doc["manifest_sha256"]:
        raise TrustError(
            "manifest.json hash mismatch (not the signed manifest)", "manifest-mismatch"
        )
    try:
        signed_at = parse_time(doc["signed_at"], "signed_at")
    except _TrustInputError:
        raise TrustError("signature.json `signed_at` is not a time", "malformed") from None
    if signed_at > now + CLOCK_SKEW:
        raise TrustError(f"signature time {format_time(signed_at)} is in the future", "future")
    if signed_at < entry.not_before:
        raise TrustError(
            f"key {key_id} not valid before {format_time(entry.not_before)}", "not-yet-valid"
        )
    if signed_at > entry.not_after or now > entry.not_after:
        raise TrustError(f"key {key_id} expired at {format_time(entry.not_after)}", "expired")
    if revocation is not None and signed_at >= revocation.revoked_at:
        raise TrustError(f"key {key_id} revoked at {format_time(revocation.revoked_at)}", "revoked")
    manifest, files = read_artifacts(root)
    if hashlib.sha256(manifest).hexdigest() != doc["manifest_sha256"]:  # changed under us
        raise TrustError(
            "manifest.json hash mismatch (not the signed manifest)", "manifest-mismatch"
        )
    opa_files: tuple[str, ...] = ()
    if OPA_BUNDLE in files:
        opa_files = tuple(verify_bundle(files[OPA_BUNDLE], key_id, entry.es256_key()))
    return VerifiedBuild(
        path=root,
        key_id=key_id,
        signed_at=signed_at,
        manifest_sha256=doc["manifest_sha256"],
        files=MappingProxyType(files),
        opa_bundle_files=opa_files,
    )
