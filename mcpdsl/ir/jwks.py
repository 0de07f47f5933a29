"""A provider's `jwks file`: read through the safe reader and checked key by key.

One loader for the front end (which reports what is wrong, E0904) and the
Envoy target (which inlines the keys as `local_jwks`), so that a file the check
accepts is exactly the file the gateway is given.  Keys are parsed with PyJWT
(`jwt.PyJWK`), which knows the key types and algorithms; what this module adds
is the policy: public asymmetric signing keys only.

The check is split so that a caller can keep its verdicts: `load_jwks` reads the
file (which depends on the file system, so it always runs) and hands its bytes to
`parse_jwks`, a function of the bytes, of this module and of the PyJWT and
cryptography releases alone.  `mcpdsl check` passes a checker that stores those
verdicts in the user's cache directory (`mcpdsl.pipeline.jwks_cache`): importing
PyJWT and cryptography was a quarter of a warm `check --no-analyze`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mcpdsl.reader import read_regular

#: A JWKS is a handful of keys; anything near this size is not one.
MAX_JWKS_BYTES = 256 * 1024
#: Private members of RSA, EC and OKP keys (RFC 7518 section 6, RFC 8037).
_PRIVATE = ("d", "p", "q", "dp", "dq", "qi", "oth")


@dataclass(frozen=True)
class Jwks:
    """The keys of a JWKS file, canonically serialised, or why they are unusable."""

    text: str | None  # canonical JSON of `{"keys": [...]}` when usable
    problem: str | None  # lower-case reason when not


def in_tree(root: Path, relative: str) -> Path | None:
    """The file `relative` names under `root`, or None when it would leave the tree."""
    if Path(relative).is_absolute():
        return None
    try:
        path = (root / relative).resolve()
        path.relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):
        return None
    return path


#: Why one JWK cannot be used, or None (`key_problem`, `policy_problem`).
KeyCheck = Callable[[object], str | None]
#: A file's bytes to its verdict (`parse_jwks`, or one that remembers verdicts).
JwksCheck = Callable[[bytes], Jwks]


def load_jwks(root: str, relative: str, check: JwksCheck | None = None) -> Jwks:
    """Read and check the JWKS file `relative` of the tree at `root`.

    `check` turns the file's bytes into the verdict (`parse_jwks` when None); a
    caller may pass one that remembers verdicts, since they depend on nothing else.
    """
    path = in_tree(Path(root or "."), relative)
    if path is None:
        return Jwks(None, "it is outside the policy tree")
    try:
        data = read_regular(path, MAX_JWKS_BYTES)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return Jwks(None, f"it cannot be read: {reason[:1].lower()}{reason[1:]}")
    return parse_jwks(data) if check is None else check(data)


def parse_jwks(data: bytes, key_check: KeyCheck | None = None) -> Jwks:
    """The verdict on a JWKS file's bytes: its keys canonically, or why they are unusable.

    `key_check` judges each key (`key_problem` when None: the policy, then PyJWT).
    """
    check = key_problem if key_check is None else key_check
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return Jwks(None, f"it is not JSON ({str(exc)[:60].lower()})")
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        return Jwks(None, 'it is not a JWK set (no `"keys": [...]` member)')
    if not keys:
        return Jwks(None, "it holds no keys")
    for index, key in enumerate(keys):
        problem = check(key)
        if problem is not None:
            kid = key.get("kid") if isinstance(key, dict) else None
            name = f"`{kid}`" if isinstance(kid, str) and len(kid) <= 64 else f"number {index + 1}"
            return Jwks(None, f"key {name} {problem}")
    return Jwks(json.dumps({"keys": keys}, sort_keys=True, separators=(",", ":")), None)


def key_problem(key: object) -> str | None:
    """Why one JWK cannot verify tokens at a gateway, or None when it can."""
    problem = policy_problem(key)
    if problem is not None or not isinstance(key, dict):
        return problem
    import jwt  # PyJWT: imported here, the front end pays for it only with a `jwks file`

    try:
        jwt.PyJWK(key)
    except (jwt.exceptions.PyJWKError, jwt.exceptions.InvalidKeyError) as exc:
        return f"is not usable ({str(exc)[:80].lower().rstrip('.')})"
    except (TypeError, ValueError, KeyError) as exc:
        return f"is malformed ({str(exc)[:80].lower().rstrip('.')})"
    return None


def policy_problem(key: object) -> str | None:
    """What this project refuses in a JWK whatever PyJWT thinks of it, or None.

    Public asymmetric signing keys only.  Cheap and without PyJWT: a stored verdict
    that a file is usable is trusted for PyJWT's part only, these checks run again.
    """
    if not isinstance(key, dict):
        return "is not a JSON object"
    kty, alg = key.get("kty"), key.get("alg")
    if alg == "none" or (isinstance(alg, str) and alg.lower() == "none"):
        return "has `alg: none`, which accepts unsigned tokens"
    if kty == "oct":
        return "is a symmetric (`oct`) key: its secret would be shared with every gateway"
    if any(member in key for member in _PRIVATE):
        return "holds private key material; publish only the public key"
    if key.get("use") not in (None, "sig"):
        return f"is not a signing key (`use: {str(key.get('use'))[:20]}`)"
    return None
