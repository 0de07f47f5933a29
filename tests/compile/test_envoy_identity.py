"""The Envoy edge for identity: downstream TLS, jwt_authn, ext_authz metadata, header stripping.

Every bootstrap is validated against the real xds protos with PGV rules
(tests/validators.py); the shape checks pin the contract other parts rely on
(payload metadata keyed by the provider's qualified name).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from validators import validate_envoy_bootstrap

from mcpdsl._version import __version__
from mcpdsl.compile import TargetContext, envoy
from mcpdsl.compile.envoy_identity import JWT_METADATA_NAMESPACE, SDS_CLUSTER
from mcpdsl.pipeline import compile_tree

TREE = """package edge

provider people {
  issuer    "https://login.example.com/"
  jwks      url "https://login.example.com:8443/jwks.json"
  audiences ["edge"]
  skew      45s
}

provider bots {
  issuer "https://bots.example.com"
  jwks   file "bots.jwks.json"
  type   agent
}

service api {
  image "ghcr.io/edge/api:1.0"
  port  8080
  stateful
}

balance api {
  strategy round-robin
}

gateway public {
  listen 8443
  tls { %s }
  accept [people, bots]
  trust header "x-geo" as context.geo from ["10.0.0.0/8"]
  trust header "x-tier" as context.tier
  trust header "x-internal" as context.internal bool
  route "/**" -> service api
}

policy p {
  default deny
  allow user any -> service api when context.geo == "SE" and request.auth.mfa
}
"""


def bootstrap(tmp: Path, tls: str = 'cert sds "default"') -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="b1", alg="ES256")
    (tmp / "bots.jwks.json").write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
    (tmp / "main.mcp").write_text(TREE % tls, encoding="utf-8")
    c = compile_tree(tmp)
    assert c.project is not None and not c.has_errors, [d.message for d in c.diagnostics]
    out = envoy.compile(c.project, TargetContext(version=__version__))
    doc: dict[str, Any] = json.loads(out.artifacts[0].content)
    assert validate_envoy_bootstrap(doc) == []
    return doc


def chain(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["static_resources"]["listeners"][0]["filter_chains"][0]  # type: ignore[no-any-return]


def hcm(doc: dict[str, Any]) -> dict[str, Any]:
    return chain(doc)["filters"][0]["typed_config"]  # type: ignore[no-any-return]


def filters(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f["typed_config"] for f in hcm(doc)["http_filters"]}


def test_jwt_authn_runs_before_every_access_filter(tmp_path: Path) -> None:
    names = [f["name"] for f in hcm(bootstrap(tmp_path))["http_filters"]]
    assert names[0] == "envoy.filters.http.header_mutation.untrusted"
    jwt_at = names.index("envoy.filters.http.jwt_authn")
    assert all(jwt_at < i for i, n in enumerate(names) if "rbac" in n or "ext_authz" in n)
    assert names[-1] == "envoy.filters.http.router"


def test_one_provider_per_accepted_provider_with_payload_in_metadata(tmp_path: Path) -> None:
    config = filters(bootstrap(tmp_path))["envoy.filters.http.jwt_authn"]
    people, bots = config["providers"]["edge.people"], config["providers"]["edge.bots"]
    assert people["payload_in_metadata"] == "edge.people"
    assert bots["payload_in_metadata"] == "edge.bots"
    assert people["issuer"] == "https://login.example.com/" and people["audiences"] == ["edge"]
    assert people["clock_skew_seconds"] == 45 and people["forward"] is False
    assert people["remote_jwks"]["http_uri"]["cluster"] == "jwks:login.example.com:8443"
    assert json.loads(bots["local_jwks"]["inline_string"])["keys"][0]["kid"] == "b1"
    (rule,) = config["rules"]
    assert rule["requires"]["requires_any"]["requirements"] == [
        {"provider_name": "edge.people"},
        {"provider_name": "edge.bots"},
        {"allow_missing": {}},
    ]


def test_jwks_cluster_verifies_the_host(tmp_path: Path) -> None:
    clusters = {c["name"]: c for c in bootstrap(tmp_path)["static_resources"]["clusters"]}
    jwks = clusters["jwks:login.example.com:8443"]
    context = jwks["transport_socket"]["typed_config"]
    assert context["sni"] == "login.example.com"
    assert context["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]


def test_ext_authz_receives_jwt_metadata_and_the_peer_certificate(tmp_path: Path) -> None:
    authz = filters(bootstrap(tmp_path))["envoy.filters.http.ext_authz"]
    assert authz["metadata_context_namespaces"] == [JWT_METADATA_NAMESPACE]
    assert authz["include_peer_certificate"] is True


def test_trusted_headers_without_sources_are_stripped_first(tmp_path: Path) -> None:
    doc = bootstrap(tmp_path)
    strip = filters(doc)["envoy.filters.http.header_mutation.untrusted"]
    removed = [m["remove"] for m in strip["mutations"]["request_mutations"]]
    assert removed == ["x-internal", "x-tier"]  # x-geo has `from`: it passes
    assert hcm(doc)["route_config"]["request_headers_to_remove"] == ["x-internal", "x-tier"]


def test_downstream_tls_from_sds_with_required_client_certificates(tmp_path: Path) -> None:
    doc = bootstrap(tmp_path, 'cert sds "default" clients required ca sds "ROOTCA"')
    context = chain(doc)["transport_socket"]["typed_config"]
    assert context["require_client_certificate"] is True
    common = context["common_tls_context"]
    assert common["tls_certificate_sds_secret_configs"][0]["name"] == "default"
    assert common["validation_context_sds_secret_config"]["name"] == "ROOTCA"
    assert SDS_CLUSTER in {c["name"] for c in doc["static_resources"]["clusters"]}


def test_downstream_tls_from_files_with_optional_client_certificates(tmp_path: Path) -> None:
    doc = bootstrap(
        tmp_path, 'cert file "tls/c.pem" key "tls/k.pem" clients optional ca file "tls/ca.pem"'
    )
    context = chain(doc)["transport_socket"]["typed_config"]
    assert "require_client_certificate" not in context
    common = context["common_tls_context"]
    assert common["tls_certificates"] == [
        {"certificate_chain": {"filename": "tls/c.pem"}, "private_key": {"filename": "tls/k.pem"}}
    ]
    assert common["validation_context"] == {"trusted_ca": {"filename": "tls/ca.pem"}}
    assert SDS_CLUSTER not in {c["name"] for c in doc["static_resources"]["clusters"]}


def test_a_gateway_without_identity_is_unchanged(tmp_path: Path) -> None:
    text = TREE.replace("  tls { %s }\n", "").replace("  accept [people, bots]\n", "")
    text = "\n".join(line for line in text.splitlines() if "trust header" not in line)
    (tmp_path / "bots.jwks.json").write_text('{"keys": []}', encoding="utf-8")
    (tmp_path / "main.mcp").write_text(
        text.replace('jwks   file "bots.jwks.json"', 'jwks url "https://b/j"'), encoding="utf-8"
    )
    c = compile_tree(tmp_path)
    assert c.project is not None
    doc = json.loads(
        envoy.compile(c.project, TargetContext(version=__version__)).artifacts[0].content
    )
    assert "transport_socket" not in chain(doc)
    names = [f["name"] for f in hcm(doc)["http_filters"]]
    assert "envoy.filters.http.jwt_authn" not in names
    assert "metadata_context_namespaces" not in filters(doc).get("envoy.filters.http.ext_authz", {})
    assert "request_headers_to_remove" not in hcm(doc)["route_config"]
