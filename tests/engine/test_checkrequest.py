"""The CheckRequest mapping's decisions (docs/runtime.md), one by one."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpdsl.evaluate.checkrequest import decide, doors, request_for, select_door, to_request
from mcpdsl.evaluate.policy import PreparedPolicies
from mcpdsl.evaluate.values import Refused
from mcpdsl.ir import model as m
from mcpdsl.ir.door import JWT_NAMESPACE, MAX_TEXT

IDP = m.Provider(package="p", name="idp", issuer="https://idp", groups_claim="groups")
BOTS = m.Provider(
    package="p", name="bots", issuer="https://bots", type_claim="kind", mfa_claim=None
)
API = m.Service(package="p", name="api", image="x", port=1, namespace="core")
GATEWAY = m.Gateway(
    package="p",
    name="edge",
    port=8080,
    routes=(
        m.Route(
            path="/**", target=m.RouteTarget(kind="service", ref=m.Ref(package="p", name="api"))
        ),
    ),
    providers=(m.Ref(package="p", name="idp"), m.Ref(package="p", name="bots")),
    trusted_headers=(
        m.TrustedHeader(header="x-managed", attribute=("device", "managed"), type="bool"),
        m.TrustedHeader(
            header="x-tier", attribute=("tier",), type="number", sources=("10.0.0.0/8",)
        ),
    ),
)
PROJECT = m.Project(services=(API,), gateways=(GATEWAY,), providers=(IDP, BOTS))
TABLE = doors(PROJECT)
API_SPIFFE = "spiffe://cluster.local/ns/core/sa/api"


def check(
    tokens: dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
    ip: str = "10.1.2.3",
    peer: str | None = None,
    edge: bool = True,
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "source": {"address": {"socketAddress": {"address": ip}}},
        "request": {"http": {"method": "GET", "path": "/v1/x?a=1", "headers": headers or {}}},
    }
    if peer is not None:
        attributes["source"]["principal"] = peer
    if edge:
        attributes["contextExtensions"] = {"mcpdsl.gateway": "p.edge", "mcpdsl.route": "0"}
    else:
        attributes["destination"] = {"principal": API_SPIFFE}
    if tokens is not None:
        attributes["metadataContext"] = {"filterMetadata": {JWT_NAMESPACE: tokens}}
    return {"attributes": attributes}


def test_first_accepted_provider_with_a_payload_is_the_principal() -> None:
    req = request_for(
        TABLE,
        check(
            {
                "p.bots": {"sub": "b1", "kind": "agent"},
                "p.idp": {"sub": "alice", "email": "a@x", "groups": ["eng"], "amr": ["mfa"]},
            },
            peer=API_SPIFFE,
        ),
    )
    assert req["principal"] == {
        "type": "user",
        "id": "alice",
        "email": "a@x",
        "groups": ["eng"],
        "provider": "p.idp",
        "issuer": "https://idp",
    }
    assert req["request"]["auth"] == {"mfa": True}
    assert req["resource"] == {"type": "service", "id": "api"}
    assert req["source"] == {"ip": "10.1.2.3", "namespace": "core"}  # the peer's, still


def test_missing_or_ill_typed_claims_give_no_attribute() -> None:
    req = request_for(TABLE, check({"p.idp": {"email": 5, "groups": ["a", 1], "amr": "pwd"}}))
    assert req["principal"] == {"type": "user", "provider": "p.idp", "issuer": "https://idp"}
    assert req["request"]["auth"] == {"mfa": False}
    req = request_for(TABLE, check({"p.bots": {"sub": ["x"], "kind": 7}}))
    assert req["principal"] == {"provider": "p.bots", "issuer": "https://bots"}  # no type
    assert req["request"]["auth"] == {}  # that provider maps no mfa claim


def test_identity_never_comes_from_a_plain_header() -> None:
    req = request_for(TABLE, check(headers={"x-user": "alice", "authorization": "Bearer x"}))
    assert req["principal"] == {} and req["request"]["auth"] == {}
    assert req["request"]["headers"]["x-user"] == "alice"


def test_peer_spiffe_id_names_a_service_east_west() -> None:
    req = request_for(TABLE, check(peer=API_SPIFFE, edge=False))
    assert req["principal"] == {"type": "service", "id": "api", "identity": API_SPIFFE}
    assert req["resource"] == {"type": "service", "id": "api"}
    assert req["context"] == {}  # the mesh door trusts no header
    stranger = "spiffe://other/ns/web/sa/x"
    req = request_for(TABLE, check(peer=stranger, edge=False))
    assert req["principal"] == {"identity": stranger} and req["source"]["namespace"] == "web"


@pytest.mark.parametrize(
    ("headers", "ip", "context"),
    [
        (
            {"x-managed": "true", "x-tier": "2.5"},
            "10.1.2.3",
            {"device": {"managed": True}, "tier": 2.5},
        ),
        ({"x-managed": "yes", "x-tier": "2"}, "10.1.2.3", {"tier": 2}),  # not a bool: absent
        ({"x-tier": "2"}, "192.168.0.1", {}),  # `sources`: not from this peer
        ({"x-tier": "1e3"}, "10.1.2.3", {}),  # not a plain decimal
        ({"x-tier": "2"}, "::ffff:10.1.2.3", {}),  # an IPv6 address is not in an IPv4 network
    ],
)
def test_trusted_headers_are_typed_and_sourced(
    headers: dict[str, str], ip: str, context: dict[str, Any]
) -> None:
    assert request_for(TABLE, check(headers=headers, ip=ip))["context"] == context


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda c: c["attributes"].pop("request"), "no `attributes.request.http` object"),
        (lambda c: c["attributes"]["contextExtensions"].update({"mcpdsl.route": "01"}),
         "names no route"),
        (lambda c: c["attributes"]["contextExtensions"].update({"mcpdsl.gateway": "p.x"}),
         "names no gateway"),
        (lambda c: c["attributes"]["request"]["http"]["headers"].update({"x": "y" * (MAX_TEXT + 1)}),
         "longer than"),
        (lambda c: c["attributes"]["request"]["http"].update({"path": "/x?q=%C3"}), "UTF-8"),
        (lambda c: c["attributes"]["request"]["http"].update({"path": "/x?q=%zz"}), "UTF-8"),
        (lambda c: c["attributes"].update({"metadataContext": {"filterMetadata": {
            JWT_NAMESPACE: {"p.idp": "token"}}}}), "provider `p.idp`"),
    ],
)  # fmt: skip
def test_refusals_are_denies_with_a_reason(mutate: Any, reason: str) -> None:
    c = check()
    mutate(c)
    with pytest.raises(Refused, match=reason):
        to_request(select_door(TABLE, c), c)
    d = decide(PreparedPolicies(()), TABLE, c)
    assert not d.allowed and d.refusal is not None and reason in d.refusal


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(JSON, st.sampled_from(["attributes", "request", "http", "source", "metadataContext"]))
def test_hostile_input_is_refused_or_mapped_never_raised(junk: Any, where: str) -> None:
    c = check({"p.idp": {"sub": "a"}})
    if where == "attributes":
        c = {"attributes": junk}
    elif where == "request":
        c["attributes"]["request"] = junk
    elif where == "http":
        c["attributes"]["request"]["http"]["headers"] = junk
    elif where == "source":
        c["attributes"]["source"] = junk
    else:
        c["attributes"]["metadataContext"] = junk
    d = decide(PreparedPolicies(()), TABLE, c)
    assert not d.allowed
