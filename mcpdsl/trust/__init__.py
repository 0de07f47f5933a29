"""Trusted delivery: hybrid-signed builds and OPA-signed bundles.

    from mcpdsl.trust import Keyring, load_signing_key, sign_build, verify_build

    key = load_signing_key(Path("keys/k1"), passphrase=b"...")
    sign_build("build", key)                       # BUILD/signature.json (+ signed OPA bundle)
    verified = verify_build("build", Keyring.load("trust.json"))   # or raises TrustError
    verified.files["opa/bundle.tar.gz"]            # the bytes that were verified

Modules: `keys` (key directories, keyring entries, keyrings), `opa` (OPA's
bundle-signing format), `sign`, `verify`; `common` holds the formats and errors.
See docs/trust.md for the threat model and key rotation.
"""

from __future__ import annotations

from mcpdsl.trust.common import ALGORITHMS, TrustError, TrustInputError
from mcpdsl.trust.keys import (
    KeyEntry,
    Keyring,
    Revocation,
    SigningKey,
    generate_key,
    load_signing_key,
)
from mcpdsl.trust.sign import SignResult, sign_build
from mcpdsl.trust.verify import VerifiedBuild, verify_build

__all__ = [
    "ALGORITHMS",
    "KeyEntry",
    "Keyring",
    "Revocation",
    "SignResult",
    "SigningKey",
    "TrustError",
    "TrustInputError",
    "VerifiedBuild",
    "generate_key",
    "load_signing_key",
    "sign_build",
    "verify_build",
]
