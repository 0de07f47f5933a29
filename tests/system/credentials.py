"""Test keys, tokens and workload certificates for the system differential (made per run).

A provider's JWKS holds an RSA and an EC public key (each with a `kid` and its
`alg`); tokens are signed with the matching private keys.  The variants cover
what RUNTIME.md §5 says is denied everywhere (expired, forged, wrong audience,
wrong issuer, `alg: none`, garbage) besides the valid one.  Workload
certificates are real X.509 certificates with the SPIFFE id as URI SAN, issued
by a test mesh CA (or by a stranger CA for an untrusted peer).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from envoy_model import Peer

__all__ = ["TOKEN_VARIANTS", "Credentials", "peer_for"]

TOKEN_VARIANTS = (
    "valid",
    "valid-ec",
    "expired",
    "not-yet-valid",
    "wrong-audience",
    "wrong-issuer",
    "forged",
    "alg-none",
    "garbage",
)


@dataclass(frozen=True)
class Credentials:
    """One signing identity: the keys a provider's JWKS publishes, and a forger's key."""

    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    forger: rsa.RSAPrivateKey

    @staticmethod
    @functools.cache
    def make() -> Credentials:
        return Credentials(
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            ec.generate_private_key(ec.SECP256R1()),
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
        )

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key()))
        ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key()))
        return {
            "keys": [
                {**rsa_jwk, "kid": "test-rsa", "alg": "RS256", "use": "sig"},
                {**ec_jwk, "kid": "test-ec", "alg": "ES256", "use": "sig"},
            ]
        }

    def token(
        self,
        variant: str,
        claims: dict[str, Any],
        *,
        issuer: str,
        audience: str | None,
        now: float,
        skew: int,
    ) -> str:
        """A bearer token of `variant` carrying `claims` (plus iss/aud/iat/exp)."""
        body = {**claims, "iss": issuer, "iat": int(now), "exp": int(now) + 3600}
        if audience is not None:
            body["aud"] = audience
        key: Any = self.rsa
        alg, kid = "RS256", "test-rsa"
        if variant == "valid-ec":
            key, alg, kid = self.ec, "ES256", "test-ec"
        elif variant == "expired":
            body["exp"] = int(now) - skew - 600
        elif variant == "not-yet-valid":
            body["nbf"] = int(now) + skew + 600
        elif variant == "wrong-audience":
            body["aud"] = "https://someone-else.example"
        elif variant == "wrong-issuer":
            body["iss"] = "https://impostor.example"
        elif variant == "forged":
            key = self.forger
        elif variant == "alg-none":
            return _unsigned(body, kid)
        elif variant == "garbage":
            return "not.a.jwt"
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def _unsigned(body: dict[str, Any], kid: str) -> str:
    def part(obj: dict[str, Any]) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{part(body)}."


@functools.cache
def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


@functools.cache
def peer_for(spiffe_id: str, *, trusted: bool = True) -> Peer:
    """A workload certificate for `spiffe_id`, from the mesh CA or (untrusted) a stranger's."""
    ca_key, ca = _ca("mesh test CA" if trusted else "stranger CA")
    key = ec.generate_private_key(ec.SECP256R1())
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return Peer(uri_sans=(spiffe_id,), trusted=trusted, pem=pem)
