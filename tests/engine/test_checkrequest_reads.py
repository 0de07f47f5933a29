"""The door's mapping per read set: what no condition reads is not built, nothing else changes.

`checkrequest.decide` maps a CheckRequest with the door's generated decider
for the attributes the policies read (`door_reads`): every check stays, but
`source`, `request.query`, `request.auth`, the principal's other claims and
`identity`, and the context of a trusted header no read reaches are left
out.  Hypothesis draws policies reading different subsets of what a door can
fill (trusted-header `context.*` of every type, `principal.*` claims, `source`,
the query, `request.auth.mfa`, `stats`, `args`, `now`, risk terms and a
`require mfa`) and, for each, CheckRequests valid and hostile; the decision
and its explanation must be exactly `authorize` of the fully mapped request's,
and the request built must agree with the full one on every attribute read.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from engine_support import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from request_vocabulary import Vocabulary, vocabulary
from test_checkrequest_differential import check_request, with_identity

from mcpdsl.engine import Engine
from mcpdsl.evaluate import checkrequest as cr
from mcpdsl.evaluate.values import MISSING, Refused
from mcpdsl.ir import model as m
from mcpdsl.ir.door import (
    JWT_NAMESPACE,
    MAX_HEADERS,
    MAX_QUERY_PARAMETERS,
    MAX_TEXT,
    DoorMapping,
    doors,
)

#: One rule per snippet (`r-NAME`), each reading something else.
SNIPPETS = {
    "managed": "allow any -> any when context.device.managed",
    "os": 'allow any -> any when context.device.os == "linux"',
    "device": "allow any -> any when context.device == context.device",
    "tier": "deny any -> any when context.tier >= 2",
    "roles": 'allow any -> any when "a" in context.roles',
    "email": 'allow any -> any when endswith(principal.email, "@example.com")',
    "groups": 'allow any -> any when "admins" in principal.groups',
    "identity": 'allow any -> any when principal.identity == "spiffe://cluster.local/ns/x/sa/y"',
    "provider": 'allow any -> any when principal.provider == "platform.corp-idp"',
    "issuer": 'deny any -> any when principal.issuer == "https://agents.example"',
    "ip": 'deny any -> any unless source.ip in cidr "10.0.0.0/8"',
    "namespace": 'allow any -> any when source.namespace == "core"',
    "query": 'allow any -> any when request.query.a == "1"',
    "mfa": "allow any -> any when request.auth.mfa",
    "stats": "deny any -> any unless stats.principal.calls_1m <= 60",
    "args": 'allow any -> tool any when args.priority == "low"',
    "now": "allow any -> any when now.hour >= 0",
    "risk": "allow any -> any when risk < 0.7",
    "ids": 'allow user any -> service any on GET "/v1/**" when principal.id == "alice"',
    "type": 'allow any -> any when principal.type == "agent"',
    "plain": 'allow any -> service any on GET, POST "/v1/**"',
}
RISK = {
    "managed": "0.4 when not context.device.managed",
    "email": '0.3 when principal.email == "a@example.com"',
    "ip": '0.5 when source.ip in cidr "fd00::/8"',
    "query": '0.2 when request.query.b == "A"',
}


@cache
def tree() -> m.Project:
    """`policies/` (for its gateways, services and tools) plus the probe policy, with identity."""
    root = Path(tempfile.mkdtemp(prefix="mcpdsl-reads-"))
    shutil.copytree(REPO / "policies", root / "policies")
    rules = "\n".join(f"  r-{name}: {text}" for name, text in SNIPPETS.items())
    risk = "\n".join(f"    {text}" for text in RISK.values())
    (root / "policies" / "probe.mcp").write_text(
        "package platform\n\npolicy probe {\n  default deny\n"
        f"{rules}\n  risk {{\n{risk}\n  }}\n  require mfa when risk >= 0.5\n}}\n",
        encoding="utf-8",
    )
    try:
        return with_identity(Engine.load(root / "policies").project)
    finally:
        shutil.rmtree(root)


def project_for(
    names: frozenset[str], terms: frozenset[str], require: bool, default: str, others: bool
) -> m.Project:
    """The tree deciding with the probe cut to `names` (and `terms`), with the other policies or not."""
    project = tree()
    full = next(p for p in project.policies if p.name == "probe")
    risk_text = list(RISK)
    probe = full.model_copy(
        update={
            "rules": tuple(r for r in full.rules if r.id.removeprefix("r-") in names),
            "risk": tuple(t for t, n in zip(full.risk, risk_text, strict=True) if n in terms),
            "requires": full.requires if require else (),
            "default": default,
        }
    )
    rest = tuple(p for p in project.policies if p.name != "probe") if others else ()
    return project.model_copy(update={"policies": (*rest, probe)})


@cache
def vocab() -> Vocabulary:
    return vocabulary(tree())


LONG = "x" * (MAX_TEXT + 1)
LONE = "a\ud800"  # a lone surrogate: refused where read, unexplainable where mapped


def _section(attributes: dict[str, Any], *path: str) -> dict[str, Any]:
    for step in path:
        inner = attributes.get(step)
        if type(inner) is not dict:
            inner = attributes[step] = {}
        attributes = inner
    return attributes


def hostile(rnd: random.Random, check: Any) -> Any:
    """`check` spoiled where a door that builds little still checks (or maps for the explanation)."""
    attributes = check.get("attributes") if type(check) is dict else None
    if type(attributes) is not dict:
        return check
    http = _section(attributes, "request", "http")
    http.setdefault("method", "GET")
    if type(http.get("path")) is not str:
        http["path"] = "/v1/items"
    for _ in range(rnd.randint(1, 2)):
        spoil = rnd.randrange(14)
        if spoil == 0:
            http["path"] += "?" + "&".join(["a=1"] * (MAX_QUERY_PARAMETERS + rnd.randint(0, 1)))
        elif spoil == 1:
            http["path"] += rnd.choice(["?a=%zz", "?a=%C3", "?b=%41", "#x?a=1", "?a=" + LONE])
        elif spoil == 2:
            _section(attributes, "source")["principal"] = rnd.choice([5, None, ["x"], LONG, LONE])
        elif spoil == 3:
            address = rnd.choice([5, None, LONG, "10.0.0.1", "fd00::1", LONE])
            _section(attributes, "source", "address", "socketAddress")["address"] = address
        elif spoil == 4:
            _section(attributes, "destination")["principal"] = rnd.choice([5, LONG, LONE])
        elif spoil == 5:
            headers = _section(http, "headers")
            headers[rnd.choice(["x-device-os", "x-other"])] = rnd.choice([5, None, LONG, LONE])
        elif spoil == 6:
            _section(http, "headers").update({f"x-{i}": "v" for i in range(MAX_HEADERS + 1)})
        elif spoil == 7:
            http[rnd.choice(["method", "path"])] = LONG
        elif spoil in (8, 9, 10):
            tokens = _section(attributes, "metadataContext", "filterMetadata", JWT_NAMESPACE)
            provider = rnd.choice(["platform.corp-idp", "platform.agents"])
            payload = tokens.get(provider)
            if type(payload) is not dict:
                payload = tokens[provider] = {"sub": "alice", "uid": "bot-1", "kind": "agent"}
            claim = rnd.choice(["email", "groups", "sub", "uid", "kind", "amr", "acr"])
            payload[claim] = rnd.choice([LONE, LONG, 5, [LONE], ["a", 5], ["admins"] * 3])
        elif spoil == 11:
            tokens = _section(attributes, "metadataContext", "filterMetadata", JWT_NAMESPACE)
            tokens[rnd.choice(["platform.corp-idp", "platform.agents"])] = rnd.choice([5, []])
        elif spoil == 12:
            metadata = _section(attributes, "metadataContext")
            metadata["filterMetadata"] = rnd.choice([5, {JWT_NAMESPACE: []}])
        else:
            headers = _section(http, "headers")
            headers["x-lb-tier"] = rnd.choice(["2", "1e3", LONE, "x"])
            headers["x-roles"] = rnd.choice(["a,b", LONE])
    return check


def _at(request: Any, path: tuple[str, ...]) -> Any:
    for step in path:
        if type(request) is not dict:
            return MISSING
        request = request.get(step, MISSING)
    return request


def agree(policies: Any, table: dict[str, DoorMapping], check: Any) -> None:
    try:
        full = cr.request_for(table, check)
    except Refused as exc:
        want = cr.refused(str(exc))
        full = None
    else:
        want = policies.authorize(full)
    got = cr.decide(policies, table, check)
    assert got == want, json.dumps(check)[:2000]
    assert got.explain() == want.explain(), json.dumps(check)[:2000]
    if full is None:
        return
    door = cr.select_door(table, check)
    reads = cr.door_reads(policies)
    attributes = check["attributes"]
    built = cr._compiled(door, reads).body(attributes, attributes.get("contextExtensions"))
    for path in reads:
        assert _at(built, path) == _at(full, path), (path, json.dumps(check)[:2000])


def test_a_policy_reading_little_gets_a_smaller_request() -> None:
    project = project_for(frozenset({"plain"}), frozenset(), False, "deny", False)
    policies = Engine.from_project(project).compiled.policies
    table = doors(project)
    door = table[project.gateways[0].qualified]
    reads = cr.door_reads(policies)
    plan = cr._compiled(door, reads)
    assert not plan.exact and plan.body is not plan.full
    check = {
        "attributes": {
            "request": {"http": {"method": "GET", "path": "/v1/items?a=1"}},
            "source": {"principal": "spiffe://cluster.local/ns/x/sa/y"},
            "contextExtensions": {"mcpdsl.gateway": door.gateway, "mcpdsl.route": "0"},
        }
    }
    built = plan.body(check["attributes"], check["attributes"]["contextExtensions"])
    assert "source" not in built and "query" not in built["request"]
    assert built["principal"] == {}  # `identity` is read by nobody
    assert "identity" in cr.request_for(table, check)["principal"]
    # a policy reading everything a door fills gets the full mapping itself
    everything = project_for(frozenset(SNIPPETS), frozenset(RISK), True, "deny", True)
    policies = Engine.from_project(everything).compiled.policies
    table = doors(everything)
    door = table[everything.gateways[0].qualified]
    assert cr._compiled(door, cr.door_reads(policies)).exact


def agree_on_drawn_requests(project: Any, seed: int) -> None:
    """30 drawn CheckRequests and a hostile twin of each: the partial door agrees on all."""
    policies = Engine.from_project(project).compiled.policies
    table = doors(project)
    rnd = random.Random(seed)
    for _ in range(30):
        agree(policies, table, check_request(rnd, vocab(), project))
        agree(policies, table, hostile(rnd, check_request(rnd, vocab(), project)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.frozensets(st.sampled_from(sorted(SNIPPETS)), max_size=6),
    terms=st.frozensets(st.sampled_from(sorted(RISK)), max_size=2),
    require=st.booleans(),
    default=st.sampled_from(["allow", "deny"]),
    seed=st.integers(0, 2**32),
)
def test_a_partly_mapped_request_decides_as_the_full_one(
    names: frozenset[str], terms: frozenset[str], require: bool, default: str, seed: int
) -> None:
    project = project_for(names, terms, require, default, False)
    agree_on_drawn_requests(project, seed)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.frozensets(st.sampled_from(sorted(SNIPPETS)), max_size=4),
    seed=st.integers(0, 2**32),
)
def test_with_every_other_policy_too(names: frozenset[str], seed: int) -> None:
    """Several policies: the reads are their union (`_evaluate` rather than `_evaluate_one`)."""
    project = project_for(names, frozenset(RISK), True, "deny", True)
    agree_on_drawn_requests(project, seed)
