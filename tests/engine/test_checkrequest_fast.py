"""The compiled CheckRequest mapping against its plain reading (checkrequest_reference).

`mcpdsl.evaluate.checkrequest` compiles each door into generated functions and
inlines every check for speed (docs/performance.md); the reference module is
the same rules read one helper at a time.  Over generated CheckRequests, valid
and hostile, on the trees of the OPA differential (with and without providers
and trusted headers), both must build the same request with the same key
order (the decision log writes it as it is), or refuse with the same reason.
"""

from __future__ import annotations

import json
import random
from functools import cache
from typing import Any

import checkrequest_reference as reference
import pytest
from engine_support import REPO
from hypothesis import given, settings
from hypothesis import strategies as st
from request_vocabulary import Vocabulary, vocabulary
from test_checkrequest_differential import check_request, with_identity

from mcpdsl.engine import Engine
from mcpdsl.evaluate import checkrequest as fast
from mcpdsl.evaluate.values import Refused
from mcpdsl.ir import model as m
from mcpdsl.ir.door import JWT_NAMESPACE, DoorMapping, doors

TREES = {
    "policies": REPO / "policies",
    "integration": REPO / "examples" / "integration",
    "zero-trust": REPO / "examples" / "zero-trust",
}


@cache
def setup(name: str, identity: bool) -> tuple[m.Project, Vocabulary, dict[str, DoorMapping]]:
    project = Engine.load(TREES[name]).project
    if identity:
        project = with_identity(project)
    return project, vocabulary(project), doors(project)


def outcome(build: Any) -> tuple[str, Any]:
    try:
        request = build()
    except Refused as exc:
        return "refused", str(exc)
    return "request", json.dumps(request)  # key order included


def agree(table: dict[str, DoorMapping], check: Any) -> None:
    want = outcome(lambda: reference.request_for(table, check))
    assert outcome(lambda: fast.request_for(table, check)) == want, json.dumps(check)[:2000]
    try:
        door = reference.select_door(table, check)
    except Refused:
        return
    assert outcome(lambda: fast.to_request(door, check)) == outcome(
        lambda: reference.to_request(door, check)
    )


@pytest.mark.parametrize("identity", [True, False], ids=["identity", "plain"])
@pytest.mark.parametrize("name", sorted(TREES))
def test_the_compiled_mapping_is_the_plain_mapping(name: str, identity: bool) -> None:
    project, vocab, table = setup(name, identity)

    @settings(max_examples=60)
    @given(st.integers(0, 2**32))
    def run(seed: int) -> None:
        rnd = random.Random(seed)
        for _ in range(20):
            agree(table, check_request(rnd, vocab, project))

    run()


QUERY = st.lists(
    st.sampled_from(["a=1", "a=2", "b", "=x", "", "c=%41", "d=%zz", "e==f", "g=é", "a", "%41=1"]),
    max_size=6,
).map("&".join)


@settings(max_examples=200)
@given(
    query=QUERY,
    fragment=st.sampled_from(["", "#", "#x?y=1"]),
    mark=st.sampled_from(["?", ""]),
    headers=st.dictionaries(
        st.sampled_from(["x-device-managed", "x-device-os", "x-lb-tier", "x-roles", "x-a"]),
        st.sampled_from(["true", "false", "2", "2.50", "01", "a, b,,c", "", " \t"]),
    ),
    ip=st.sampled_from(["10.1.2.3", "fd00::1", "", "x", "10.0.0.1%eth0"]),
    payload=st.dictionaries(
        st.sampled_from(["sub", "uid", "kind", "email", "groups", "amr", "acr"]),
        st.one_of(
            st.sampled_from(["alice", "agent", "mfa", "phr"]),
            st.lists(st.sampled_from(["mfa", "pwd", "phr"]), max_size=3),
            st.integers(0, 3),
        ),
    ),
)
def test_queries_headers_and_claims(
    query: str, fragment: str, mark: str, headers: dict[str, str], ip: str, payload: Any
) -> None:
    project, _, table = setup("policies", True)
    assert project.gateways and project.providers
    for gateway in project.gateways:
        for provider in project.providers:
            check = {
                "attributes": {
                    "source": {"address": {"socketAddress": {"address": ip}}},
                    "request": {
                        "http": {
                            "method": "GET",
                            "path": f"/v1/items{mark}{query}{fragment}",
                            "headers": headers,
                        }
                    },
                    "contextExtensions": {"mcpdsl.gateway": gateway.qualified, "mcpdsl.route": "0"},
                    "metadataContext": {
                        "filterMetadata": {JWT_NAMESPACE: {provider.qualified: payload}}
                    },
                }
            }
            agree(table, check)


def test_a_door_is_compiled_once_and_the_memo_is_not_its_value() -> None:
    project, _, table = setup("policies", True)
    door = table[project.gateways[0].qualified]
    check = {
        "attributes": {
            "request": {"http": {"method": "GET", "path": "/"}},
            "contextExtensions": {"mcpdsl.gateway": door.gateway, "mcpdsl.route": "0"},
        }
    }
    fast.request_for(table, check)
    first = dict(door.memo)
    assert first
    fast.request_for(table, check)
    assert door.memo == first and all(a is first[k] for k, a in door.memo.items())
    assert doors(project) == table  # a fresh table (empty memos) equals a used one


@cache
def policies_of(name: str, identity: bool) -> Any:
    project, _, _ = setup(name, identity)
    return Engine.from_project(project).compiled.policies


@pytest.mark.parametrize("identity", [True, False], ids=["identity", "plain"])
@pytest.mark.parametrize("name", sorted(TREES))
def test_decide_is_authorize_of_the_mapped_request(name: str, identity: bool) -> None:
    """`decide` takes `PreparedPolicies.authorize_mapped`, which skips the shape checks.

    Sound only because the door's mapping guarantees that shape: on the same
    CheckRequests, valid and hostile, it must decide exactly as `authorize`
    of the mapped request (or refuse as the mapping refuses).
    """
    project, vocab, table = setup(name, identity)
    policies = policies_of(name, identity)

    @settings(max_examples=30)
    @given(st.integers(0, 2**32))
    def run(seed: int) -> None:
        rnd = random.Random(seed)
        for _ in range(20):
            check = check_request(rnd, vocab, project)
            try:
                want = policies.authorize(fast.request_for(table, check))
            except Refused as exc:
                want = fast.refused(str(exc))
            got = fast.decide(policies, table, check)
            assert got == want, json.dumps(check)[:2000]
            assert got.explain() == want.explain()

    run()
