"""Identity in the language: providers, the mesh, gateway TLS, accepted providers, trusted headers.

Each misuse is a coded diagnostic, never a traceback; hostile JWKS files
(malformed, huge, deeply nested, `alg: none`, symmetric or private keys) are
refused with E0904.
"""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpdsl.ir import model as m
from mcpdsl.ir.identity import with_jwks_keys
from mcpdsl.ir.jwks import load_jwks
from mcpdsl.pipeline import compile_tree

SERVICE = """
service api {
  image "ghcr.io/shop/api:1.0"
  port  8080
  stateful
}

balance api {
  strategy round-robin
}
"""


def build(
    tmp: Path, text: str, files: dict[str, str] | None = None
) -> tuple[m.Project | None, list[str]]:
    (tmp / "main.mcp").write_text("package shop\n" + text, encoding="utf-8")
    for name, content in (files or {}).items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(content, encoding="utf-8")
    c = compile_tree(tmp)
    return c.project, [d.code for d in c.diagnostics]


def public_jwk() -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", alg="ES256", use="sig")
    return jwk  # type: ignore[no-any-return]


PROVIDER = """
provider idp {
  issuer    "https://login.example.com/"
  jwks      url "https://login.example.com/jwks.json"
  audiences ["desk"]
  skew      30s
  claims    { id: "uid", email: "mail", groups: "roles" }
  mfa       "acr" in ["hwk"]
  type      agent
}
"""


def test_provider_lowers_every_clause(tmp_path: Path) -> None:
    project, codes = build(tmp_path, PROVIDER)
    assert codes == []
    assert project is not None
    (p,) = project.providers
    assert (p.issuer, p.jwks_uri, p.jwks_file) == (
        "https://login.example.com/",
        "https://login.example.com/jwks.json",
        None,
    )
    assert (p.audiences, p.clock_skew, p.principal_type, p.type_claim) == (
        ("desk",),
        30,
        "agent",
        None,
    )
    assert (p.id_claim, p.email_claim, p.groups_claim) == ("uid", "mail", "roles")
    assert (p.mfa_claim, p.mfa_values) == ("acr", ("hwk",))


def test_gateway_identity_clauses_lower_and_bind(tmp_path: Path) -> None:
    project, codes = build(
        tmp_path,
        PROVIDER
        + SERVICE
        + """
mesh shop { trust domain "shop.local" }
gateway public {
  listen 8443
  tls { cert file "tls/c.pem" key "tls/k.pem" clients required ca file "tls/ca.pem" }
  accept [idp]
  trust header "X-Geo" as context.geo string from ["10.0.0.0/8", "fd00::/8"]
  trust header "x-tier" as context.customer.tier
  trust header "x-n" as context.n number
  route "/**" -> service api
}
""",
    )
    assert codes == []
    assert project is not None
    gw = project.gateways[0]
    assert gw.tls == m.GatewayTls(
        cert_file="tls/c.pem",
        key_file="tls/k.pem",
        client_certs="required",
        client_ca_file="tls/ca.pem",
    )
    assert gw.providers == (m.Ref(package="shop", name="idp"),)
    assert [(h.header, h.attribute, h.type, h.sources) for h in gw.trusted_headers] == [
        ("x-geo", ("geo",), "string", ("10.0.0.0/8", "fd00::/8")),
        ("x-tier", ("customer", "tier"), "string", ()),
        ("x-n", ("n",), "number", ()),
    ]
    assert project.meshes[0].trust_domain == "shop.local"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('provider p { jwks url "https://a/j" }', "E0901"),
        ('provider p { issuer "" jwks url "https://a/j" }', "E0901"),
        ('provider p { issuer "https://a" }', "E0902"),
        ('provider p { issuer "https://a" jwks url "https://a/j" jwks file "k.json" }', "E0902"),
        ('provider p { issuer "https://a" jwks url "http://a/j" }', "E0903"),
        ('provider p { issuer "https://a" jwks url "https://" }', "E0903"),
        ('provider p { issuer "https://a" jwks url "https://a:99999/j" }', "E0903"),
        ('provider p { issuer "https://a" jwks url "https://u:pw@a/j" }', "E0903"),
        ('provider p { issuer "https://a" jwks file "../outside.json" }', "E0206"),
        ('provider p { issuer "https://a" jwks file "missing.json" }', "E0904"),
        ('provider p { issuer "https://a" jwks url "https://a/j" skew 1h }', "E0303"),
        ('provider p { issuer "https://a" jwks url "https://a/j" type robot }', "E0204"),
        ('provider p { issuer "https://a" jwks url "https://a/j" claims { name: "n" } }', "E0204"),
        ('mesh a { trust domain "A B" }', "E0206"),
        ('mesh a { trust domain "a.local" } mesh b { trust domain "b.local" }', "E0907"),
    ],
)
def test_provider_and_mesh_misuse(tmp_path: Path, text: str, code: str) -> None:
    _, codes = build(tmp_path, text)
    assert code in codes


def gateway(clauses: str) -> str:
    return SERVICE + f'gateway g {{\n  listen 8443\n{clauses}\n  route "/**" -> service api\n}}\n'


@pytest.mark.parametrize(
    ("clauses", "code"),
    [
        ("accept [idq]", "E0402"),
        ('trust header "host" as context.h', "E0908"),
        ('trust header "authorization" as context.token', "E0908"),
        ('trust header "x-envoy-original-path" as context.p', "E0908"),
        ('trust header ":path" as context.p', "E0908"),
        ('trust header "connection" as context.c', "E0908"),
        ('trust header "x-a" as context.a trust header "X-A" as context.b', "E0909"),
        ('trust header "x-a" as context.a trust header "x-b" as context.a', "E0909"),
        ('trust header "x-a" as context.a from ["10.0.0.1/8"]', "E0911"),
        ('trust header "x-a" as context.a from ["not a network"]', "E0911"),
        ('trust header "x-a" as context.a from []', "E0911"),
        ('trust header "x-a" as context.a float', "E0204"),
        ('trust header "x-a" as principal.id', "E0206"),
        ('trust header "bad header" as context.a', "E0206"),
        ("tls { clients required }", "E0910"),
        ('tls { cert sds "default" clients optional }', "E0910"),
        ('tls { cert sds "a" cert sds "b" }', "E0201"),
        ('tls { cert sds "a" clients sometimes ca sds "r" }', "E0204"),
    ],
)
def test_gateway_identity_misuse(tmp_path: Path, clauses: str, code: str) -> None:
    _, codes = build(tmp_path, PROVIDER.replace("provider idp", "provider idp") + gateway(clauses))
    assert code in codes


def test_service_identity_must_match_namespace_and_mesh(tmp_path: Path) -> None:
    base = 'service api {{ image "a/b:1" port 80 stateful namespace "core" identity "{}" }}\n'
    _, codes = build(
        tmp_path,
        base.format("spiffe://shop.local/ns/core/sa/api") + 'mesh m { trust domain "shop.local" }',
    )
    assert "E0905" not in codes and "E0906" not in codes
    _, codes = build(
        tmp_path,
        base.format("spiffe://shop.local/ns/web/sa/api") + 'mesh m { trust domain "shop.local" }',
    )
    assert "E0905" in codes
    _, codes = build(
        tmp_path,
        base.format("spiffe://other.local/ns/core/sa/api") + 'mesh m { trust domain "shop.local" }',
    )
    assert "E0906" in codes


def test_rules_for_verified_principals_warn_only_without_providers(tmp_path: Path) -> None:
    policy = "policy p { default deny\n  allow user any -> service api when request.auth.mfa }\n"
    _, codes = build(tmp_path, PROVIDER + gateway("") + policy)
    assert "W0111" in codes
    _, codes = build(tmp_path, PROVIDER + gateway("accept [idp]") + policy)
    assert "W0111" not in codes
    service_rule = "policy p { default deny\n  allow service any -> service api }\n"
    _, codes = build(tmp_path, PROVIDER + gateway("") + service_rule)
    assert "W0111" not in codes


# ------------------------------------------------------------------ JWKS files


def jwks_codes(tmp: Path, content: str | bytes) -> list[str]:
    path = tmp / "keys.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    _, codes = build(tmp, 'provider p { issuer "https://a" jwks file "keys.json" }')
    return codes


def test_a_public_signing_key_is_accepted_and_canonical(tmp_path: Path) -> None:
    key = public_jwk()
    assert jwks_codes(tmp_path, json.dumps({"keys": [key]}, indent=4)) == []
    loaded = load_jwks(str(tmp_path), "keys.json")
    assert loaded.problem is None and json.loads(loaded.text or "") == {"keys": [key]}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JWK set"),
        ('{"keys": []}', "holds no keys"),
        ('{"keys": [1]}', "not a JSON object"),
        ('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "symmetric"),
        ('{"keys": [{"kty": "RSA", "alg": "none", "n": "AQAB", "e": "AQAB"}]}', "alg: none"),
        ('{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}', "not usable"),
        ('{"keys": [{"kty": "banana"}]}', "not usable"),
        ("[" * 100000 + "]" * 100000, "not JSON"),
        ('{"keys": "everything"}', "not a JWK set"),
    ],
)
def test_hostile_jwks_files_are_refused(tmp_path: Path, content: str, reason: str) -> None:
    (tmp_path / "keys.json").write_text(content, encoding="utf-8")
    loaded = load_jwks(str(tmp_path), "keys.json")
    assert loaded.text is None and reason in (loaded.problem or "")
    assert "E0904" in jwks_codes(tmp_path, content)


def test_private_and_encryption_keys_are_refused(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    private = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))
    assert "E0904" in jwks_codes(tmp_path, json.dumps({"keys": [private]}))
    enc = {**public_jwk(), "use": "enc"}
    assert "E0904" in jwks_codes(tmp_path, json.dumps({"keys": [enc]}))


def test_oversized_binary_and_special_jwks_files_are_refused(tmp_path: Path) -> None:
    assert "E0904" in jwks_codes(tmp_path, b"{" + b" " * (300 * 1024) + b"}")
    assert "E0904" in jwks_codes(tmp_path, b"\xff\xfe\x00garbage")
    (tmp_path / "keys.json").unlink()
    (tmp_path / "keys.json").mkdir()
    _, codes = build(tmp_path, 'provider p { issuer "https://a" jwks file "keys.json" }')
    assert "E0904" in codes


@settings(max_examples=40, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=12))  # fmt: skip
def test_any_json_is_a_verdict_never_a_traceback(
    tmp_path_factory: pytest.TempPathFactory, doc: object
) -> None:
    tmp = tmp_path_factory.mktemp("jwks")
    (tmp / "keys.json").write_text(json.dumps({"keys": [doc]}), encoding="utf-8")
    loaded = load_jwks(str(tmp), "keys.json")
    assert (loaded.text is None) != (loaded.problem is None)


def test_tls_files_are_paths_of_the_gateway_container(tmp_path: Path) -> None:
    tls = 'tls { cert file "/etc/envoy/tls/c.pem" key "/etc/envoy/tls/k.pem" clients required ca file "/etc/envoy/ca.pem" }'
    project, codes = build(tmp_path, gateway(tls))
    assert codes == [] and project is not None
    assert project.gateways[0].tls is not None
    assert project.gateways[0].tls.cert_file == "/etc/envoy/tls/c.pem"
    _, codes = build(tmp_path, gateway('tls { cert file "" key "k.pem" }'))
    assert "E0206" in codes


def test_huge_values_give_bounded_diagnostics(tmp_path: Path) -> None:
    url = "http://" + "a" * 60000
    (tmp_path / "main.mcp").write_text(
        f'package shop\nprovider p {{ issuer "https://a" jwks url "{url}" skew 99999999999999999999s }}\n'
        + gateway(f'trust header "{"x" * 50000}" as context.{"a" * 1000} from ["{"1" * 5000}"]'),
        encoding="utf-8",
    )
    c = compile_tree(tmp_path)
    codes = {d.code for d in c.diagnostics}
    assert {"E0903", "E0911"} <= codes
    assert all(len(d.message) < 400 for d in c.diagnostics)


def test_the_ir_carries_the_keys_of_a_jwks_file(tmp_path: Path) -> None:
    """A build, a bare `ir/project.json` or a ConfigMap has no tree: the IR holds the keys."""
    jwk = public_jwk()
    text = 'provider p { issuer "https://a" jwks file "keys/k.json" audiences ["x"] }'
    project, found = build(tmp_path, text, {"keys/k.json": json.dumps({"keys": [jwk]})})
    assert project is not None and "E0904" not in found
    (provider,) = project.providers
    assert provider.jwks_keys == load_jwks(str(tmp_path), "keys/k.json").text
    assert json.loads(provider.jwks_keys or "") == {"keys": [jwk]}
    back = m.Project.model_validate_json(project.canonical_json())
    assert back.providers[0].jwks_keys == provider.jwks_keys
    # An unusable file inlines nothing (E0904 says why).
    (tmp_path / "keys" / "k.json").write_text("{}")
    again = with_jwks_keys(project)
    assert again.providers[0].jwks_keys is None
