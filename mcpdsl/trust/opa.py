"""Signed OPA bundles in OPA's own format (docs: "Bundle Signing").

A signed bundle carries `/.signatures.json` = `{"signatures": [JWT]}`.  The JWT
(here ES256, kid = the mcpdsl key id) has the claims
`{"files": [{"name", "hash", "algorithm": "SHA-256"}, ...], "keyid": ID}`
listing every other file of the bundle.  OPA hashes a file as follows
(`bundle/hash.go`, `bundle/verify.go`): files named `data.json`, `data.yaml`,
`.manifest` or `.signatures.json` are *structured*: parsed as JSON (numbers
kept as written) and hashed in a canonical form (object keys sorted, no
whitespace, strings encoded like Go's `encoding/json` without HTML escaping);
every other file is hashed as raw bytes.  File names are tar member names
without a leading `/`.

OPA verifies with a configuration like::

    keys:
      k1: {algorithm: ES256, key: <contents of KEYDIR/opa-es256.pem>}
    bundles:
      authz:
        resource: bundle.tar.gz
        signing: {keyid: k1}

No `scope` claim is written, so leave `scope` unset in OPA's configuration.
The JWT has no `iat` and ECDSA signs deterministically (RFC 6979), so signing
the same bundle with the same key gives the same bytes.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import posixpath
import tarfile
import zlib
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from mcpdsl.trust.common import (
    MAX_BUNDLE_MEMBERS,
    MAX_BUNDLE_TAR,
    MAX_BUNDLE_UNPACKED,
    OPA_ALGORITHM,
    TrustError,
    b64url,
    b64url_decode,
    canonical_json,
    colliding_names,
    shown,
    strict_json,
    unsafe_name_reason,
)

SIGNATURES_FILE = ".signatures.json"
STRUCTURED = frozenset({"data.json", "data.yaml", ".manifest", SIGNATURES_FILE})


class _Number(str):
    """A JSON number kept exactly as written (Go's json.Number, as OPA decodes it)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"`{name}` is not JSON")


def _go_string(text: str) -> str:
    """A JSON string as Go's encoder writes it with SetEscapeHTML(false)."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif code < 0x20 or ch in "\u2028\u2029":
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:  # a lone surrogate: Go decodes it to U+FFFD
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _walk(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value, key=lambda k: k.encode("utf-8", "surrogatepass"))):
            if i:
                out.append(",")
            out.append(_go_string(key))
            out.append(":")
            _walk(value[key], out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _walk(item, out)
        out.append("]")
    elif isinstance(value, _Number):
        out.append(str.__str__(value))
    elif isinstance(value, str):
        out.append(_go_string(value))
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    else:  # pragma: no cover - json.loads yields nothing else
        raise TypeError(type(value).__name__)


def canonical_structured(data: bytes) -> bytes:
    """The bytes OPA hashes for a structured file (raises ValueError if not JSON)."""
    value = json.loads(
        data.decode("utf-8"),
        parse_float=_Number,
        parse_int=_Number,
        parse_constant=_reject_constant,
    )
    out: list[str] = []
    _walk(value, out)
    return "".join(out).encode("utf-8", "surrogatepass")


def file_hash(name: str, data: bytes) -> str:
    """OPA's SHA-256 of one bundle file, hex."""
    if posixpath.basename(name) in STRUCTURED:
        try:
            data = canonical_structured(data)
        except RecursionError:
            raise TrustError(f"opa bundle: `{name}` is nested too deeply", "opa-bundle") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise TrustError(
                f"opa bundle: `{name}` is not valid JSON: {exc}", "opa-bundle"
            ) from None
    return hashlib.sha256(data).hexdigest()


def _member_name(info: tarfile.TarInfo) -> str:
    """The checked name of a tar member (a directory's trailing `/` dropped).

    OPA and any tool that unpacks the bundle join member names to a directory,
    so a name that could leave it, or mean another file elsewhere, is refused.
    """
    name = info.name[:-1] if info.isdir() and info.name.endswith("/") else info.name
    reason = unsafe_name_reason(name)
    if reason is not None:
        raise TrustError(f"opa bundle: member `{shown(name)}` {reason}", "opa-bundle")
    return name


def _members(bundle: bytes) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """The bundle's members, every name and type checked, reads bounded.

    Only regular files and directories are accepted: symlinks, hard links,
    devices and FIFOs are refused whatever they point at.  Names must be safe
    and distinct even ignoring case (one file on macOS/Windows).
    """
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    unpacked = 0
    tar_bytes = _gunzip_bounded(bundle, MAX_BUNDLE_TAR)
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            while (info := tar.next()) is not None:
                if len(members) >= MAX_BUNDLE_MEMBERS:
                    raise TrustError(
                        f"opa bundle: more than {MAX_BUNDLE_MEMBERS} members", "opa-bundle"
                    )
                name = _member_name(info)
                if info.isdir():
                    members.append((info, None))
                    continue
                if not info.isreg():
                    raise TrustError(
                        f"opa bundle: member `{shown(name)}` is not a regular file", "opa-bundle"
                    )
                unpacked += info.size
                if unpacked > MAX_BUNDLE_UNPACKED:
                    raise TrustError(
                        f"opa bundle: more than {MAX_BUNDLE_UNPACKED} bytes unpacked", "opa-bundle"
                    )
                handle = tar.extractfile(info)
                assert handle is not None
                members.append((info, handle.read(info.size)))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise TrustError(f"opa bundle: not a gzipped tar file ({exc})", "opa-bundle") from None
    names = [_name(info) for info, _ in members]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise TrustError(f"opa bundle: member `{shown(twice)}` appears twice", "opa-bundle")
    collision = colliding_names(names)
    if collision is not None:
        raise TrustError(
            f"opa bundle: members `{shown(collision[0])}` and `{shown(collision[1])}` are one"
            " file on case-insensitive file systems",
            "opa-bundle",
        )
    return members


def _gunzip_bounded(bundle: bytes, limit: int) -> bytes:
    """The tar stream inside a gzipped bundle, refused beyond `limit` bytes.

    tarfile reads a pax or GNU long-name header in one piece, whatever size it
    claims, before any member check can run: a 1 MB bundle of zeros behind a
    header claiming gigabytes would fill memory.  Decompressing with a bound
    first keeps every later read inside `limit` (gzip members concatenated, as
    gzip allows, are followed).
    """
    out: list[bytes] = []
    total = 0
    rest = bundle
    try:
        while rest:
            inflater = zlib.decompressobj(wbits=31)
            chunk = inflater.decompress(rest, limit - total + 1)
            total += len(chunk)
            out.append(chunk)
            if total > limit or inflater.unconsumed_tail:
                raise TrustError(
                    f"opa bundle: more than {limit} bytes once decompressed", "opa-bundle"
                )
            if not inflater.eof:
                raise TrustError("opa bundle: not a gzipped tar file (truncated)", "opa-bundle")
            rest = inflater.unused_data.lstrip(b"\0")  # zero padding, as gzip allows
    except zlib.error as exc:
        raise TrustError(f"opa bundle: not a gzipped tar file ({exc})", "opa-bundle") from None
    return b"".join(out)


def _name(info: tarfile.TarInfo) -> str:
    return info.name[:-1] if info.isdir() and info.name.endswith("/") else info.name


def _jwt(key_id: str, key: ec.EllipticCurvePrivateKey, files: list[dict[str, str]]) -> str:
    header = {"alg": OPA_ALGORITHM, "kid": key_id, "typ": "JWT"}
    claims = {"files": files, "keyid": key_id}
    signing_input = f"{b64url(canonical_json(header))}.{b64url(canonical_json(claims))}"
    der = key.sign(
        signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    )
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def sign_bundle(bundle: bytes, key_id: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The bundle with `/.signatures.json` (re)written; other members kept byte for byte."""
    members = [(i, d) for i, d in _members(bundle) if _name(i) != SIGNATURES_FILE]
    files = sorted(
        (
            {"name": _name(info), "hash": file_hash(_name(info), data), "algorithm": "SHA-256"}
            for info, data in members
            if data is not None
        ),
        key=lambda f: f["name"],
    )
    names = [f["name"] for f in files]
    if len(set(names)) != len(names):
        raise TrustError("opa bundle: a file appears twice in the tar", "opa-bundle")
    signatures = (json.dumps({"signatures": [_jwt(key_id, key, files)]}, indent=2) + "\n").encode()
    sig_info = tarfile.TarInfo(SIGNATURES_FILE)
    sig_info.size = len(signatures)
    sig_info.mode = 0o644
    sig_info.mtime = 0
    out = io.BytesIO()
    with (
        gzip.GzipFile(filename="", fileobj=out, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        pending = True  # keep a sorted tar sorted: the signatures go where their name sorts
        for info, data in members:
            if pending and _name(info) > SIGNATURES_FILE:
                tar.addfile(sig_info, io.BytesIO(signatures))
                pending = False
            tar.addfile(copy.copy(info), io.BytesIO(data) if data is not None else None)
        if pending:
            tar.addfile(sig_info, io.BytesIO(signatures))
    return out.getvalue()


def _verify_jwt(token: str, key_id: str, key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise TrustError("opa bundle: signature is not a compact JWT", "opa-bundle")
    try:
        header = strict_json(b64url_decode(parts[0]))
        claims = strict_json(b64url_decode(parts[1]))
        raw = b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise TrustError("opa bundle: JWT is not decodable", "opa-bundle") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TrustError("opa bundle: JWT is not decodable", "opa-bundle")
    if header.get("alg") != OPA_ALGORITHM:
        raise TrustError(f"opa bundle: JWT algorithm is not {OPA_ALGORITHM}", "opa-bundle")
    kid = header.get("kid") or claims.get("keyid")
    if kid != key_id:
        raise TrustError(f"opa bundle: JWT key id `{kid}` is not `{key_id}`", "opa-bundle")
    if len(raw) != 64:
        raise TrustError("opa bundle: JWT signature invalid", "opa-bundle")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        key.verify(der, f"{parts[0]}.{parts[1]}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise TrustError("opa bundle: JWT signature invalid", "opa-bundle") from None
    return claims


def verify_bundle(bundle: bytes, key_id: str, key: ec.EllipticCurvePublicKey) -> list[str]:
    """Check a signed bundle as OPA does; return the verified file names."""
    members = _members(bundle)
    signatures = [d for i, d in members if _name(i) == SIGNATURES_FILE and d is not None]
    if not signatures:
        raise TrustError(f"opa bundle: {SIGNATURES_FILE} missing", "opa-bundle")
    if len(signatures) > 1:
        raise TrustError(f"opa bundle: {SIGNATURES_FILE} appears twice", "opa-bundle")
    try:
        tokens = strict_json(signatures[0])["signatures"]
    except (ValueError, KeyError, TypeError):
        raise TrustError(f"opa bundle: {SIGNATURES_FILE} is malformed", "opa-bundle") from None
    if not isinstance(tokens, list) or len(tokens) != 1 or not isinstance(tokens[0], str):
        raise TrustError(f"opa bundle: {SIGNATURES_FILE} must hold exactly one JWT", "opa-bundle")
    claims = _verify_jwt(tokens[0], key_id, key)
    if "scope" in claims:
        raise TrustError("opa bundle: unexpected `scope` claim", "opa-bundle")
    listed: dict[str, dict[str, Any]] = {}
    for item in claims.get("files", []) if isinstance(claims.get("files"), list) else []:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            listed[item["name"]] = item
    checked = []
    for info, data in members:
        name = _name(info)
        if data is None or name == SIGNATURES_FILE:
            continue
        item = listed.pop(name, None)
        if item is None:
            raise TrustError(f"opa bundle: `{name}` is not included in the signature", "opa-bundle")
        if item.get("algorithm") != "SHA-256":
            raise TrustError(f"opa bundle: `{name}` is not hashed with SHA-256", "opa-bundle")
        if item.get("hash") != file_hash(name, data):
            raise TrustError(f"opa bundle: `{name}` digest mismatch", "opa-bundle")
        checked.append(name)
    if listed:
        raise TrustError(
            f"opa bundle: `{sorted(listed)[0]}` is signed but not in the bundle", "opa-bundle"
        )
    return sorted(checked)
