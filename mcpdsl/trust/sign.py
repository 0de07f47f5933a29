"""`sign_build`: sign the OPA bundle (OPA's format), then the manifest (hybrid).

Ordering matters: signing the OPA bundle rewrites `opa/bundle.tar.gz` (it gains
`/.signatures.json`), which changes its manifest entry, which changes the
manifest; so the bundle is signed first, the manifest entry updated, and the
final manifest signed last.  The build is rewritten as a whole with
`mcpdsl.builder.artifacts.write_atomically`: a reader sees the unsigned build or the
signed one, never a mix.

A build is signed only if it matches its own manifest (no tampered, missing or
extra files): signing vouches for exactly what the compiler produced.

`signature.json` is the one artifact that differs between two signings of the
same build (its `signed_at`, and ML-DSA signatures are randomised); it is not
listed in the manifest, because it signs the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from mcpdsl.trust.common import (
    ALGORITHMS,
    MANIFEST,
    MAX_REVISION,
    OPA_BUNDLE,
    SIGNATURE,
    TrustError,
    TrustInputError,
    b64encode,
    format_time,
    pretty_json,
    utcnow,
)
from mcpdsl.trust.keys import SigningKey
from mcpdsl.trust.opa import sign_bundle
from mcpdsl.trust.verify import read_artifacts, signed_statement, signing_input


@dataclass(frozen=True)
class SignResult:
    path: Path
    key_id: str
    signed_at: datetime
    manifest_sha256: str
    artifacts: int
    revision: int
    opa_bundle_signed: bool


def _update_manifest(manifest: bytes, changed: dict[str, bytes]) -> bytes:
    from mcpdsl.compile.serialize import dump_json

    doc = json.loads(manifest)
    for entry in doc["artifacts"]:
        if entry["path"] in changed:
            data = changed[entry["path"]]
            entry["sha256"] = hashlib.sha256(data).hexdigest()
            entry["size"] = len(data)
    return dump_json(doc)


def sign_build(
    path: str | os.PathLike[str],
    key: SigningKey,
    *,
    now: datetime | None = None,
    revision: int | None = None,
) -> SignResult:
    """Sign a build in place; raise TrustError if the build does not match its manifest.

    `revision` is signed with the build so verifiers can refuse older builds
    (rollback); it defaults to the signing time in Unix seconds, which grows with
    every signing as long as the signer's clock does.
    """
    from mcpdsl.builder.artifacts import write_atomically
    from mcpdsl.compile import Artifact

    root = Path(path)
    now = (now or utcnow()).replace(microsecond=0)
    if now < key.not_before:
        raise TrustError(
            f"key {key.key_id} not valid before {format_time(key.not_before)}", "not-yet-valid"
        )
    if now > key.not_after:
        raise TrustError(f"key {key.key_id} expired at {format_time(key.not_after)}", "expired")
    if revision is None:
        revision = int(now.timestamp())
    if type(revision) is not int or not 0 <= revision <= MAX_REVISION:
        raise TrustInputError(f"revision must be an integer 0..{MAX_REVISION}")
    if not root.is_dir():
        raise TrustError(f"build `{root}` is not a directory", "missing")
    manifest, files = read_artifacts(root)
    changed: dict[str, bytes] = {}
    if OPA_BUNDLE in files:
        changed[OPA_BUNDLE] = sign_bundle(files[OPA_BUNDLE], key.key_id, key.es256)
        files[OPA_BUNDLE] = changed[OPA_BUNDLE]
    if changed:
        manifest = _update_manifest(manifest, changed)
    digest = hashlib.sha256(manifest).hexdigest()
    statement = signed_statement(key.key_id, digest, format_time(now), revision=revision)
    message = signing_input(statement)
    signature = {
        **statement,
        "signatures": {
            "ed25519": b64encode(key.ed25519.sign(message)),
            "ml-dsa-65": b64encode(key.ml_dsa_65.sign(message)),
        },
    }
    assert tuple(statement["algorithms"]) == ALGORITHMS
    artifacts = [Artifact(p, files[p]) for p in sorted(files)]
    artifacts.append(Artifact(MANIFEST, manifest))
    artifacts.append(Artifact(SIGNATURE, pretty_json(signature)))
    write_atomically(root, artifacts)
    return SignResult(
        path=root,
        key_id=key.key_id,
        signed_at=now,
        manifest_sha256=digest,
        artifacts=len(files),
        revision=revision,
        opa_bundle_signed=OPA_BUNDLE in changed,
    )
