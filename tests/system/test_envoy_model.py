"""envoy_model on what Envoy documents for TLS, ext_authz, jwt_authn and RBAC metadata."""

from __future__ import annotations

import time
import urllib.parse

from credentials import Credentials, peer_for
from envoy_model import EnvoyModel, HttpRequest, Outcome, run_all
from hypothesis import given
from hypothesis import strategies as st
from test_models import ISS, URI, bearer, bootstrap

from mcpdsl.ir.paths import PathRejected, normalize_request_path

NOW = float(int(time.time()))
TLS = {
    "name": "envoy.transport_sockets.tls",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "require_client_certificate": True,
        "common_tls_context": {"validation_context": {"trusted_ca": {"filename": "/ca.pem"}}},
    },
}
EXT_AUTHZ = {
    "name": "envoy.filters.http.ext_authz",
    "typed_config": {
        "@type": "x.ExtAuthz",
        "include_peer_certificate": True,
        "metadata_context_namespaces": ["envoy.filters.http.jwt_authn"],
    },
}
JWT = {
    "name": "envoy.filters.http.jwt_authn",
    "typed_config": {
        "@type": "x.JwtAuthentication",
        "providers": {
            "idp": {
                "issuer": ISS,
                "audiences": ["api"],
                "remote_jwks": {"http_uri": {"uri": URI}},
                "payload_in_metadata": "pkg.idp",
            }
        },
        "requirement_map": {"need": {"provider_name": "idp"}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}],
    },
}


def run(
    boot: dict, reqs: list[HttpRequest], answer: bool | None = True
) -> tuple[list[Outcome], list[dict]]:
    seen: list[dict] = []

    def opa(batch: list[dict]) -> list[bool | None]:
        seen.extend(batch)
        return [answer] * len(batch)

    model = EnvoyModel(boot, jwks={URI: Credentials.make().jwks()}, now=NOW)
    return run_all(model, reqs, opa), seen


def test_downstream_tls_decides_who_the_peer_is() -> None:
    boot = bootstrap(EXT_AUTHZ)
    boot["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = TLS
    good = peer_for("spiffe://td/ns/a/sa/b")
    outcomes, seen = run(
        boot,
        [
            HttpRequest("GET", "/", tls=True, peer=good),
            HttpRequest("GET", "/", tls=True),  # required, not presented
            HttpRequest(
                "GET", "/", tls=True, peer=peer_for("spiffe://td/ns/a/sa/b", trusted=False)
            ),
            HttpRequest("GET", "/"),  # plaintext to a TLS listener
        ],
    )
    assert [o.status for o in outcomes] == [200, 0, 0, 0]
    source = seen[0]["attributes"]["source"]
    assert source["principal"] == "spiffe://td/ns/a/sa/b"
    assert urllib.parse.unquote(source["certificate"]) == good.pem
    # a plaintext listener never sees a certificate, and refuses a TLS client
    outcomes, seen = run(bootstrap(EXT_AUTHZ), [HttpRequest("GET", "/", tls=True, peer=good)])
    assert outcomes[0].status == 0 and not seen


def test_check_request_as_opa_envoy_reads_it() -> None:
    routes = [
        {
            "match": {"prefix": "/open"},
            "route": {"cluster": "c"},
            "typed_per_filter_config": {"envoy.filters.http.ext_authz": {"disabled": True}},
        },
        {
            "match": {"prefix": "/"},
            "route": {"cluster": "c"},
            "typed_per_filter_config": {
                "envoy.filters.http.ext_authz": {
                    "check_settings": {"context_extensions": {"k": "v"}}
                }
            },
        },
    ]
    req = HttpRequest(
        "POST",
        "/a/./b//c%20d?x=1&x=2&y",
        (("Host", "api.test"), ("X-Mixed", "1"), ("x-mixed", "2")),
        source_ip="10.9.8.7",
    )
    outcomes, seen = run(
        bootstrap(EXT_AUTHZ, routes=routes), [req, HttpRequest("GET", "/open/x")], False
    )
    assert [o.status for o in outcomes] == [403, 200]
    (check,) = seen
    http = check["attributes"]["request"]["http"]
    assert http["path"] == "/a/b/c%20d?x=1&x=2&y"
    assert http["method"] == "POST" and http["host"] == "api.test"
    assert http["headers"]["x-mixed"] == "1,2" and http["headers"][":authority"] == "api.test"
    assert "principal" not in check["attributes"]["source"]
    assert check["attributes"]["source"]["address"]["socketAddress"]["address"] == "10.9.8.7"
    assert check["attributes"]["contextExtensions"] == {"k": "v"}
    assert check["parsed_path"] == ["a", "b", "c d"]
    assert check["parsed_query"] == {"x": ["1", "2"], "y": [""]}
    # an OPA error (undefined) fails closed unless failure_mode_allow
    assert run(bootstrap(EXT_AUTHZ), [HttpRequest("GET", "/")], None)[0][0].status == 403
    lenient = {
        **EXT_AUTHZ,
        "typed_config": {**EXT_AUTHZ["typed_config"], "failure_mode_allow": True},
    }
    assert run(bootstrap(lenient), [HttpRequest("GET", "/")], None)[0][0].status == 200


def test_jwt_payload_reaches_ext_authz_and_the_token_does_not() -> None:
    outcomes, seen = run(
        bootstrap(JWT, EXT_AUTHZ),
        [
            HttpRequest("GET", "/", bearer("valid")),
            HttpRequest("GET", "/?access_token=" + bearer("valid")[0][1].split()[1]),
            HttpRequest("GET", "/", bearer("expired")),
        ],
    )
    assert [o.status for o in outcomes] == [200, 200, 401]
    meta = seen[0]["attributes"]["metadataContext"]["filterMetadata"]
    assert meta["envoy.filters.http.jwt_authn"]["pkg.idp"]["sub"] == "u"
    assert "authorization" not in seen[0]["attributes"]["request"]["http"]["headers"]
    forwarded = {**JWT["typed_config"]["providers"]["idp"], "forward": True}
    keep = {**JWT, "typed_config": {**JWT["typed_config"], "providers": {"idp": forwarded}}}
    _, seen = run(bootstrap(keep, EXT_AUTHZ), [HttpRequest("GET", "/", bearer("valid"))])
    assert "authorization" in seen[0]["attributes"]["request"]["http"]["headers"]


def test_jwt_per_route_requirements() -> None:
    per_route = {**JWT, "typed_config": {**JWT["typed_config"], "rules": []}}
    routes = [
        {
            "match": {"prefix": "/private"},
            "route": {"cluster": "c"},
            "typed_per_filter_config": {
                "envoy.filters.http.jwt_authn": {"requirement_name": "need"}
            },
        },
        {
            "match": {"prefix": "/"},
            "route": {"cluster": "c"},
            "typed_per_filter_config": {"envoy.filters.http.jwt_authn": {"disabled": True}},
        },
    ]
    outcomes, _ = run(
        bootstrap(per_route, routes=routes),
        [
            HttpRequest("GET", "/private"),
            HttpRequest("GET", "/private", bearer("valid")),
            HttpRequest("GET", "/public", bearer("forged")),
        ],
    )
    assert [o.status for o in outcomes] == [401, 200, 200]


def test_rbac_on_jwt_metadata_and_missing_peers() -> None:
    rbac = {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "x.RBAC",
            "rules": {
                "action": "ALLOW",
                "policies": {
                    "sre": {
                        "permissions": [{"any": True}],
                        "principals": [
                            {
                                "metadata": {
                                    "filter": "envoy.filters.http.jwt_authn",
                                    "path": [{"key": "pkg.idp"}, {"key": "groups"}],
                                    "value": {
                                        "list_match": {"one_of": {"string_match": {"exact": "sre"}}}
                                    },
                                }
                            },
                            {"not_id": {"authenticated": {}}},
                        ],
                    }
                },
            },
        },
    }
    creds = Credentials.make()
    sre = creds.token(
        "valid", {"sub": "u", "groups": ["sre"]}, issuer=ISS, audience="api", now=NOW, skew=60
    )
    dev = creds.token(
        "valid", {"sub": "u", "groups": ["dev"]}, issuer=ISS, audience="api", now=NOW, skew=60
    )
    model = EnvoyModel(bootstrap(JWT, rbac), jwks={URI: creds.jwks()}, now=NOW)
    model.assume_peer_verified = True
    peer = peer_for("spiffe://td/ns/a/sa/b")
    outcomes = run_all(
        model,
        [
            HttpRequest("GET", "/", (("authorization", f"Bearer {sre}"),), peer=peer),
            HttpRequest("GET", "/", (("authorization", f"Bearer {dev}"),), peer=peer),
            HttpRequest("GET", "/", (("authorization", f"Bearer {dev}"),)),  # no peer: not_id holds
        ],
        lambda b: [True] * len(b),
    )
    assert [o.status for o in outcomes] == [200, 403, 200]


PATHS = st.lists(
    st.sampled_from(["a", ".", "..", "", "%2e", "%2E%2e", "b%20c", "~x", "%25", ";p", "A", "\\"]),
    min_size=1,
    max_size=6,
).map(lambda segs: "/" + "/".join(segs))


@given(PATHS)
def test_filters_only_see_normal_paths(path: str) -> None:
    """Whatever passes the connection manager is in the engine's normal form (semantics.md)."""
    outcomes, seen = run(bootstrap(EXT_AUTHZ), [HttpRequest("GET", path)])
    if outcomes[0].stage == "hcm":
        return
    forwarded = seen[0]["attributes"]["request"]["http"]["path"]
    assert normalize_request_path(forwarded) == forwarded
    try:
        assert normalize_request_path(path) == forwarded
    except PathRejected:  # pragma: no cover - the engine refuses what Envoy answers 400
        raise AssertionError(f"the engine refuses {path!r}, Envoy forwards {forwarded!r}") from None
