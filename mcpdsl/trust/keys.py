"""Signing keys, keyring entries and keyrings.

A *key* is three key pairs under one id, valid for one time window:

* Ed25519 and ML-DSA-65 (FIPS 204) sign the build manifest together (hybrid:
  a build is accepted only when both signatures verify, so it stays safe while
  either algorithm stands);
* ECDSA P-256 signs the OPA bundle as an ES256 JWT, the format OPA itself
  verifies (`opa run` with `keys:` and `signing:` configured).

`keys new` writes a key directory::

    DIR/key.json          key id, validity window, whether the PEMs are encrypted
    DIR/ed25519.pem       private keys, PKCS#8 PEM (mode 0600), optionally encrypted
    DIR/ml-dsa-65.pem
    DIR/es256.pem
    DIR/public.json       the keyring entry (public keys only): give this to verifiers
    DIR/opa-es256.pem     the ES256 public key, for OPA's `keys:` configuration

A *keyring* (JSON) is what a verifier trusts: many entries plus revocations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey, MLDSA65PublicKey

from mcpdsl.reader import read_regular
from mcpdsl.trust.common import (
    ENTRY_FORMAT,
    KEY_FORMAT,
    KEYRING_FORMAT,
    MAX_KEY_FILE_BYTES,
    MAX_REVISION,
    TrustInputError,
    format_time,
    parse_time,
    pretty_json,
    read_json,
    utcnow,
    write_file_atomically,
)

KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PRIVATE_FILES = {"ed25519": "ed25519.pem", "ml-dsa-65": "ml-dsa-65.pem", "es256": "es256.pem"}
DEFAULT_VALIDITY = timedelta(days=365)
REVOCATION_REASONS = ("compromised", "superseded")


def check_key_id(key_id: str) -> str:
    if not KEY_ID.match(key_id):
        raise TrustInputError(
            f"key id `{key_id}` is invalid: use 1-64 letters, digits, `.`, `_` or `-`"
        )
    return key_id


def _public_pem(key: Any) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


@dataclass(frozen=True)
class KeyEntry:
    """The public half of a key, as a verifier's keyring holds it."""

    key_id: str
    not_before: datetime
    not_after: datetime
    ed25519: str  # public keys, SubjectPublicKeyInfo PEM
    ml_dsa_65: str
    es256: str

    def to_json(self) -> dict[str, Any]:
        return {
            "format": ENTRY_FORMAT,
            "key_id": self.key_id,
            "not_before": format_time(self.not_before),
            "not_after": format_time(self.not_after),
            "public_keys": {
                "ed25519": self.ed25519,
                "ml-dsa-65": self.ml_dsa_65,
                "es256": self.es256,
            },
        }

    @classmethod
    def from_json(cls, obj: Any, where: str) -> KeyEntry:
        if not isinstance(obj, dict):
            raise TrustInputError(f"{where}: a key entry must be a JSON object")
        try:
            keys = obj["public_keys"]
            entry = cls(
                key_id=check_key_id(str(obj["key_id"])),
                not_before=parse_time(str(obj["not_before"]), "not_before"),
                not_after=parse_time(str(obj["not_after"]), "not_after"),
                ed25519=str(keys["ed25519"]),
                ml_dsa_65=str(keys["ml-dsa-65"]),
                es256=str(keys["es256"]),
            )
        except (KeyError, TypeError) as exc:
            raise TrustInputError(f"{where}: key entry lacks field {exc}") from None
        except TrustInputError as exc:
            raise TrustInputError(f"{where}: {exc}") from None
        for name in ("ed25519_key", "ml_dsa_65_key", "es256_key"):
            getattr(entry, name)(where)  # fail early on a malformed public key
        return entry

    def ed25519_key(self, where: str = "") -> Ed25519PublicKey:
        return _load_public(self.ed25519, Ed25519PublicKey, "ed25519", where or self.key_id)

    def ml_dsa_65_key(self, where: str = "") -> MLDSA65PublicKey:
        return _load_public(self.ml_dsa_65, MLDSA65PublicKey, "ml-dsa-65", where or self.key_id)

    def es256_key(self, where: str = "") -> ec.EllipticCurvePublicKey:
        key = _load_public(self.es256, ec.EllipticCurvePublicKey, "es256", where or self.key_id)
        if not isinstance(key.curve, ec.SECP256R1):
            raise TrustInputError(f"{where or self.key_id}: es256 key is not on curve P-256")
        return key


def _load_public(pem: str, kind: type, name: str, where: str) -> Any:
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise TrustInputError(f"{where}: {name} public key is not a valid PEM key") from None
    if not isinstance(key, kind):
        raise TrustInputError(f"{where}: {name} public key has the wrong type")
    return key


@dataclass(frozen=True)
class SigningKey:
    """The private half: what `mcpdsl sign` needs."""

    key_id: str
    not_before: datetime
    not_after: datetime
    ed25519: Ed25519PrivateKey
    ml_dsa_65: MLDSA65PrivateKey
    es256: ec.EllipticCurvePrivateKey

    @property
    def entry(self) -> KeyEntry:
        return KeyEntry(
            key_id=self.key_id,
            not_before=self.not_before,
            not_after=self.not_after,
            ed25519=_public_pem(self.ed25519.public_key()),
            ml_dsa_65=_public_pem(self.ml_dsa_65.public_key()),
            es256=_public_pem(self.es256.public_key()),
        )


def generate_key(
    key_id: str,
    out: Path,
    *,
    passphrase: bytes | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    force: bool = False,
) -> SigningKey:
    """Create a key directory (see the module docstring) and return the key."""
    check_key_id(key_id)
    not_before = not_before or utcnow()
    not_after = not_after or not_before + DEFAULT_VALIDITY
    if not_after <= not_before:
        raise TrustInputError("not_after must be later than not_before")
    names = [*PRIVATE_FILES.values(), "key.json", "public.json", "opa-es256.pem"]
    existing = [n for n in names if (out / n).exists()]
    if existing and not force:
        raise TrustInputError(
            f"`{out}` already holds a key ({existing[0]}); pass --force to replace it"
        )
    key = SigningKey(
        key_id=key_id,
        not_before=not_before,
        not_after=not_after,
        ed25519=Ed25519PrivateKey.generate(),
        ml_dsa_65=MLDSA65PrivateKey.generate(),
        es256=ec.generate_private_key(ec.SECP256R1()),
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    out.mkdir(parents=True, exist_ok=True)
    for algorithm, private in (
        ("ed25519", key.ed25519),
        ("ml-dsa-65", key.ml_dsa_65),
        ("es256", key.es256),
    ):
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )
        write_file_atomically(out / PRIVATE_FILES[algorithm], pem, mode=0o600)
    meta = {
        "format": KEY_FORMAT,
        "key_id": key_id,
        "not_before": format_time(not_before),
        "not_after": format_time(not_after),
        "encrypted": bool(passphrase),
        "private_keys": PRIVATE_FILES,
    }
    write_file_atomically(out / "key.json", pretty_json(meta), mode=0o600)
    write_file_atomically(out / "public.json", pretty_json(key.entry.to_json()))
    write_file_atomically(out / "opa-es256.pem", key.entry.es256.encode("ascii"))
    return key


def load_signing_key(path: Path, passphrase: bytes | None = None) -> SigningKey:
    """Load a key directory (or its `key.json`); wrong passphrases raise TrustInputError."""
    meta_path = path / "key.json" if path.is_dir() else path
    meta = read_json(meta_path, "key file")
    if not isinstance(meta, dict) or meta.get("format") != KEY_FORMAT:
        raise TrustInputError(f"`{meta_path}` is not an mcpdsl key file (format {KEY_FORMAT})")
    base = meta_path.parent
    try:
        key_id = check_key_id(str(meta["key_id"]))
        files = {alg: str(meta["private_keys"][alg]) for alg in PRIVATE_FILES}
        window = (
            parse_time(str(meta["not_before"]), "not_before"),
            parse_time(str(meta["not_after"]), "not_after"),
        )
    except (KeyError, TypeError) as exc:
        raise TrustInputError(f"`{meta_path}` lacks field {exc}") from None
    encrypted = bool(meta.get("encrypted"))
    if encrypted and not passphrase:
        raise TrustInputError(
            f"key `{key_id}` is encrypted; pass its passphrase with --passphrase-env"
        )
    loaded: dict[str, Any] = {}
    for algorithm, name in files.items():
        file = base / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise TrustInputError(
                f"`{meta_path}`: private key path `{name}` must be a plain file name"
            )
        try:
            data = read_regular(file, MAX_KEY_FILE_BYTES)
        except OSError as exc:
            raise TrustInputError(f"cannot read `{file}`: {exc.strerror}") from None
        try:
            loaded[algorithm] = serialization.load_pem_private_key(
                data, passphrase if encrypted else None
            )
        except ValueError as exc:
            if encrypted and "password" in str(exc).lower():
                raise TrustInputError(f"wrong passphrase for key `{key_id}`") from None
            raise TrustInputError(f"`{file}` is not a valid private key: {exc}") from None
        except TypeError:  # encrypted on disk although key.json says otherwise
            raise TrustInputError(
                f"`{file}` is encrypted; key.json of `{key_id}` says it is not"
            ) from None
    expected = {
        "ed25519": Ed25519PrivateKey,
        "ml-dsa-65": MLDSA65PrivateKey,
        "es256": ec.EllipticCurvePrivateKey,
    }
    for algorithm, kind in expected.items():
        if not isinstance(loaded[algorithm], kind):
            raise TrustInputError(f"`{base / files[algorithm]}` is not an {algorithm} private key")
    if not isinstance(loaded["es256"].curve, ec.SECP256R1):
        raise TrustInputError(f"`{base / files['es256']}` is not on curve P-256")
    return SigningKey(
        key_id=key_id,
        not_before=window[0],
        not_after=window[1],
        ed25519=loaded["ed25519"],
        ml_dsa_65=loaded["ml-dsa-65"],
        es256=loaded["es256"],
    )


@dataclass(frozen=True)
class Revocation:
    key_id: str
    revoked_at: datetime
    reason: str = "compromised"  # compromised: refuse every signature; superseded: from revoked_at

    def to_json(self) -> dict[str, str]:
        return {
            "key_id": self.key_id,
            "revoked_at": format_time(self.revoked_at),
            "reason": self.reason,
        }


@dataclass
class Keyring:
    """The keys a verifier trusts, and the ones it no longer trusts."""

    keys: dict[str, KeyEntry] = field(default_factory=dict)
    revoked: dict[str, Revocation] = field(default_factory=dict)
    #: Rollback protection: builds signed earlier, or with a lower signed revision, are
    #: refused by every verifier that uses this keyring (`mcpdsl keys pin`).
    min_signed_at: datetime | None = None
    min_revision: int | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": KEYRING_FORMAT,
            "keys": [self.keys[k].to_json() for k in sorted(self.keys)],
            "revoked": [self.revoked[k].to_json() for k in sorted(self.revoked)],
        }
        if self.min_signed_at is not None:
            doc["not_before"] = format_time(self.min_signed_at)
        if self.min_revision is not None:
            doc["min_revision"] = self.min_revision
        return doc

    def pin(
        self,
        not_before: datetime | None = None,
        min_revision: int | None = None,
        *,
        lower: bool = False,
    ) -> None:
        """Raise the rollback minimums; lowering one needs `lower=True` (it re-opens old builds)."""
        if min_revision is not None and not 0 <= min_revision <= MAX_REVISION:
            raise TrustInputError(f"min_revision must be 0..{MAX_REVISION}")
        if not lower:
            if not_before is not None and self.min_signed_at and not_before < self.min_signed_at:
                raise TrustInputError(
                    f"keyring already requires builds signed at or after"
                    f" {format_time(self.min_signed_at)}; lowering it needs --lower"
                )
            if min_revision is not None and (self.min_revision or 0) > min_revision:
                raise TrustInputError(
                    f"keyring already requires revision {self.min_revision} or later;"
                    " lowering it needs --lower"
                )
        if not_before is not None:
            self.min_signed_at = not_before
        if min_revision is not None:
            self.min_revision = min_revision

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Keyring:
        """A keyring, or a single key entry (a `public.json`) trusted on its own."""
        if isinstance(obj, dict) and obj.get("format") == ENTRY_FORMAT:
            entry = KeyEntry.from_json(obj, where)
            return cls(keys={entry.key_id: entry})
        if not isinstance(obj, dict) or obj.get("format") != KEYRING_FORMAT:
            raise TrustInputError(f"`{where}` is not a keyring (format {KEYRING_FORMAT})")
        ring = cls()
        entries = obj.get("keys", [])
        revoked = obj.get("revoked", [])
        if not isinstance(entries, list) or not isinstance(revoked, list):
            raise TrustInputError(f"`{where}`: `keys` and `revoked` must be lists")
        for i, item in enumerate(entries):
            entry = KeyEntry.from_json(item, f"{where}: keys[{i}]")
            if entry.key_id in ring.keys:
                raise TrustInputError(f"`{where}`: key id `{entry.key_id}` appears twice")
            ring.keys[entry.key_id] = entry
        for i, item in enumerate(revoked):
            try:
                rev = Revocation(
                    key_id=check_key_id(str(item["key_id"])),
                    revoked_at=parse_time(str(item["revoked_at"]), "revoked_at"),
                    reason=str(item.get("reason", "compromised")),
                )
            except (KeyError, TypeError, AttributeError):
                raise TrustInputError(
                    f"`{where}`: revoked[{i}] needs `key_id` and `revoked_at`"
                ) from None
            if rev.reason not in REVOCATION_REASONS:
                raise TrustInputError(
                    f"`{where}`: revoked[{i}] has unknown reason `{rev.reason}`"
                    f" (known: {', '.join(REVOCATION_REASONS)})"
                )
            ring.revoked[rev.key_id] = rev
        if obj.get("not_before") is not None:
            ring.min_signed_at = parse_time(str(obj["not_before"]), f"`{where}`: not_before")
        minimum = obj.get("min_revision")
        if minimum is not None:
            if type(minimum) is not int or not 0 <= minimum <= MAX_REVISION:
                raise TrustInputError(
                    f"`{where}`: min_revision must be an integer 0..{MAX_REVISION}"
                )
            ring.min_revision = minimum
        return ring

    @classmethod
    def load(cls, path: str | Path) -> Keyring:
        path = Path(path)
        return cls.from_json(read_json(path, "keyring"), str(path))

    def save(self, path: str | Path) -> None:
        write_file_atomically(Path(path), pretty_json(self.to_json()))

    def add(self, entry: KeyEntry) -> bool:
        """Add an entry; False when the same entry is already there (re-adding is a no-op)."""
        current = self.keys.get(entry.key_id)
        if current == entry:
            return False
        if current is not None:
            raise TrustInputError(
                f"keyring already has a different key `{entry.key_id}`; key ids are never reused"
            )
        self.keys[entry.key_id] = entry
        return True

    def revoke(
        self, key_id: str, at: datetime | None = None, reason: str = "compromised"
    ) -> Revocation:
        if key_id not in self.keys:
            raise TrustInputError(f"keyring has no key `{key_id}`")
        if reason not in REVOCATION_REASONS:
            raise TrustInputError(
                f"unknown revocation reason `{reason}` (known: {', '.join(REVOCATION_REASONS)})"
            )
        rev = Revocation(key_id=key_id, revoked_at=at or utcnow(), reason=reason)
        self.revoked[key_id] = rev
        return rev
