"""The CheckRequest mapping: the evaluator against the generated Rego in the real OPA engine.

Each tree is given two accepted JWT providers (different claim mappings) and
four trusted headers (every type, one with `sources`) on every gateway, as
the identity syntax will lower them.  Hypothesis draws CheckRequests, valid
and hostile (wrong types in every section, unknown gateways and routes,
forged SPIFFE ids, bad percent-escapes, oversized values, odd claims), and
for every one the canonical request, the decision (with its refusal) and the
enforced `allow` must be the same from `mcpdsl.evaluate.checkrequest` +
the evaluator and from `data.mcp.envoy` in OPA.
"""

from __future__ import annotations

import json
import random
from decimal import Decimal
from functools import cache
from typing import Any

import pytest
from engine_support import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from request_vocabulary import Vocabulary, vocabulary
from validators import opa_available

from mcpdsl.compile import TargetContext, load_target
from mcpdsl.compile.server import artifact_view
from mcpdsl.engine import Engine
from mcpdsl.evaluate.checkrequest import decide, doors, select_door, to_request
from mcpdsl.evaluate.values import Refused
from mcpdsl.ir import model as m
from mcpdsl.ir.door import JWT_NAMESPACE, MAX_HEADERS, MAX_TEXT, service_identities

pytestmark = pytest.mark.skipif(
    not opa_available(),
    reason="system component missing: the OPA engine (opa-golib-python-bindings)",
)

BATCH = 25
SLACK = [HealthCheck.too_slow, HealthCheck.data_too_large]
QUERY = (
    "out := [[d, a, q] | some r in input.batch; "
    "d := data.mcp.envoy.decision with input as r; "
    "a := data.mcp.envoy.allow with input as r; "
    "q := [x | x := data.mcp.envoy.request with input as r]]"
)
TREES = {
    "policies": (REPO / "policies", 60),
    "integration": (REPO / "examples" / "integration", 30),
    "zero-trust": (REPO / "examples" / "zero-trust", 30),
}
TRUSTED = (
    m.TrustedHeader(header="x-device-managed", attribute=("device", "managed"), type="bool"),
    m.TrustedHeader(header="x-device-os", attribute=("device", "os")),
    m.TrustedHeader(
        header="x-lb-tier", attribute=("tier",), type="number", sources=("10.0.0.0/8",)
    ),
    m.TrustedHeader(header="x-roles", attribute=("roles",), type="list", sources=("fd00::/8",)),
)


def with_identity(project: m.Project) -> m.Project:
    """`project` with providers and trusted headers on every gateway (IR, as lowered)."""
    package = project.packages[0] if project.packages else "main"
    idp = m.Provider(
        package=package, name="corp-idp", issuer="https://idp.example", groups_claim="groups"
    )
    agents = m.Provider(
        package=package,
        name="agents",
        issuer="https://agents.example",
        type_claim="kind",
        id_claim="uid",
        email_claim=None,
        mfa_claim="acr",
        mfa_values=("phr", "mfa"),
    )
    refs = (m.Ref(package=package, name="corp-idp"), m.Ref(package=package, name="agents"))
    gateways = tuple(
        g.model_copy(update={"providers": refs, "trusted_headers": TRUSTED})
        for g in project.gateways
    )
    return project.model_copy(
        update={"providers": (idp, agents), "gateways": gateways, "meshes": ()}
    )


class Opa:
    def __init__(self, project: m.Project) -> None:
        from opa_bindings import OpaEngine

        output = load_target("opa").compile(project, TargetContext(version="test"))
        files = {a.path: a.content for a in output.artifacts}
        self.opa = OpaEngine()
        for path, content in sorted(files.items()):
            if path.endswith(".rego"):
                self.opa.add_policy(path, content.decode("utf-8"))
        self.opa.add_data(json.loads(files["opa/data.json"]))

    def decide(self, batch: list[Any]) -> list[tuple[dict[str, Any], bool, list[Any]]]:
        result = self.opa.eval_query(QUERY, {"batch": batch})
        return [(d, a, q) for d, a, q in result[0]["out"]]


@cache
def setup(name: str) -> tuple[Engine, Opa, Vocabulary, m.Project]:
    tree, _ = TREES[name]
    project = with_identity(Engine.load(tree).project)
    # rules needing the decision server's counters never fire in the bundle (B0171)
    engine = Engine.from_project(artifact_view(project))
    return engine, Opa(project), vocabulary(project), project


# ------------------------------------------------------------------ generation

ODD: list[Any] = [None, True, 0, 2.5, "", [], {}, ["x"], {"k": 1}]


def _odd(rnd: random.Random, good: Any, p: float = 0.06) -> Any:
    return rnd.choice(ODD) if rnd.random() < p else good


def _target(rnd: random.Random, vocab: Vocabulary) -> str:
    path = rnd.choice(vocab.paths)
    roll = rnd.random()
    if roll < 0.1:
        path = rnd.choice(["/v1/./x", "//v1", "/v1/%2e/x", "v1", "/a\\b", "/v1/items/"])
    if rnd.random() < 0.1:
        params = [
            rnd.choice(["a=1", "a=2", "b=%41", "c", "=x", "q=a+b", "d=%C3%A9", "e=%zz", "f=%C3",
                        "g=%E2%82", "h=%", "i=%4", "%41=j", "k=é", "l=%EF%BF%BD", "m==n", ""])
            for _ in range(rnd.randint(0, 4))
        ]  # fmt: skip
        path += "?" + "&".join(params)
        if rnd.random() < 0.05:
            path += "&" * 300
    if rnd.random() < 0.1:
        path += "#frag?x=1"
    return path


def _headers(rnd: random.Random) -> Any:
    headers: dict[str, Any] = {"x-a": "1"}
    values = {
        "x-device-managed": ["true", "false", "TRUE", "1", ""],
        "x-device-os": ["linux", "", "é"],
        "x-lb-tier": ["2", "2.5", "-0", "01", "1e3", "0.1234567", "12", " 3", "3\n", "-7.25"],
        "x-roles": ["a,b", " a , b ,, c ", "", ",", "solo"],
        "x-user": ["alice"],
    }
    for name, choices in values.items():
        if rnd.random() < 0.5:
            headers[name] = rnd.choice(choices)
    if rnd.random() < 0.03:
        headers["x-b"] = rnd.choice([None, 5, ["x"]])
    if rnd.random() < 0.02:
        headers.update({f"x-{i}": "v" for i in range(MAX_HEADERS)})
    if rnd.random() < 0.02:
        headers["x-big"] = "x" * (MAX_TEXT + 1)
    return _odd(rnd, headers, 0.03)


def _payload(rnd: random.Random, users: list[str]) -> Any:
    payload: dict[str, Any] = {}
    for claim, choices in {
        "sub": [*users, "stranger", 7, None],
        "uid": [*users, "bot-1", ["x"]],
        "kind": ["user", "agent", "service", 3, ""],
        "email": ["a@example.com", 5],
        "groups": [["admins"], ["a", "b"], "admins", ["a", 1], []],
        "amr": [["pwd", "mfa"], ["pwd"], "mfa", "pwd", [1], 2],
        "acr": ["phr", "mfa", ["phr"], "low", None],
    }.items():
        if rnd.random() < 0.7:
            payload[claim] = rnd.choice(choices)
    return _odd(rnd, payload, 0.05)


def _aimed(rnd: random.Random, vocab: Vocabulary, project: m.Project, check: Any) -> Any:
    """Point a well-formed CheckRequest at one rule: its principal, resource, action, path."""
    attributes = check.get("attributes") if type(check) is dict else None
    if not vocab.shapes or type(attributes) is not dict:
        return check
    principals, resources, actions, paths = rnd.choice(vocab.shapes)
    spiffe = {name: uri for uri, (name, _) in sorted(service_identities(project).items())}
    if principals:
        ptype, pid = rnd.choice(principals)
        if ptype == "service" and pid in spiffe:
            attributes["source"] = {"principal": spiffe[pid], "address": {"socketAddress": {
                "address": rnd.choice(["10.1.2.3", "192.168.0.1"])}}}  # fmt: skip
            attributes.pop("metadataContext", None)
        elif project.providers:
            claim = "sub" if ptype == "user" else "uid"
            payload = {claim: pid, "kind": ptype, "amr": ["mfa"], "acr": "phr"}
            provider = project.providers[0 if ptype == "user" else 1].qualified
            attributes["metadataContext"] = {"filterMetadata": {JWT_NAMESPACE: {provider: payload}}}
    if resources:
        rtype, rid = rnd.choice(resources)
        routes = [
            (g.qualified, i)
            for g in project.gateways
            for i, r in enumerate(g.routes)
            if r.target.kind == "service" and r.target.ref.name == rid
        ]
        if routes and rnd.random() < 0.6:
            gateway, index = rnd.choice(routes)
            attributes["contextExtensions"] = {
                "mcpdsl.gateway": gateway,
                "mcpdsl.route": str(index),
            }
        elif rtype == "service" and rid in spiffe:
            attributes.pop("contextExtensions", None)
            attributes["destination"] = {"principal": spiffe[rid]}
    http = (
        attributes.get("request", {}).get("http")
        if type(attributes.get("request")) is dict
        else None
    )
    if type(http) is dict:
        if actions:
            http["method"] = rnd.choice(actions)
        if paths:
            http["path"] = rnd.choice(paths)
    return check


def check_request(rnd: random.Random, vocab: Vocabulary, project: m.Project) -> Any:
    check = _check_request(rnd, vocab, project)
    return _aimed(rnd, vocab, project, check) if rnd.random() < 0.5 else check


def _check_request(rnd: random.Random, vocab: Vocabulary, project: m.Project) -> Any:
    if rnd.random() < 0.02:
        return rnd.choice([None, [], "x", 3, {"attributes": []}, {}])
    spiffes = sorted(service_identities(project))
    users = sorted({i for t, i in vocab.entities if t == "user"}) or ["alice"]
    attributes: dict[str, Any] = {}
    gateways = [g.qualified for g in project.gateways]
    if gateways and rnd.random() < 0.75:
        gateway = rnd.choice(gateways)
        routes = len(next(g for g in project.gateways if g.qualified == gateway).routes)
        ext: dict[str, Any] = {"mcpdsl.gateway": _odd(rnd, gateway, 0.04)}
        if rnd.random() < 0.95:
            ext["mcpdsl.route"] = rnd.choice(
                [str(rnd.randrange(max(routes, 1))), str(routes), "01", "-1", " 0", "0\n", 0]
                if rnd.random() < 0.15
                else [str(rnd.randrange(max(routes, 1)))]
            )
        if rnd.random() < 0.03:
            ext["mcpdsl.gateway"] = "nowhere.gw"
        attributes["contextExtensions"] = _odd(rnd, ext, 0.02)
    method = rnd.choice([*vocab.actions, "GET", "POST"])
    attributes["request"] = _odd(
        rnd,
        {
            "http": _odd(
                rnd,
                {
                    "method": _odd(rnd, method, 0.03),
                    "path": _odd(rnd, _target(rnd, vocab), 0.03),
                    "headers": _headers(rnd),
                },
                0.03,
            )
        },
        0.02,
    )
    source: dict[str, Any] = {}
    if rnd.random() < 0.8:
        source["principal"] = _odd(
            rnd,
            rnd.choice(
                [*spiffes, *spiffes, "spiffe://cluster.local/ns/x/sa/y", "spiffe://a/b", ""]
                + [s + "\n" for s in spiffes[:1]]
            ),
            0.03,
        )
    if rnd.random() < 0.9:
        ip = rnd.choice(["10.1.2.3", "192.168.0.1", "fd00::5", "::1", "::ffff:10.1.2.3", "", "x"])
        source["address"] = {"socketAddress": {"address": _odd(rnd, ip, 0.03), "portValue": 1}}
    attributes["source"] = _odd(rnd, source, 0.02)
    if rnd.random() < 0.6 and spiffes:
        attributes["destination"] = {"principal": _odd(rnd, rnd.choice(spiffes), 0.03)}
    if rnd.random() < 0.7:
        tokens: dict[str, Any] = {}
        for provider in project.providers:
            if rnd.random() < 0.5:
                tokens[provider.qualified] = _payload(rnd, users)
        metadata = {"filterMetadata": _odd(rnd, {JWT_NAMESPACE: _odd(rnd, tokens, 0.03)}, 0.03)}
        attributes["metadataContext"] = metadata
    return {"attributes": _odd(rnd, attributes, 0.01), "parsed_path": [], "parsed_query": {}}


# ------------------------------------------------------------------ comparison


def disagreement(name: str, check: Any, theirs: dict[str, Any], allow: bool, req: list[Any]) -> str:
    engine, _, _, project = setup(name)
    table = doors(project)
    d = decide(engine.compiled.policies, table, check)
    mine = d.as_dict()
    problems = []
    for key in ("allowed", "obligations", "rules", "default_applied"):
        if mine[key] != theirs[key]:
            problems.append(f"{key}: evaluator {mine[key]!r}, OPA {theirs[key]!r}")
    if mine.get("refusal") != theirs.get("refusal"):
        problems.append(
            f"refusal: evaluator {mine.get('refusal')!r}, OPA {theirs.get('refusal')!r}"
        )
    if d.risk != Decimal(repr(theirs["risk"])):
        problems.append(f"risk: evaluator {d.risk}, OPA {theirs['risk']!r}")
    if d.enforced != allow:
        problems.append(f"enforced: evaluator {d.enforced}, OPA allow {allow}")
    try:
        request: Any = [to_request(select_door(table, check), check)]
    except Refused:
        request = []
    if request != req:
        problems.append(f"request: evaluator {request!r}, OPA {req!r}")
    if not problems:
        return ""
    return "\n".join([json.dumps(check, sort_keys=True)[:2000], *problems])


@pytest.mark.parametrize("name", sorted(TREES))
def test_the_mapping_agrees_with_opa(name: str) -> None:
    _, examples = TREES[name]
    engine, opa, vocab, project = setup(name)
    assert engine.project.policies or name == "integration"  # no policies: all denied

    @settings(max_examples=examples, suppress_health_check=SLACK, deadline=None)
    @given(st.integers(0, 2**32))
    def run(seed: int) -> None:
        rnd = random.Random(seed)
        batch = [check_request(rnd, vocab, project) for _ in range(BATCH)]
        for check, (theirs, allow, req) in zip(batch, opa.decide(batch), strict=True):
            problem = disagreement(name, check, theirs, allow, req)
            assert not problem, problem

    run()
