"""The Envoy and Istio models on facts from their documentation (restated, not copied)."""

from __future__ import annotations

import time

from credentials import Credentials, peer_for
from envoy_model import EnvoyModel, HttpRequest, run_all
from istio_model import IstioRequest, decide

NOW = float(int(time.time()))
ISS = "https://issuer.test"
URI = "https://issuer.test/jwks"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def bootstrap(*filters: dict, routes: list | None = None) -> dict:
    hcm = {
        "@type": HCM,
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "http_filters": [*filters, {"name": "router", "typed_config": {"@type": "x.Router"}}],
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "v",
                    "domains": ["*"],
                    "routes": routes or [{"match": {"prefix": "/"}, "route": {"cluster": "c"}}],
                }
            ]
        },
    }
    listener = {
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": 80}},
        "filter_chains": [{"filters": [{"name": "hcm", "typed_config": hcm}]}],
    }
    return {"static_resources": {"listeners": [listener]}}


# Envoy's RBAC page: one policy lets two admin identities do anything; another lets
# anyone GET under /products on ports 80 or 443.
RBAC = {
    "name": "envoy.filters.http.rbac",
    "typed_config": {
        "@type": "x.RBAC",
        "rules": {
            "action": "ALLOW",
            "policies": {
                "admins": {
                    "permissions": [{"any": True}],
                    "principals": [
                        {
                            "authenticated": {
                                "principal_name": {"exact": "spiffe://td/ns/default/sa/admin"}
                            }
                        },
                        {
                            "authenticated": {
                                "principal_name": {"exact": "spiffe://td/ns/default/sa/root"}
                            }
                        },
                    ],
                },
                "viewers": {
                    "permissions": [
                        {
                            "and_rules": {
                                "rules": [
                                    {
                                        "header": {
                                            "name": ":method",
                                            "string_match": {"exact": "GET"},
                                        }
                                    },
                                    {"url_path": {"path": {"prefix": "/products"}}},
                                    {
                                        "or_rules": {
                                            "rules": [
                                                {"destination_port": 80},
                                                {"destination_port": 443},
                                            ]
                                        }
                                    },
                                ]
                            }
                        }
                    ],
                    "principals": [{"any": True}],
                },
            },
        },
    },
}


def envoy(boot: dict, *reqs: HttpRequest) -> list[int]:
    model = EnvoyModel(boot, jwks={URI: Credentials.make().jwks()}, now=NOW)
    model.assume_peer_verified = True
    return [o.status for o in run_all(model, list(reqs), lambda b: [True] * len(b))]


def test_rbac_documented_policy() -> None:
    admin = peer_for("spiffe://td/ns/default/sa/admin")
    other = peer_for("spiffe://td/ns/default/sa/guest")
    assert envoy(
        bootstrap(RBAC),
        HttpRequest("DELETE", "/orders/1", peer=admin),
        HttpRequest("GET", "/products/7?x=1"),
        HttpRequest("GET", "/orders/1", peer=other),
        HttpRequest("POST", "/products/7"),
        HttpRequest("GET", "/x/../products/7"),  # normalised before RBAC sees it
    ) == [200, 200, 403, 403, 200]


def test_rbac_deny_action_and_per_route_disable() -> None:
    deny = {
        "name": "envoy.filters.http.rbac",
        "typed_config": {
            "@type": "x.RBAC",
            "rules": {
                "action": "DENY",
                "policies": {
                    "p": {
                        "permissions": [{"url_path": {"path": {"prefix": "/admin"}}}],
                        "principals": [
                            {
                                "not_id": {
                                    "direct_remote_ip": {
                                        "address_prefix": "10.0.0.0",
                                        "prefix_len": 8,
                                    }
                                }
                            }
                        ],
                    }
                },
            },
        },
    }
    routes = [
        {
            "match": {"prefix": "/admin/open"},
            "route": {"cluster": "c"},
            "typed_per_filter_config": {"envoy.filters.http.rbac": {}},
        },
        {"match": {"prefix": "/"}, "route": {"cluster": "c"}},
    ]
    assert envoy(
        bootstrap(deny, routes=routes),
        HttpRequest("GET", "/admin/x", source_ip="203.0.113.1"),
        HttpRequest("GET", "/admin/x", source_ip="10.1.1.1"),
        HttpRequest("GET", "/admin/open", source_ip="203.0.113.1"),
        HttpRequest("GET", "/a%2Fb"),
    ) == [403, 200, 200, 400]


def jwt_filter(requires: dict) -> dict:
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "x.JwtAuthentication",
            "providers": {
                "p": {
                    "issuer": ISS,
                    "audiences": ["api"],
                    "remote_jwks": {"http_uri": {"uri": URI}},
                    "payload_in_metadata": "p",
                }
            },
            "rules": [{"match": {"prefix": "/"}, "requires": requires}],
        },
    }


def bearer(variant: str) -> tuple[tuple[str, str], ...]:
    token = Credentials.make().token(
        variant, {"sub": "u"}, issuer=ISS, audience="api", now=NOW, skew=60
    )
    return (("authorization", f"Bearer {token}"),)


def test_jwt_authn_documented_failures() -> None:
    boot = bootstrap(jwt_filter({"provider_name": "p"}))
    statuses = envoy(
        boot,
        *(
            HttpRequest("GET", "/", headers=bearer(v))
            for v in (
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
        ),
        HttpRequest("GET", "/"),
    )
    assert statuses == [200, 200, 401, 401, 403, 401, 401, 401, 401, 401]


def test_jwt_authn_allow_missing() -> None:
    boot = bootstrap(
        jwt_filter(
            {"requires_any": {"requirements": [{"provider_name": "p"}, {"allow_missing": {}}]}}
        )
    )
    assert envoy(
        boot,
        HttpRequest("GET", "/"),
        HttpRequest("GET", "/", headers=bearer("valid")),
        HttpRequest("GET", "/", headers=bearer("forged")),
    ) == [200, 200, 401]


# Istio's JWT task: a RequestAuthentication for the issuer, then an ALLOW policy
# that needs a request principal (and later a group claim).
def istio_docs(when: list | None = None) -> list[dict]:
    rule: dict = {"from": [{"source": {"requestPrincipals": [f"{ISS}/u"]}}]}
    if when:
        rule["when"] = when
    return [
        {
            "kind": "RequestAuthentication",
            "metadata": {"namespace": "foo"},
            "spec": {"jwtRules": [{"issuer": ISS, "jwksUri": URI}]},
        },
        {
            "kind": "AuthorizationPolicy",
            "metadata": {"namespace": "foo"},
            "spec": {"action": "ALLOW", "rules": [rule]},
        },
    ]


def istio(docs: list[dict], req: IstioRequest) -> int:
    return decide(docs, req, jwks={URI: Credentials.make().jwks()}, now=NOW).status


def test_istio_jwt_task() -> None:
    docs = istio_docs()
    assert istio(docs[:1], IstioRequest("foo")) == 200  # no token, no policy: allowed
    assert istio(docs[:1], IstioRequest("foo", headers=dict(bearer("forged")))) == 401
    assert istio(docs, IstioRequest("foo")) == 403  # requestPrincipals needs a token
    assert istio(docs, IstioRequest("foo", headers=dict(bearer("valid")))) == 200
    assert istio(docs, IstioRequest("foo", headers=dict(bearer("expired")))) == 401
    grouped = istio_docs([{"key": "request.auth.claims[groups]", "values": ["group1"]}])
    assert istio(grouped, IstioRequest("foo", headers=dict(bearer("valid")))) == 403


def test_istio_order_and_matching() -> None:
    allow_nothing = {"kind": "AuthorizationPolicy", "metadata": {"namespace": "foo"}, "spec": {}}
    assert istio([allow_nothing], IstioRequest("foo")) == 403
    assert istio([allow_nothing], IstioRequest("bar")) == 200
    deny = {
        "kind": "AuthorizationPolicy",
        "metadata": {"namespace": "foo"},
        "spec": {
            "action": "DENY",
            "rules": [
                {
                    "to": [{"operation": {"methods": ["GET"]}}],
                    "when": [{"key": "request.headers[x-token]", "notValues": ["admin"]}],
                }
            ],
        },
    }
    assert istio([deny], IstioRequest("foo", headers={"x-token": "guest"})) == 403
    assert istio([deny], IstioRequest("foo", headers={"x-token": "admin"})) == 200
    assert istio([deny], IstioRequest("foo", method="POST")) == 200
    paths = {
        "kind": "AuthorizationPolicy",
        "metadata": {"namespace": "foo"},
        "spec": {
            "rules": [
                {
                    "to": [{"operation": {"paths": ["/api/{*}/items", "/pub/{**}", "/h*"]}}],
                    "from": [
                        {"source": {"principals": ["cluster.local/ns/web/sa/*"[:-1] + "front"]}}
                    ],
                }
            ]
        },
    }
    front = "cluster.local/ns/web/sa/front"
    assert istio([paths], IstioRequest("foo", peer=front, path="/api/a/items")) == 200
    assert istio([paths], IstioRequest("foo", peer=front, path="/api/a/b/items")) == 403
    assert istio([paths], IstioRequest("foo", peer=front, path="/pub/a/b")) == 200
    assert istio([paths], IstioRequest("foo", peer=front, path="/health")) == 200
    assert istio([paths], IstioRequest("foo", mtls=False, peer=front, path="/health")) == 403
    strict = {
        "kind": "PeerAuthentication",
        "metadata": {"namespace": "istio-system"},
        "spec": {"mtls": {"mode": "STRICT"}},
    }
    assert istio([strict], IstioRequest("foo", mtls=False)) == 0
    assert istio([strict], IstioRequest("foo", mtls=True)) == 200


def test_istio_custom_then_deny_then_allow() -> None:
    def policy(action: str, rules: list[dict]) -> dict:
        spec = {"action": action, "rules": rules}
        if action == "CUSTOM":
            spec["provider"] = {"name": "ext"}
        return {"kind": "AuthorizationPolicy", "metadata": {"namespace": "foo"}, "spec": spec}

    custom = policy("CUSTOM", [{"to": [{"operation": {"paths": ["/admin/*"]}}]}])
    allow = policy("ALLOW", [{}])  # one empty rule matches every request
    asked: list[str] = []

    def ext(req: IstioRequest) -> bool:
        asked.append(req.path)
        return req.headers.get("x-ok") == "1"

    def run(docs: list[dict], req: IstioRequest) -> int:
        return decide(docs, req, jwks={}, now=NOW, ext_authz=ext).status

    assert run([custom, allow], IstioRequest("foo", path="/admin/x")) == 403
    assert run([custom, allow], IstioRequest("foo", path="/admin/x", headers={"x-ok": "1"})) == 200
    assert run([custom, allow], IstioRequest("foo", path="/public")) == 200  # CUSTOM not asked
    assert asked == ["/admin/x", "/admin/x"]
    # a missing value never matches a positive field and always satisfies a negative one
    deny_plain = policy("DENY", [{"from": [{"source": {"notPrincipals": ["*"]}}]}])
    assert run([deny_plain], IstioRequest("foo", mtls=False)) == 403
    assert run([deny_plain], IstioRequest("foo", peer="td/ns/a/sa/b")) == 200
    by_ns = policy("ALLOW", [{"from": [{"source": {"namespaces": ["web"]}}]}])
    assert run([by_ns], IstioRequest("foo", peer="td/ns/web/sa/x")) == 200
    assert run([by_ns], IstioRequest("foo", mtls=False, peer="td/ns/web/sa/x")) == 403
    blocks = policy(
        "ALLOW",
        [
            {
                "from": [{"source": {"ipBlocks": ["10.0.0.0/8"], "notIpBlocks": ["10.9.0.0/16"]}}],
                "to": [{"operation": {"hosts": ["API.example"], "ports": ["8080"]}}],
            }
        ],
    )
    assert run([blocks], IstioRequest("foo", source_ip="10.1.1.1", host="api.EXAMPLE")) == 200
    assert run([blocks], IstioRequest("foo", source_ip="10.9.1.1", host="api.example")) == 403
    assert (
        run([blocks], IstioRequest("foo", source_ip="10.1.1.1", host="api.example", port=9090))
        == 403
    )
    # a policy in another namespace, or selecting other labels, does not apply
    other = {**allow, "spec": {"selector": {"matchLabels": {"app": "db"}}, "rules": []}}
    assert run([other], IstioRequest("foo", labels={"app": "web"})) == 200
    assert run([other], IstioRequest("foo", labels={"app": "db"})) == 403
