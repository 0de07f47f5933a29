"""Tests of the Istio target: real-schema validation, exact vs CUSTOM, agreement with the engine.

Every document of every tree (policies/, examples/*, the trees below) is
validated with the `cloudcoil.models.istio` CRD models in strict mode plus
Istio's admission rules (tests/validators.py).  Workloads Istio decides alone
are compared with the in-process evaluator on random mesh requests through an
independent reading of Istio's semantics (tests/compile/istio_matcher.py).
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from istio_matcher import MeshRequest, decide, denied
from repo_paths import example_trees
from validators import validate_istio

from mcpdsl._version import __version__
from mcpdsl.cli import main
from mcpdsl.compile import TargetContext, TargetOutput, istio
from mcpdsl.compile.envoy_authz import Inexpressible
from mcpdsl.compile.istio_rules import Atom, Facts, Translator, path_values, rule_dnf
from mcpdsl.diagnostics import Status
from mcpdsl.evaluate.project import prepare_project
from mcpdsl.ir import model as m
from mcpdsl.pipeline import compile_tree

REPO = Path(__file__).resolve().parents[2]
TREES = [REPO / "policies", *example_trees()]

SERVICES = """
package mesh

service web {
  image "ghcr.io/x/web:1"
  port 8080
  namespace "front"
}

service api {
  image "ghcr.io/x/api:1"
  port 8080
  namespace "core"
  identity "spiffe://corp.example/ns/core/sa/api-sa"
}

service db {
  image "ghcr.io/x/db:1"
  port 5432
  namespace "data"
  stateful
}

scale web { replicas 2..4 target cpu 70% }
scale api { replicas 2..4 target cpu 70% }
"""

EXACT = """
policy east-west {
  default deny
  web-api: allow service web -> service api on GET, POST "/v1/**"
  api-db: allow service api -> service db
    when source.namespace == "core" and source.ip in cidr "10.0.0.0/8"
  probes: allow any -> service [api, db] on GET "/healthz"
  ns-guard: deny any -> service db unless source.namespace in ["core", "data"]
  no-admin: deny any -> service api on DELETE, PUT "/v1/admin/**"
    when source.namespace != "ops"
  either: allow service any -> service web
    when source.namespace == "core" or not (source.ip in cidr "192.168.0.0/16")
}

policy second {
  default deny
  allow any -> service api when source.ip in cidr "10.0.0.0/8"
  allow any -> service [web, db] on GET, POST, PUT, DELETE
}

policy guard {
  default allow
  deny any -> any on POST "/v1/internal" when not (source.namespace == "front")
  deny any -> service web when source.namespace not in ["front", "core", "data"]
}
"""


# ------------------------------------------------------------------ helpers


def ctx() -> TargetContext:
    return TargetContext(version=__version__)


@cache
def _compiled(path: str) -> m.Project:
    compilation = compile_tree(path)
    errors = [f"{d.code}: {d.message}" for d in compilation.diagnostics if d.is_error]
    assert compilation.project is not None and not errors, errors
    return compilation.project


def tree(tmp_path: Path, text: str, name: str = "t") -> m.Project:
    root = tmp_path / name
    root.mkdir()
    (root / "main.mcp").write_text(text)
    return _compiled(str(root))


def docs(out: TargetOutput) -> dict[str, dict[str, Any]]:
    return {a.path: yaml.safe_load(a.content) for a in out.artifacts}


_ORDER = {"RequestAuthentication": 0, "CUSTOM": 1, "DENY": 2, "ALLOW": 3}


def workload(out: TargetOutput, namespace: str, name: str) -> list[dict[str, Any]]:
    """The documents selecting one workload: tokens, then CUSTOM, DENY, ALLOW (Istio's order)."""
    prefix = f"istio/{namespace}/"
    found = [
        d
        for path, d in sorted(docs(out).items())
        if path.startswith(prefix)
        and d["spec"].get("selector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
        == name
    ]
    return sorted(found, key=lambda d: _ORDER[d["spec"].get("action", d["kind"])])


def kinds(policies: list[dict[str, Any]]) -> list[str]:
    return [d["spec"].get("action", d["kind"]) for d in policies]


def records(out: TargetOutput, rule: str) -> list[tuple[str, Status]]:
    return [(e.where, e.status) for e in out.enforcement if e.rule == rule]


def facts(**changes: Any) -> Facts:
    base = Facts(
        service="api",
        identities={"web": ("cluster.local/ns/front/sa/web",), "api": ("td/ns/core/sa/api",)},
        namespaces_exact=True,
        verifies_tokens=False,
        mfa_claim=("amr", ("mfa",)),
    )
    return Facts(**{**base.__dict__, **changes})


def condition(text: str) -> m.Node:
    """The IR of one rule condition, through the real front end."""
    project = _compiled_condition(text)
    node = project.policies[0].rules[0].condition
    assert node is not None
    return node


@cache
def _compiled_condition(text: str) -> m.Project:
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="istio-cond-"))
    (root / "main.mcp").write_text(
        SERVICES + f"policy p {{\n  default deny\n  allow any -> service api when {text}\n}}\n"
    )
    return _compiled(str(root))


# --------------------------------------------------------------- validation


@pytest.mark.parametrize("path", TREES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_document_of_every_tree_is_valid_istio(path: Path) -> None:
    project = _compiled(str(path))
    out = istio.compile(project, ctx())
    # every tree with services has at least its PeerAuthentications; one without, nothing
    assert bool(out.artifacts) == bool(project.services)
    for name, doc in docs(out).items():
        assert validate_istio(doc) == [], name


def test_the_validator_rejects_what_istio_rejects() -> None:
    good = {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "a", "namespace": "n"},
        "spec": {"action": "DENY", "rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.0/8"]}}]}]},
    }
    assert validate_istio(good) == []
    unknown = json.loads(json.dumps(good))
    unknown["spec"]["rules"][0]["from"][0]["source"]["peers"] = ["x"]
    assert any("unknown field" in e for e in validate_istio(unknown))
    bad_action = json.loads(json.dumps(good))
    bad_action["spec"]["action"] = "REJECT"
    assert validate_istio(bad_action)
    bad_cidr = json.loads(json.dumps(good))
    bad_cidr["spec"]["rules"][0]["from"][0]["source"]["ipBlocks"] = ["10.0.0.0/33"]
    assert validate_istio(bad_cidr)
    custom = json.loads(json.dumps(good))
    custom["spec"]["action"] = "CUSTOM"
    assert any("provider" in e for e in validate_istio(custom))
    operator = istio.mesh_config()
    assert validate_istio(operator) == []
    operator["spec"]["meshConfig"]["extensionProviders"][0]["envoyExtAuthzGrpc"]["port"] = "9191"
    assert validate_istio(operator)


# ------------------------------------------------- the east-west rule api-runs

API_RUNS = """
package platform

service mcp-api {
  image "ghcr.io/mcp/api:5.0.0"
  port 8080
  identity "spiffe://mcp.local/ns/core/sa/mcp-api"
  namespace "core"
  stateful
}

service agent-runtime {
  image "ghcr.io/mcp/agent-runtime:3.4.1"
  port 8081
  identity "spiffe://mcp.local/ns/agents/sa/agent-runtime"
  namespace "agents"
  stateful
}

policy zero-trust {
  default deny
  api-runs: allow service mcp-api -> service agent-runtime on POST "/internal/runs/**"
}
"""


def test_api_runs_alone_is_an_exact_allow(tmp_path: Path) -> None:
    """The peer's SPIFFE identity, the method and `P/**` as `P` + the prefix `P/*`: exact."""
    out = istio.compile(tree(tmp_path, API_RUNS), ctx())
    policies = workload(out, "agents", "agent-runtime")
    assert kinds(policies) == ["ALLOW"]
    assert policies[0]["spec"]["rules"] == [
        {
            "from": [{"source": {"principals": ["mcp.local/ns/core/sa/mcp-api"]}}],
            "to": [
                {
                    "operation": {
                        "methods": ["POST"],
                        "paths": ["/internal/runs", "/internal/runs/*"],
                    }
                }
            ],
        }
    ]
    assert records(out, "zero-trust/api-runs") == [
        ("istio allow, workload agents/agent-runtime", Status.ENFORCED)
    ]
    assert "istio/mesh-config.yaml" not in docs(out)


def test_api_runs_in_the_platform_tree_goes_to_ext_authz_and_says_why() -> None:
    """policies/ has denies on `risk` and `context` reaching every workload: CUSTOM."""
    out = istio.compile(_compiled(str(REPO / "policies")), ctx())
    policies = workload(out, "agents", "agent-runtime")
    assert "ALLOW" not in kinds(policies)
    assert "CUSTOM" in kinds(policies)
    [(where, status)] = records(out, "zero-trust/api-runs")
    assert where.startswith("istio custom -> ext_authz, workload agents/agent-runtime")
    # policies/ accepts token providers, so agent-runtime verifies tokens and its
    # service principals are decided by ext_authz too
    assert "workload delegated: zero-trust/" in where or "verifies tokens" in where
    # its policy may `require mfa` (risk >= 0.5), which nothing proves at ext_authz: fails closed
    assert status is Status.NARROWED
    custom = next(d for d in policies if d["spec"].get("action") == "CUSTOM")
    assert custom["spec"]["provider"] == {"name": istio.EXT_AUTHZ_PROVIDER}
    assert custom["spec"]["rules"] == [{}]
    mesh = docs(out)["istio/mesh-config.yaml"]
    [provider] = mesh["spec"]["meshConfig"]["extensionProviders"]
    assert provider["name"] == istio.EXT_AUTHZ_PROVIDER
    assert provider["envoyExtAuthzGrpc"]["failOpen"] is False


def test_exact_denies_stay_beside_custom_and_inexact_ones_are_reported() -> None:
    out = istio.compile(_compiled(str(REPO / "policies")), ctx())
    deny = next(
        d
        for d in workload(out, "data", "postgres")
        if d["kind"] == "AuthorizationPolicy" and d["spec"].get("action") == "DENY"
    )
    assert deny["metadata"]["annotations"]["mcpdsl.io/rules"] == (
        "zero-trust/db-namespaces, zero-trust/cluster-only"
    )
    assert deny["spec"]["rules"] == [
        {"from": [{"source": {"notNamespaces": ["core", "data"]}}]},
        {"from": [{"source": {"notIpBlocks": ["10.0.0.0/8"]}}]},
    ]
    # a deny on a user principal: policies/ declares the people's provider, so the
    # sidecar verifies their tokens and the deny is exact
    [(where, status), *_] = records(out, "zero-trust/no-humans-in-db")
    assert status is Status.ENFORCED, where
    codes = {d.code for d in out.diagnostics}
    assert {"B0120", "B0121", "B0122"} <= codes


def test_peer_authentication_is_strict_in_every_namespace_of_the_tree() -> None:
    out = istio.compile(_compiled(str(REPO / "policies")), ctx())
    project = _compiled(str(REPO / "policies"))
    peer = {p: d for p, d in docs(out).items() if d["kind"] == "PeerAuthentication"}
    assert {d["metadata"]["namespace"] for d in peer.values()} == {
        s.namespace for s in project.services
    }
    assert all(d["spec"] == {"mtls": {"mode": "STRICT"}} for d in peer.values())


# ------------------------------------------------------- agreement with the engine

_PEERS = {
    "web": "cluster.local/ns/front/sa/web",
    "api": "corp.example/ns/core/sa/api-sa",
    "db": "cluster.local/ns/data/sa/db",
    "ops-tool": "cluster.local/ns/ops/sa/tool",
    "stranger": "other.example/ns/core/sa/intruder",
    "legacy": "cluster.local/ns/front/sa/legacy",
    "odd": "other.example/workload/odd",  # a SPIFFE id of another shape: no namespace
}
_SERVICE_OF = {"web": "web", "api": "api", "db": "db"}
_NAMESPACE = {"web": "front", "api": "core", "db": "data"}


def _source(ip: str, principal: str, service: str | None) -> dict[str, str]:
    """`source` as the CheckRequest mapping builds it: a known service's namespace, else the
    namespace of a Kubernetes-shaped peer identity, else none."""
    parts = principal.split("/")
    if service is not None:
        return {"ip": ip, "namespace": _NAMESPACE[service]}
    if len(parts) == 5 and parts[1] == "ns" and parts[3] == "sa":
        return {"ip": ip, "namespace": parts[2]}
    return {"ip": ip}


@cache
def _exact_tree() -> tuple[m.Project, TargetOutput]:
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="istio-exact-"))
    (root / "main.mcp").write_text(SERVICES + EXACT)
    project = _compiled(str(root))
    return project, istio.compile(project, ctx())


def test_the_exact_tree_is_decided_by_istio_alone() -> None:
    project, out = _exact_tree()
    for service in project.services:
        policies = workload(out, service.namespace, service.name)
        assert "CUSTOM" not in kinds(policies), service.name
    assert all(e.status is Status.ENFORCED for e in out.enforcement)
    assert not any(e.where.startswith("istio custom") for e in out.enforcement)


@settings(max_examples=200, deadline=None)
@given(
    caller=st.sampled_from(sorted(_PEERS)),
    target=st.sampled_from(["web", "api", "db"]),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=st.sampled_from(
        ["/v1", "/v1/", "/v1/x", "/v10", "/v1/admin/x", "/healthz", "/healthz?x=1", "/v1/internal"]
    ),
    ip=st.sampled_from(["10.1.2.3", "192.168.4.5", "172.16.0.1", "10.255.0.9"]),
)
def test_istio_agrees_with_the_engine(
    caller: str, target: str, method: str, path: str, ip: str
) -> None:
    project, out = _exact_tree()
    engine = prepare_project(project)
    principal = _PEERS[caller]
    service = _SERVICE_OF.get(caller)
    request = {
        "principal": {"type": "service", "id": service} if service else {},
        "action": method,
        "resource": {"type": "service", "id": target},
        "request": {"path": path},
        "source": _source(ip, principal, service),
    }
    expected = "allow" if engine.authorize(request).enforced else "deny"
    mesh = MeshRequest(principal=principal, ip=ip, method=method, path=path)
    assert decide(workload(out, _NAMESPACE[target], target), mesh) == expected, request


def test_the_platform_denies_never_deny_what_the_engine_allows() -> None:
    """Beside CUSTOM, a DENY is only safe if it never fires where the engine allows."""
    project = _compiled(str(REPO / "policies"))
    out = istio.compile(project, ctx())
    engine = prepare_project(project)
    for service in project.services:
        policies = workload(out, service.namespace, service.name)
        for peer in project.services:
            principal = f"mcp.local/ns/{peer.namespace}/sa/{peer.name}"
            for ip in ("10.0.0.1", "192.0.2.1"):
                mesh = MeshRequest(principal=principal, ip=ip, method="GET", path="/healthz")
                request = {
                    "principal": {"type": "service", "id": peer.name},
                    "action": "GET",
                    "resource": {"type": "service", "id": service.name},
                    "request": {"path": "/healthz"},
                    "source": {"ip": ip, "namespace": peer.namespace},
                }
                if denied(policies, mesh):
                    assert not engine.authorize(request).allowed, (service.name, peer.name, ip)


# ------------------------------------------------------------ classification


def test_paths_exact_and_prefix_only() -> None:
    assert path_values("/a/b") == ("/a/b",)
    assert path_values("/v1/**") == ("/v1", "/v1/*")
    assert path_values("/**") == ("*",)
    for glob in ("/v1/*/refund", "/v1/**/x", "/a/*", "/x*y/**"):
        with pytest.raises(Inexpressible):
            path_values(glob)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('source.namespace == "core"', [(Atom("namespaces", ("core",)),)]),
        ('not (source.namespace == "core")', [(Atom("namespaces", ("core",), True),)]),
        (
            'source.namespace != "core"',
            [(Atom("namespaces", ("*",)), Atom("namespaces", ("core",), True))],
        ),
        (
            'not (source.namespace != "core")',
            [(Atom("namespaces", ("*",), True),), (Atom("namespaces", ("core",)),)],
        ),
        ('source.ip in cidr "10.0.0.0/8"', [(Atom("ipBlocks", ("10.0.0.0/8",)),)]),
        ('not (source.ip in cidr "10.1.2.3/8")', [(Atom("ipBlocks", ("10.0.0.0/8",), True),)]),
        ('action in ["GET", "HEAD"]', [(Atom("methods", ("GET", "HEAD")),)]),
        ('action != "GET"', [(Atom("methods", ("GET",), True),)]),
        ('request.path matches "/v1/**"', [(Atom("paths", ("/v1", "/v1/*")),)]),
        ('resource.id == "api"', [()]),
        ('resource.id == "web"', []),
        ('source.namespace == "Not A Namespace"', []),
        ("request.auth.mfa", [(Atom("claim:amr", ("mfa",)),)]),
    ],
)
def test_exact_conditions(text: str, expected: list[tuple[Atom, ...]]) -> None:
    assert Translator(facts(verifies_tokens=True)).condition(condition(text)) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("risk < 0.5", "risk"),
        ('context.geo == "IE"', "context.geo"),
        ('request.headers.x-debug == "1"', "request.headers.x-debug"),
        ("not request.auth.mfa", "negatively"),
        ('"sre" in principal.groups', "principal.groups"),
        ('request.path matches "/v1/*/x"', "templates"),
        ('source.namespace == "a*"', "`*`"),
        ("len(request.path) > 3", "len"),
        ("now.hour >= 6", "now.hour"),
    ],
)
def test_inexact_conditions_say_why(text: str, why: str) -> None:
    with pytest.raises(Inexpressible, match=None) as caught:
        Translator(facts(verifies_tokens=True)).condition(condition(text))
    assert why in str(caught.value)


def test_a_missing_claim_never_makes_a_deny_exact() -> None:
    """`deny ... unless request.auth.mfa` fires without a token; Istio's claim test would not."""
    rule = m.Rule(
        id="need-mfa",
        effect="deny",
        principal=m.EntityPattern(),
        resource=m.EntityPattern(type="service"),
        condition=m.Not(operand=m.Attr(root="request", path=("auth", "mfa"))),
    )
    with pytest.raises(Inexpressible, match="negatively"):
        rule_dnf(rule, facts(verifies_tokens=True))


def test_principals() -> None:
    web = m.EntityPattern(type="service", ids=("web",))
    rule = m.Rule(id="r", effect="allow", principal=web, resource=m.EntityPattern())
    assert rule_dnf(rule, facts()) == [(Atom("principals", ("cluster.local/ns/front/sa/web",)),)]
    every = rule.model_copy(update={"principal": m.EntityPattern(type="service")})
    assert rule_dnf(every, facts()) == [
        (Atom("principals", ("cluster.local/ns/front/sa/web", "td/ns/core/sa/api")),)
    ]
    for pattern, why in [
        (m.EntityPattern(type="user"), "token"),
        (m.EntityPattern(type="service", ids=("ghost",)), "not a workload"),
    ]:
        with pytest.raises(Inexpressible, match=why):
            rule_dnf(rule.model_copy(update={"principal": pattern}), facts())
    with pytest.raises(Inexpressible, match="verifies tokens"):
        rule_dnf(rule, facts(verifies_tokens=True))
    shared = facts(identities={"web": ("",), "api": ("td/ns/core/sa/api",)})
    with pytest.raises(Inexpressible, match="shares"):
        rule_dnf(rule, shared)


def test_a_condition_with_too_many_alternatives_is_not_expressed() -> None:
    clauses = " and ".join(
        f'(source.namespace == "a{i}" or source.ip in cidr "10.{i}.0.0/16")' for i in range(8)
    )
    with pytest.raises(Inexpressible, match="alternatives"):
        Translator(facts()).condition(condition(clauses))


# ---------------------------------------------------------------- providers

TOKENS = """
policy people {
  default deny
  mfa-writes: allow any -> service api on POST "/v1/**" when request.auth.mfa
  users-read: allow user any -> service web on GET
  web-api: allow service web -> service api on GET "/v1/**"
}
"""


def _with_providers(project: m.Project, *providers: m.Provider) -> m.Project:
    return project.model_copy(update={"providers": providers})


def _provider(**fields: Any) -> m.Provider:
    values = {"package": "mesh", "name": "idp", "issuer": "https://idp.example"}
    values.update(fields)
    return m.Provider(**values)


def test_request_authentication_and_claims(tmp_path: Path) -> None:
    base = tree(tmp_path, SERVICES + TOKENS)
    project = _with_providers(
        base,
        _provider(jwks_uri="https://idp.example/jwks", audiences=("api",), clock_skew=30),
    )
    out = istio.compile(project, ctx())
    [skew] = [d.message for d in out.diagnostics if d.code == "B0164"]
    assert "30s" in skew and "60s" in skew
    for name, doc in docs(out).items():
        assert validate_istio(doc) == [], name
    api = workload(out, "core", "api")
    assert kinds(api)[0] == "RequestAuthentication"
    assert api[0]["spec"]["jwtRules"] == [
        {
            "audiences": ["api"],
            "forwardOriginalToken": True,
            "issuer": "https://idp.example",
            "jwksUri": "https://idp.example/jwks",
        }
    ]
    # on a workload that verifies tokens, `service web` could be named by a token: CUSTOM
    assert "CUSTOM" in kinds(api) and "ALLOW" not in kinds(api)
    [(where, _)] = records(out, "people/web-api")
    assert "verifies tokens" in where


def test_a_claim_condition_alone_is_an_exact_allow(tmp_path: Path) -> None:
    text = SERVICES + (
        "policy people {\n  default deny\n"
        '  mfa-writes: allow any -> service api on POST "/v1/**" when request.auth.mfa\n}\n'
    )
    project = _with_providers(tree(tmp_path, text), _provider(jwks_uri="https://idp.example/k"))
    out = istio.compile(project, ctx())
    api = workload(out, "core", "api")
    assert kinds(api) == ["RequestAuthentication", "ALLOW"]
    assert api[1]["spec"]["rules"] == [
        {
            "to": [{"operation": {"methods": ["POST"], "paths": ["/v1", "/v1/*"]}}],
            "when": [{"key": "request.auth.claims[amr]", "values": ["mfa"]}],
        }
    ]
    with_token = MeshRequest("cluster.local/ns/front/sa/web", "10.0.0.1", "POST", "/v1/x", {})
    assert decide(api, with_token) == "deny"  # no `amr` claim: no match, as MISSING
    mfa = MeshRequest(
        "cluster.local/ns/front/sa/web", "10.0.0.1", "POST", "/v1/x", {"amr": ["pwd", "mfa"]}
    )
    assert decide(api, mfa) == "allow"


def test_jwks_files_are_inlined_and_bad_ones_reported(tmp_path: Path) -> None:
    base = tree(tmp_path, SERVICES + TOKENS)
    root = Path(base.root)
    (root / "keys.json").write_text('{"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}]}')
    (root / "broken.json").write_text("{not json")
    project = _with_providers(
        base,
        _provider(jwks_file="keys.json"),
        _provider(name="bad", issuer="https://bad.example", jwks_file="broken.json"),
        _provider(name="far", issuer="https://far.example", jwks_file="../../etc/passwd"),
        _provider(name="odd", issuer="https://odd.example", jwks_uri="ftp://x", clock_skew=5),
        _provider(name="twin", jwks_uri="https://idp.example/other"),
    )
    out = istio.compile(project, ctx())
    ra = next(d for d in workload(out, "core", "api") if d["kind"] == "RequestAuthentication")
    assert ra["spec"]["jwtRules"] == [
        {
            "forwardOriginalToken": True,
            "issuer": "https://idp.example",
            "jwks": '{"keys":[{"crv":"P-256","kty":"EC","x":"a","y":"b"}]}',
        }
    ]
    b0150 = [d.message for d in out.diagnostics if d.code == "B0160"]
    assert len(b0150) == 4 and all("cannot be verified by Istio" in t for t in b0150)
    assert any("also provider `idp`'s" in t for t in b0150)
    assert validate_istio(ra) == []


def test_without_providers_token_principals_are_reported(tmp_path: Path) -> None:
    out = istio.compile(tree(tmp_path, SERVICES + TOKENS), ctx())
    [(where, status)] = records(out, "people/users-read")
    assert status is Status.NARROWED and "ext_authz" in where
    assert not any(d["kind"] == "RequestAuthentication" for d in docs(out).values())


# ------------------------------------------------------------- identities


def test_the_mesh_trust_domain_names_services_without_identity(tmp_path: Path) -> None:
    project = tree(tmp_path, SERVICES + EXACT)
    meshed = project.model_copy(
        update={"meshes": (m.Mesh(package="mesh", name="m", trust_domain="prod.example"),)}
    )
    assert not any(d.code == "B0163" for d in istio.compile(meshed, ctx()).diagnostics)
    two = meshed.model_copy(
        update={
            "meshes": (*meshed.meshes, m.Mesh(package="mesh", name="n", trust_domain="z.example"))
        }
    )
    assert [d.code for d in istio.compile(two, ctx()).diagnostics].count("B0163") == 1
    allow = workload(istio.compile(meshed, ctx()), "core", "api")[-1]
    assert allow["spec"]["action"] == "ALLOW"
    rules = allow["spec"]["rules"]
    assert rules[0]["from"][0]["source"]["principals"] == ["prod.example/ns/front/sa/web"]


def test_services_sharing_an_identity_are_reported_and_delegated(tmp_path: Path) -> None:
    text = SERVICES.replace(
        'namespace "front"',
        'namespace "core"\n  identity "spiffe://corp.example/ns/core/sa/api-sa"',
    ) + EXACT.replace("source.namespace", 'source.ip in cidr "10.0.0.0/8" or source.namespace')
    out = istio.compile(tree(tmp_path, text), ctx())
    assert sum(d.code == "B0161" for d in out.diagnostics) == 1
    assert "CUSTOM" in kinds(workload(out, "core", "api"))


# ------------------------------------------------------------ hostile input


def test_odd_names_give_valid_documents(tmp_path: Path) -> None:
    text = """
package Weird_Pkg

service API_Server-2 {
  image "ghcr.io/x/api:1"
  port 8080
  namespace "Team A"
  stateful
}

service x--Koln_ {
  image "ghcr.io/x/k:1"
  port 8080
  namespace "team-a"
  stateful
}

policy p {
  default deny
  allow service x--Koln_ -> service API_Server-2 when source.namespace == "team-a"
  deny any -> service x--Koln_ on GET "/we ird/**"
  allow any -> service x--Koln_ on GET "/x" when action == "GE*" or source.namespace == "Team A"
}
"""
    out = istio.compile(tree(tmp_path, text), ctx())
    for name, doc in docs(out).items():
        assert validate_istio(doc) == [], name
    # "Team A" is renamed for Kubernetes: namespace tests cannot be exact any more
    renamed = next(
        d["metadata"]["namespace"]
        for d in docs(out).values()
        if "api-server-2" in d["metadata"]["name"]
    )
    assert renamed.startswith("team-a-")
    assert kinds(workload(out, renamed, "api-server-2")) == ["CUSTOM"]
    assert kinds(workload(out, "team-a", "x--koln")) == ["CUSTOM"]
    reasons = " ".join(e.where for e in out.enforcement)
    assert "renamed for Kubernetes" in reasons
    assert "value holding `*`" in reasons
    assert "`/we ird/**`, which Istio would read as a pattern" in reasons


def test_a_huge_rule_set_is_decided_by_ext_authz_with_a_diagnostic(tmp_path: Path) -> None:
    rules = "\n".join(
        f'  r{i}: allow service web -> service api on GET "/v1/items/{i}"' for i in range(600)
    )
    text = SERVICES + f"policy big {{\n  default deny\n{rules}\n}}\n"
    out = istio.compile(tree(tmp_path, text), ctx())
    assert any(d.code == "B0162" for d in out.diagnostics)
    assert kinds(workload(out, "core", "api")) == ["CUSTOM"]
    for name, doc in docs(out).items():
        assert validate_istio(doc) == [], name


# ------------------------------------------------------ determinism and CLI


@pytest.mark.parametrize("path", [REPO / "policies", REPO / "examples" / "zero-trust"])
def test_two_compilations_are_byte_identical(path: Path) -> None:
    project = _compiled(str(path))
    first = istio.compile(project, ctx())
    second = istio.compile(project, ctx())
    assert [(a.path, a.content) for a in first.artifacts] == [
        (a.path, a.content) for a in second.artifacts
    ]


def test_build_target_istio_from_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["build", str(REPO / "policies"), "--out", str(out), "--target", "istio"]
    )
    assert result.exit_code == 0, result.output
    tops = {p.relative_to(out).parts[0] for p in out.rglob("*") if p.is_file()}
    assert tops == {"istio", "ir", "manifest.json"}
    assert "istio custom -> ext_authz" in " ".join(result.output.split())


def test_paths_of_two_policies_meet_exactly(tmp_path: Path) -> None:
    """Istio ORs ALLOW policies; mcpdsl ANDs its policies: the product meets path values."""
    from mcpdsl.compile.istio_rules import _path_meet

    assert _path_meet("/v1/*", "/v1/a/*") == "/v1/a/*"
    assert _path_meet("/v1/*", "/v1/a") == "/v1/a"
    assert _path_meet("/v1/*", "/v2/*") is None
    assert _path_meet("*", "/x") == "/x"
    assert _path_meet("/x", "/y") is None
    text = SERVICES + (
        "policy a {\n  default deny\n"
        '  allow service web -> service api on GET "/v1/**"\n}\n'
        "policy b {\n  default deny\n"
        '  allow any -> service api on GET "/v1/items/**"\n'
        '  allow any -> service api on * "/v2/**"\n}\n'
    )
    out = istio.compile(tree(tmp_path, text), ctx())
    [allow] = workload(out, "core", "api")
    assert allow["spec"]["rules"] == [
        {
            "from": [{"source": {"principals": ["cluster.local/ns/front/sa/web"]}}],
            "to": [{"operation": {"methods": ["GET"], "paths": ["/v1/items", "/v1/items/*"]}}],
        }
    ]
    web = MeshRequest("cluster.local/ns/front/sa/web", "10.0.0.1", "GET", "/v1/items/3")
    assert decide([allow], web) == "allow"
    assert decide([allow], MeshRequest(web.principal, web.ip, "GET", "/v1/other")) == "deny"


# ------------------------------------------------- random conditions, exactness

_NS = m.Attr(root="source", path=("namespace",))
_IP = m.Attr(root="source", path=("ip",))
_ACTION = m.Attr(root="action")
_PATH = m.Attr(root="request", path=("path",))


def _lit(value: object) -> m.Literal_:
    return m.Literal_(value=value)  # type: ignore[arg-type]


def _list(values: list[str]) -> m.ListExpr:
    return m.ListExpr(items=tuple(_lit(v) for v in values))


_ATOMS = st.one_of(
    st.builds(
        lambda op, v: m.Compare(op=op, left=_NS, right=_lit(v)),
        st.sampled_from(["==", "!="]),
        st.sampled_from(["core", "front", "data", "ops", "Bad NS"]),
    ),
    st.builds(
        lambda vs, neg: m.In(item=_NS, collection=_list(vs), negated=neg),
        st.lists(st.sampled_from(["core", "front", "data", "ops"]), max_size=3),
        st.booleans(),
    ),
    st.builds(
        lambda c: m.InCidr(operand=_IP, cidr=c),
        st.sampled_from(["10.0.0.0/8", "10.1.0.0/16", "192.168.0.0/16", "0.0.0.0/0"]),
    ),
    st.builds(
        lambda op, v: m.Compare(op=op, left=_ACTION, right=_lit(v)),
        st.sampled_from(["==", "!="]),
        st.sampled_from(["GET", "POST"]),
    ),
    st.builds(
        lambda vs, neg: m.In(item=_ACTION, collection=_list(vs), negated=neg),
        st.lists(st.sampled_from(["GET", "POST", "PUT"]), max_size=3),
        st.booleans(),
    ),
    st.builds(
        lambda g: m.Matches(operand=_PATH, pattern=g),
        st.sampled_from(["/v1/**", "/v1/a", "/**", "/v1/a/**"]),
    ),
    st.builds(
        lambda v: m.Compare(op="==", left=m.Attr(root="resource", path=("id",)), right=_lit(v)),
        st.sampled_from(["api", "web"]),
    ),
    st.builds(_lit, st.booleans()),
    # not exact: the workload goes to ext_authz, and compiling must still never fail
    st.sampled_from(
        [
            m.Compare(op=">=", left=m.Attr(root="risk"), right=_lit(Decimal("0.5"))),
            m.Attr(root="context", path=("session", "tainted")),
            m.Attr(root="request", path=("auth", "mfa")),
            m.In(item=_lit("sre"), collection=m.Attr(root="principal", path=("groups",))),
            m.Compare(op=">", left=m.Call(function="len", args=(_PATH,)), right=_lit(Decimal(3))),
            m.Matches(operand=_PATH, pattern="/v1/*/x"),
            m.Compare(op="==", left=_NS, right=_lit("a*")),
        ]
    ),
)

_CONDITIONS = st.recursive(
    _ATOMS,
    lambda inner: st.one_of(
        st.builds(lambda x: m.Not(operand=x), inner),
        st.builds(lambda xs: m.And(operands=tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
        st.builds(lambda xs: m.Or(operands=tuple(xs)), st.lists(inner, min_size=2, max_size=3)),
    ),
    max_leaves=6,
)

_MESH_CALLS = [
    (caller, ip, method, path)
    for caller in ("web", "db", "ops-tool", "stranger", "odd")
    for ip in ("10.1.2.3", "10.200.0.1", "192.168.1.1")
    for method in ("GET", "POST", "PUT")
    for path in ("/v1", "/v1/a", "/v1/a/b", "/v10", "/x")
]


@settings(max_examples=100, deadline=None)
@given(
    cond=_CONDITIONS,
    effect=st.sampled_from(["allow", "deny"]),
    default=st.sampled_from(["allow", "deny"]),
    principal=st.sampled_from([m.EntityPattern(), m.EntityPattern(type="service", ids=("web",))]),
)
def test_every_exact_condition_decides_like_the_engine(
    cond: m.Node, effect: str, default: str, principal: m.EntityPattern
) -> None:
    base, _ = _exact_tree()
    rule = m.Rule(
        id="r",
        effect=effect,  # type: ignore[arg-type]
        principal=principal,
        resource=m.EntityPattern(type="service", ids=("api",)),
        condition=cond,  # type: ignore[arg-type]
    )
    extra = m.Rule(
        id="probe",
        effect="allow" if effect == "deny" else "deny",  # type: ignore[arg-type]
        principal=m.EntityPattern(),
        resource=m.EntityPattern(type="service"),
        path="/x",
    )
    policy = m.Policy(package="mesh", name="p", default=default, rules=(rule, extra))  # type: ignore[arg-type]
    project = base.model_copy(update={"policies": (policy,)})
    out = istio.compile(project, ctx())
    policies = workload(out, "core", "api")
    engine = prepare_project(project)
    delegated = "CUSTOM" in kinds(policies)
    for caller, ip, method, path in _MESH_CALLS:
        principal_id = _PEERS[caller]
        service = _SERVICE_OF.get(caller)
        request = {
            "principal": {"type": "service", "id": service} if service else {},
            "action": method,
            "resource": {"type": "service", "id": "api"},
            "request": {"path": path},
            "source": _source(ip, principal_id, service),
        }
        allowed = engine.authorize(request).enforced
        mesh = MeshRequest(principal=principal_id, ip=ip, method=method, path=path)
        if delegated:
            # ext_authz decides; a DENY beside it may only deny what the engine denies
            assert not (denied(policies, mesh) and allowed), (request, policies)
        else:
            assert decide(policies, mesh) == ("allow" if allowed else "deny"), (request, policies)


_NO_POLICY = """package shop

service api {
  image "example/api:1"
  port  8080
}
"""


def test_a_tree_without_policies_allows_nothing_at_the_sidecar(tmp_path: Path) -> None:
    """No policy allows anything (the engine denies): an ALLOW policy without rules, B0117."""
    out = istio.compile(tree(tmp_path, _NO_POLICY), ctx())
    policies = workload(out, "shop", "api")
    assert kinds(policies) == ["ALLOW"]
    assert "rules" not in policies[0]["spec"]
    peer = MeshRequest(
        principal="cluster.local/ns/shop/sa/web", ip="10.0.0.1", method="GET", path="/"
    )
    assert decide(policies, peer) == "deny"
    assert [d.code for d in out.diagnostics] == ["B0117"]
    opened = istio.compile(
        tree(tmp_path, _NO_POLICY + "\npolicy open { default allow }\n", "o"), ctx()
    )
    assert workload(opened, "shop", "api") == [] and opened.diagnostics == []
