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
import os
import re
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
    MAX_ARTIFACT_BYTES,
    MAX_MANIFEST_BYTES,
    MAX_REVISION,
    MAX_SIGNATURE_BYTES,
    OPA_BUNDLE,
    SIGNATURE,
    SIGNATURE_FORMAT,
    TrustError,
    b64decode,
    canonical_json,
    colliding_names,
    format_time,
    parse_time,
    read_bounded,
    shown,
    strict_json,
    unsafe_name_reason,
    utcnow,
)
from mcpdsl.trust.common import TrustInputError as _TrustInputError
from mcpdsl.trust.keys import KeyEntry, Keyring
from mcpdsl.trust.opa import verify_bundle

#: How far in the future a signature time may be (clock skew between machines).
CLOCK_SKEW = timedelta(minutes=5)
RESERVED = frozenset({MANIFEST, SIGNATURE})
SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class VerifiedBuild:
    """A build whose every artifact was checked; `files` holds the verified bytes."""

    path: Path
    key_id: str
    signed_at: datetime
    manifest_sha256: str
    revision: int | None = None  # None: signed before revisions existed
    files: Mapping[str, bytes] = field(repr=False, default_factory=dict)
    opa_bundle_files: tuple[str, ...] = ()

    def read(self, artifact: str) -> bytes:
        return self.files[artifact]


def signed_statement(
    key_id: str,
    manifest_sha256: str,
    signed_at: str,
    algorithms: tuple[str, ...] = ALGORITHMS,
    revision: int | None = None,
) -> dict[str, Any]:
    """What both algorithms sign.  `revision` (rollback protection) is part of it when
    present, so it cannot be changed without breaking the signatures; statements made
    before revisions existed have none."""
    statement: dict[str, Any] = {
        "format": SIGNATURE_FORMAT,
        "key_id": key_id,
        "algorithms": list(algorithms),
        "manifest_sha256": manifest_sha256,
        "signed_at": signed_at,
    }
    if revision is not None:
        statement["revision"] = revision
    return statement


def signing_input(statement: Mapping[str, Any]) -> bytes:
    """The bytes both algorithms sign: a domain prefix and the canonical statement."""
    return SIGNATURE_FORMAT.encode() + b"\x00" + canonical_json(dict(statement))


def safe_path(path: object) -> str:
    reason = unsafe_name_reason(path)
    if reason is not None or path in RESERVED:
        raise TrustError(
            f"manifest entry `{shown(path)}` is not a safe relative path", "unsafe-path"
        )
    return str(PurePosixPath(str(path)))


ENTRY_FIELDS = frozenset({"path", "sha256", "size"})


def parse_manifest(data: bytes) -> list[dict[str, Any]]:
    try:
        doc = strict_json(data)
    except ValueError as exc:
        raise TrustError(f"manifest.json is malformed: {exc}", "malformed") from None
    entries = doc.get("artifacts") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise TrustError("manifest.json is malformed: `artifacts` must be a list", "malformed")
    result: list[dict[str, Any]] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != ENTRY_FIELDS:
            raise TrustError(
                f"manifest.json is malformed: artifacts[{i}] must have exactly"
                " `path`, `sha256` and `size`",
                "malformed",
            )
        path = safe_path(entry["path"])
        digest, size = entry["sha256"], entry["size"]
        if not isinstance(digest, str) or not SHA256.fullmatch(digest):
            raise TrustError(
                f"manifest.json is malformed: `{shown(path)}` has no hex sha256", "malformed"
            )
        if type(size) is not int or not 0 <= size <= MAX_ARTIFACT_BYTES:
            raise TrustError(
                f"manifest.json is malformed: `{shown(path)}` size must be 0..{MAX_ARTIFACT_BYTES}",
                "malformed",
            )
        result.append({"path": path, "sha256": digest, "size": size})
    paths = [e["path"] for e in result]
    if len(set(paths)) != len(paths):
        raise TrustError("manifest.json lists a path twice", "malformed")
    collision = colliding_names(paths)
    if collision is not None:
        raise TrustError(
            f"manifest.json lists `{shown(collision[0])}` and `{shown(collision[1])}`, one file"
            " on case-insensitive file systems",
            "unsafe-path",
        )
    prefixes = {str(parent) for p in paths for parent in PurePosixPath(p).parents}
    clash = sorted(prefixes & set(paths))
    if clash:
        raise TrustError(
            f"manifest.json lists `{shown(clash[0])}` both as a file and as a directory",
            "malformed",
        )
    return result


def _regular_file(root: Path, rel: str) -> Path:
    path = root / rel
    for parent in [*reversed(PurePosixPath(rel).parents[:-1]), PurePosixPath(rel)]:
        if (root / parent).is_symlink():
            raise TrustError(f"artifact {rel} is not a regular file (symlink)", "unsafe-path")
    return path


def _read_manifest(root: Path) -> bytes:
    try:
        return read_bounded(root / MANIFEST, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise TrustError("manifest.json missing", "missing") from None
    except ValueError as exc:
        kind = "unsafe-path" if "symlink" in str(exc) or "regular" in str(exc) else "malformed"
        raise TrustError(f"manifest.json {exc}", kind) from None


def read_artifacts(root: Path) -> tuple[bytes, dict[str, bytes]]:
    """The manifest bytes and every artifact, checked against the manifest (hashes, extras)."""
    manifest = _read_manifest(root)
    entries = parse_manifest(manifest)
    files: dict[str, bytes] = {}
    for entry in entries:
        rel = entry["path"]
        path = _regular_file(root, rel)
        try:
            # One byte more than promised: a file that grew is a mismatch, not a huge read.
            data = read_bounded(path, entry["size"] + 1)
        except FileNotFoundError:
            raise TrustError(f"artifact {rel} missing", "missing") from None
        except ValueError as exc:
            if "larger" in str(exc):
                raise TrustError(f"artifact {rel} hash mismatch", "hash-mismatch") from None
            raise TrustError(f"artifact {rel} {exc}", "unsafe-path") from None
        if hashlib.sha256(data).hexdigest() != entry["sha256"] or len(data) != entry["size"]:
            raise TrustError(f"artifact {rel} hash mismatch", "hash-mismatch")
        files[rel] = data
    directories = {str(parent) for rel in files for parent in PurePosixPath(rel).parents}
    for extra, is_dir in _all_entries(root):
        if is_dir:
            if extra not in directories:
                raise TrustError(
                    f"unexpected directory {shown(extra)} is not in the manifest", "extra-file"
                )
        elif extra not in files and extra not in RESERVED:
            raise TrustError(f"unexpected file {shown(extra)} is not in the manifest", "extra-file")
    return manifest, files


def _all_entries(root: Path) -> list[tuple[str, bool]]:
    """Every name under `root`: (relative path, is a real directory); symlinks count as files."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in dirnames:
            rel = (base / name).relative_to(root).as_posix()
            found.append((rel, not (base / name).is_symlink()))
        found.extend(((base / name).relative_to(root).as_posix(), False) for name in filenames)
    return sorted(found)


SIGNATURE_FIELDS = frozenset(
    {"format", "key_id", "algorithms", "manifest_sha256", "signed_at", "revision", "signatures"}
)


def _load_signature(root: Path) -> dict[str, Any]:
    path = root / SIGNATURE
    try:
        data = read_bounded(path, MAX_SIGNATURE_BYTES)
    except FileNotFoundError:
        raise TrustError("signature.json missing", "missing") from None
    except ValueError as exc:
        raise TrustError(f"signature.json {exc}", "malformed") from None
    try:
        doc = strict_json(data)
    except ValueError as exc:
        raise TrustError(f"signature.json is malformed: {exc}", "malformed") from None
    if not isinstance(doc, dict):
        raise TrustError("signature.json is malformed: not an object", "malformed")
    unknown = sorted(set(doc) - SIGNATURE_FIELDS)
    if unknown:
        raise TrustError(f"signature.json has unknown field `{shown(unknown[0])}`", "malformed")
    if doc.get("format") != SIGNATURE_FORMAT:
        raise TrustError(f"signature.json format is not {SIGNATURE_FORMAT}", "malformed")
    for name in ("key_id", "manifest_sha256", "signed_at"):
        if not isinstance(doc.get(name), str):
            raise TrustError(f"signature.json lacks `{name}`", "malformed")
    if not SHA256.fullmatch(doc["manifest_sha256"]):
        raise TrustError("signature.json `manifest_sha256` is not a hex sha256", "malformed")
    if "revision" in doc:
        revision = doc["revision"]
        if type(revision) is not int or not 0 <= revision <= MAX_REVISION:
            raise TrustError(
                f"signature.json `revision` must be an integer 0..{MAX_REVISION}", "malformed"
            )
    signatures = doc.get("signatures", {})
    if not isinstance(signatures, dict):
        raise TrustError("signature.json `signatures` must be an object", "malformed")
    extra = sorted(set(signatures) - set(ALGORITHMS))
    if extra:
        raise TrustError(
            f"signature.json has unknown signature algorithm `{shown(extra[0])}`", "malformed"
        )
    return doc


def _check_signatures(doc: dict[str, Any], entry: KeyEntry) -> None:
    signatures = doc.get("signatures", {})
    statement = signed_statement(
        doc["key_id"], doc["manifest_sha256"], doc["signed_at"], revision=doc.get("revision")
    )
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


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return max((t for t in (a, b) if t is not None), default=None)


def _largest(a: int | None, b: int | None) -> int | None:
    return max((n for n in (a, b) if n is not None), default=None)


def check_freshness(
    signed_at: datetime,
    revision: int | None,
    *,
    not_before: datetime | None = None,
    min_revision: int | None = None,
) -> None:
    """Refuse a validly signed but older build (a rollback) with kind `rollback`.

    Both values are inside the signed statement, so an attacker who can only
    replay old builds cannot raise them.
    """
    if not_before is not None and signed_at < not_before:
        raise TrustError(
            f"build signed at {format_time(signed_at)} is older than the required"
            f" {format_time(not_before)} (rollback)",
            "rollback",
        )
    if min_revision is not None:
        if revision is None:
            raise TrustError(
                f"build has no signed revision and revision {min_revision} or later is"
                " required (rollback); re-sign it with this mcpdsl",
                "rollback",
            )
        if revision < min_revision:
            raise TrustError(
                f"build revision {revision} is older than the required revision"
                f" {min_revision} (rollback)",
                "rollback",
            )


def verify_build(
    path: str | os.PathLike[str],
    keyring: Keyring | str | os.PathLike[str],
    *,
    now: datetime | None = None,
    not_before: datetime | None = None,
    min_revision: int | None = None,
) -> VerifiedBuild:
    """Verify a signed build against a keyring; raise TrustError(reason) if refused.

    A keyring given as a path is loaded (a malformed keyring raises
    TrustInputError, which is a usage error, not a refusal).  `not_before` and
    `min_revision` refuse older builds (rollback); the keyring's own minimums
    (`not_before`, `min_revision` in its JSON) apply too, the stricter one wins.
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
    if hashlib.sha256(_read_manifest(root)).hexdigest() != doc["manifest_sha256"]:
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
    revision: int | None = doc.get("revision")
    check_freshness(
        signed_at,
        revision,
        not_before=_latest(not_before, keyring.min_signed_at),
        min_revision=_largest(min_revision, keyring.min_revision),
    )
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
        revision=revision,
        files=MappingProxyType(files),
        opa_bundle_files=opa_files,
    )
