"""The OPA target, judged by the real OPA engine (and rego-cpp where it can).

Every expectation here is derived by hand from docs/semantics.md, never from
the generated Rego: the expression table (fixtures/opa/expressions.txt), exact
decisions of the fixture trees, every `test` block of policies/ and
examples/*, the bundle format, hostile strings and byte-for-byte determinism.
"""

from __future__ import annotations

import doctest
import gzip
import hashlib
import io
import json
import re
import tarfile
import time
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from validators import RegoEvaluator, opa_available, run_opa, run_rego

import mcpdsl
from mcpdsl.compile import TargetContext, TargetOutput, opa_bundle, opa_expr
from mcpdsl.compile import opa as target
from mcpdsl.compile.serialize import dump_yaml
from mcpdsl.compile.server import artifact_view
from mcpdsl.ir import model as m

pytestmark = pytest.mark.skipif(
    not opa_available(),
    reason="system component missing: the OPA engine (opa-golib-python-bindings)",
)

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures" / "opa"
REPO = HERE.parent.parent
CTX = TargetContext(version="0.1.0")
MAIN = "data.mcp.main.decision"
ZT = "data.mcp.platform.zero_trust.decision"
OPS = "data.mcp.ops.change_freeze.decision"

MISSING = {"m": True}
ERROR = {"e": True}


# ------------------------------------------------------------------ helpers


@cache
def compiled(tree: str) -> tuple[m.Project, TargetOutput]:
    project = mcpdsl.load(tree)
    return project, target.compile(project, CTX)


def files(output: TargetOutput) -> dict[str, bytes]:
    return {a.path: a.content for a in output.artifacts}


def modules(output: TargetOutput) -> dict[str, str]:
    return {p: c.decode("utf-8") for p, c in files(output).items() if p.endswith(".rego")}


def regopy_modules(output: TargetOutput) -> dict[str, str]:
    """The modules for rego-cpp: all but mcp.envoy (rego-cpp 1.5 aborts the process on
    `with input as ...`; OPA, the engine that runs it, is tested on it below)."""
    return {p: t for p, t in modules(output).items() if p != "opa/mcp/envoy.rego"}


def data(output: TargetOutput) -> dict[str, Any]:
    return json.loads(files(output)["opa/data.json"])


def fixture(name: str) -> str:
    return str(FIXTURES / name)


def opa_eval(tree: str, request: dict[str, Any], query: str = MAIN) -> Any:
    _, output = compiled(tree)
    return run_opa(modules(output), data(output), request, query)


def decision(
    allowed: bool,
    rules: list[str] | None = None,
    obligations: list[str] | None = None,
    risk: float | int = 0,
    default_applied: bool = False,
) -> dict[str, Any]:
    return {
        "allowed": allowed,
        "obligations": obligations or [],
        "risk": risk,
        "rules": rules or [],
        "default_applied": default_applied,
    }


def same(a: Any, b: Any) -> bool:
    """JSON equality with numbers by value but booleans never equal to numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return Decimal(str(a)) == Decimal(str(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def regopy_safe(value: Any) -> bool:
    """Whether rego-cpp 1.5 reads this input right.

    It mis-reads input strings that need a JSON escape or are not ASCII
    (quotes and backslashes break its input parser; `input.a == "é"` is false
    for the input `"é"`), so such inputs are judged by OPA alone.
    """
    return "\\" not in json.dumps(value, ensure_ascii=True)


def request(
    principal: tuple[str, str],
    action: str,
    resource: tuple[str, str],
    path: str | None = None,
    **attributes: Any,
) -> dict[str, Any]:
    req: dict[str, Any] = {
        "principal": {"type": principal[0], "id": principal[1]},
        "action": action,
        "resource": {"type": resource[0], "id": resource[1]},
        "request": {} if path is None else {"path": path},
    }
    for key, value in attributes.items():
        root, _, rest = key.partition("__")
        cursor = req.setdefault(root, {})
        parts = rest.split("__")
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = value
    return req


# ------------------------------------------------------------------ expressions


def _expression_cases() -> list[tuple[str, dict[str, Any], Any]]:
    cases = []
    for line in (FIXTURES / "expressions.txt").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        expr, given, result = (part.strip() for part in line.rsplit(" | ", 2))
        if result == "MISSING":
            expected: Any = MISSING
        elif result == "ERROR":
            expected = ERROR
        else:
            expected = {"v": json.loads(result)}
        cases.append((expr, json.loads(given), expected))
    return cases


EXPRESSION_CASES = _expression_cases()


@pytest.fixture(scope="module")
def expression_ir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, m.Expr]:
    """The IR of every expression of the table, through the real front end.

    Each expression becomes `allow any -> any when (EXPR) ?? false` (so that a
    string- or number-typed expression passes the condition typecheck) and the
    `??` is peeled off again.
    """
    exprs = sorted({expr for expr, _, _ in EXPRESSION_CASES})
    rules = "\n".join(f"  allow any -> any when ({e}) ?? false" for e in exprs)
    root = tmp_path_factory.mktemp("expressions")
    (root / "t.mcp").write_text(f"package t\n\npolicy table {{\n{rules}\n}}\n", encoding="utf-8")
    project = mcpdsl.load(root)
    out = {}
    for expr, rule in zip(exprs, project.policies[0].rules, strict=True):
        assert isinstance(rule.condition, m.Default)
        out[expr] = rule.condition.operand
    return out


def _probe_modules(code: str, cidr: bool) -> dict[str, str]:
    lib = target.render_template("lib.rego.j2", version="test", cidr=cidr)
    probe = (
        "package probe\n\nimport rego.v1\n\nimport data.mcp.lib\n\n_risk := 0.5\n\n"
        f"result := {code}\n"
    )
    return {"mcp/lib.rego": lib, "probe.rego": probe}


@pytest.mark.parametrize(
    ("expr", "given", "expected"),
    EXPRESSION_CASES,
    ids=[f"{i}:{c[0]}" for i, c in enumerate(EXPRESSION_CASES)],
)
def test_expression_table(
    expression_ir: dict[str, m.Expr], expr: str, given: dict[str, Any], expected: Any
) -> None:
    ir = expression_ir[expr]
    code = opa_expr.render(opa_expr.compile_expr(ir))
    got = run_opa(_probe_modules(code, cidr=True), None, given, "data.probe.result")
    assert same(got, expected), f"OPA: {expr} on {given} gave {got}, want {expected}"
    if not opa_expr.uses_cidr(ir) and regopy_safe(given):
        got = run_rego(_probe_modules(code, cidr=False), None, given, "data.probe.result")
        assert same(got, expected), f"regopy: {expr} on {given} gave {got}, want {expected}"


def test_the_table_covers_every_operator(expression_ir: dict[str, m.Expr]) -> None:
    seen: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, m.Node):
            kind = getattr(node, "kind", None)
            op = getattr(node, "op", None) or getattr(node, "function", None)
            seen.add(f"{kind}:{op}" if op else str(kind))
            for value in node.__dict__.values():
                walk(value)
        elif isinstance(node, tuple):
            for item in node:
                walk(item)

    for ir in expression_ir.values():
        walk(ir)
    wanted = {"literal", "attr", "list", "not", "and", "or", "in", "cidr", "matches"}
    wanted |= {"default", "neg"}
    wanted |= {f"compare:{op}" for op in ("==", "!=", "<", "<=", ">", ">=")}
    wanted |= {f"arith:{op}" for op in "+-*/"}
    wanted |= {f"call:{f}" for f in ("lower", "upper", "len", "startswith", "endswith")}
    wanted |= {"call:contains"}
    assert wanted <= seen, sorted(wanted - seen)


def test_now_without_input_now_reads_the_clock_in_utc(expression_ir: dict[str, m.Expr]) -> None:
    fields = {
        "hour": m.Attr(root="now", path=("hour",)),
        "minute": m.Attr(root="now", path=("minute",)),
        "weekday": m.Attr(root="now", path=("weekday",)),
        "time": m.Attr(root="now", path=("time",)),
        "date": m.Attr(root="now", path=("date",)),
    }
    code = (
        "{"
        + ", ".join(
            f"{json.dumps(k)}: {opa_expr.render(opa_expr.compile_expr(v))}"
            for k, v in fields.items()
        )
        + "}"
    )
    for run in (run_opa, run_rego):
        before = time.gmtime()
        got = run(_probe_modules(code, cidr=False), None, {}, "data.probe.result")
        after = time.gmtime()
        assert isinstance(got, dict)
        values = {k: v["v"] for k, v in got.items()}
        stamps = [before, after]
        assert any(values["hour"] == t.tm_hour and values["minute"] == t.tm_min for t in stamps)
        assert values["time"] == values["hour"] * 60 + values["minute"]
        days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        assert values["weekday"] in {days[t.tm_wday] for t in stamps}
        assert values["date"] in {time.strftime("%Y-%m-%d", t) for t in stamps}


# ------------------------------------------------------------------ decisions: access


ACCESS = fixture("access")
FRONTEND = ("service", "frontend")
API = ("service", "api")
POSTGRES = ("service", "postgres")
MANAGED = {"context__device__managed": True}

ACCESS_CASES: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    (
        "allow with its unconditional obligation",
        request(FRONTEND, "GET", API, "/v1/items", request__auth__mfa=True, **MANAGED),
        ZT,
        decision(True, ["zero-trust/frontend-api"], ["audit"]),
    ),
    (
        "the path glob ignores the query string",
        request(FRONTEND, "POST", API, "/v1?x=/y", request__auth__mfa=True, **MANAGED),
        ZT,
        decision(True, ["zero-trust/frontend-api"], ["audit"]),
    ),
    (
        "/v1/** does not match /v10",
        request(FRONTEND, "GET", API, "/v10", request__auth__mfa=True, **MANAGED),
        ZT,
        decision(False, default_applied=True),
    ),
    (
        "actions are exact and case-sensitive",
        request(FRONTEND, "get", API, "/v1/items", request__auth__mfa=True, **MANAGED),
        ZT,
        decision(False, default_applied=True),
    ),
    (
        "a rule with a path needs a path",
        request(FRONTEND, "GET", API, None, request__auth__mfa=True, **MANAGED),
        ZT,
        decision(False, default_applied=True),
    ),
    (
        "a path that is not a string matches no glob",
        {**request(FRONTEND, "GET", API, None, **MANAGED), "request": {"path": 5, "auth": {}}},
        ZT,
        decision(False, default_applied=True),
    ),
    (
        "the principal type must be equal",
        request(("agent", "frontend"), "GET", API, "/v1/items", request__auth__mfa=True),
        ZT,
        decision(False, risk=0.4, default_applied=True),
    ),
    (
        "a missing attribute never satisfies the condition",
        request(FRONTEND, "GET", API, "/v1/items", **MANAGED),
        ZT,
        decision(False, default_applied=True),
    ),
    (
        "risk terms add exactly: 0.1 + 0.2 is 0.3",
        request(
            FRONTEND,
            "GET",
            API,
            "/v1/items",
            request__auth__mfa=True,
            context__flag_a=True,
            context__flag_b=True,
            **MANAGED,
        ),
        ZT,
        decision(True, ["zero-trust/frontend-api"], ["audit"], risk=0.3),
    ),
    (
        "risk >= 0.5 adds the mfa obligation",
        request(
            FRONTEND,
            "GET",
            API,
            "/v1/items",
            request__auth__mfa=True,
            context__failed_logins=6,
            **MANAGED,
        ),
        ZT,
        decision(True, ["zero-trust/frontend-api"], ["audit", "mfa"], risk=0.5),
    ),
    (
        "the risk sum is clamped to 1 and the risk condition fails",
        request(
            FRONTEND,
            "GET",
            API,
            "/v1/items",
            request__auth__mfa=True,
            context__failed_logins=9,
            context__flag_a=True,
            context__flag_b=True,
            context__geo="SE",
            principal__countries=["NO"],
        ),
        ZT,
        decision(False, risk=1, default_applied=True),
    ),
    (
        "a risk term that errors counts as fired",
        request(FRONTEND, "GET", API, "/v1/items", context__failed_logins="many", **MANAGED),
        ZT,
        decision(False, risk=0.5, default_applied=True),
    ),
    (
        "a risk term over a non-list `not in` errors and counts",
        request(
            FRONTEND,
            "GET",
            API,
            "/v1/items",
            request__auth__mfa=True,
            context__geo="SE",
            principal__countries="SE",
            **MANAGED,
        ),
        ZT,
        decision(True, ["zero-trust/frontend-api"], ["audit"], risk=0.3),
    ),
    (
        "deny overrides allow",
        request(FRONTEND, "CONNECT", POSTGRES, source__namespace="web", **MANAGED),
        ZT,
        decision(False, ["zero-trust/deny-2"]),
    ),
    (
        "unless with a missing attribute denies",
        request(API, "CONNECT", POSTGRES, **MANAGED),
        ZT,
        decision(False, ["zero-trust/deny-2"]),
    ),
    (
        "the data namespace reaches postgres",
        request(API, "CONNECT", POSTGRES, source__namespace="data", **MANAGED),
        ZT,
        decision(True, ["zero-trust/db"], ["audit"]),
    ),
    (
        "a deny whose condition errors fires (fail closed)",
        request(FRONTEND, "DELETE", API, "/v1/items/7", context__batch="lots", **MANAGED),
        ZT,
        decision(False, ["zero-trust/bulk-delete"]),
    ),
    (
        "a deny whose condition is false does not fire",
        request(FRONTEND, "DELETE", API, "/v1/items/7", context__batch=3, **MANAGED),
        ZT,
        decision(True, ["zero-trust/deletes"], ["audit"]),
    ),
    (
        "an allow whose condition errors never fires",
        request(
            ("agent", "bot"),
            "GET",
            API,
            "/v1/items/7",
            principal__tier="gold",
            context__device__trusted="yes",
            **MANAGED,
        ),
        ZT,
        decision(False, default_applied=True),
    ),
    (
        "the agent rule fires for a gold agent on a trusted device",
        request(
            ("agent", "bot"),
            "GET",
            API,
            "/v1/items/7",
            principal__tier="gold",
            context__device__trusted=True,
            **MANAGED,
        ),
        ZT,
        decision(True, ["zero-trust/agents"], ["audit"]),
    ),
    (
        "`*` matches exactly one segment",
        request(
            ("agent", "bot"),
            "GET",
            API,
            "/v1/items/7/x",
            principal__tier="gold",
            context__device__trusted=True,
            **MANAGED,
        ),
        ZT,
        decision(False, default_applied=True),
    ),
    (
        "default allow",
        request(("agent", "bot"), "GET", API, "/v1/items"),
        OPS,
        decision(True, default_applied=True),
    ),
    (
        "a deny on the clock from input.now",
        request(("agent", "bot"), "POST", API, "/v1/items", now__hour=21),
        OPS,
        decision(False, ["change-freeze/deny-1"]),
    ),
    (
        "office hours: the default allows, with obligations",
        request(("agent", "bot"), "POST", API, "/v1/items", now__hour=10),
        OPS,
        decision(True, [], ["approval"], default_applied=True),
    ),
    (
        "a require whose condition errors adds its obligation",
        request(FRONTEND, "GET", API, "/", context__amount="lots"),
        OPS,
        decision(True, [], ["review"], default_applied=True),
    ),
    (
        "risk terms of the second policy, clamped",
        request(
            ("agent", "bot"), "GET", API, "/", principal__tier="bronze", context__failed_logins=4
        ),
        OPS,
        decision(True, risk=1, default_applied=True),
    ),
    (
        "two policies: every policy must allow, obligations are the union",
        request(
            FRONTEND,
            "GET",
            API,
            "/v1/items",
            request__auth__mfa=True,
            context__amount=5000,
            now__hour=3,
            **MANAGED,
        ),
        MAIN,
        decision(True, ["zero-trust/frontend-api"], ["audit", "review"]),
    ),
    (
        "two policies: risk is the maximum, one deny denies",
        request(
            ("agent", "bot"),
            "POST",
            API,
            "/v1/items",
            now__hour=23,
            principal__tier="bronze",
            **MANAGED,
        ),
        MAIN,
        decision(False, ["change-freeze/deny-1"], [], risk=0.6),
    ),
    (
        "two policies: default_applied only if every policy used its default",
        request(("agent", "bot"), "GET", API, "/x", **MANAGED),
        MAIN,
        decision(False, default_applied=True),
    ),
]


@pytest.mark.parametrize(
    ("name", "req", "query", "expected"), ACCESS_CASES, ids=[c[0] for c in ACCESS_CASES]
)
def test_access_decisions(name: str, req: dict[str, Any], query: str, expected: Any) -> None:
    got = opa_eval(ACCESS, req, query)
    assert same(got, expected), f"OPA: {got}"


@pytest.fixture(scope="module")
def access_regopy() -> RegoEvaluator:
    _, output = compiled(ACCESS)
    entrypoints = [q.removeprefix("data.").replace(".", "/") for q in (MAIN, ZT, OPS)]
    return RegoEvaluator(regopy_modules(output), data(output), entrypoints=entrypoints)


@pytest.mark.parametrize(
    ("name", "req", "query", "expected"), ACCESS_CASES, ids=[c[0] for c in ACCESS_CASES]
)
def test_access_decisions_regopy(
    access_regopy: RegoEvaluator, name: str, req: dict[str, Any], query: str, expected: Any
) -> None:
    got = access_regopy.evaluate_entrypoint(query, req)
    assert same(got, expected), f"regopy: {got}"


def test_allow_is_allowed_and_every_obligation_proven() -> None:
    base = request(FRONTEND, "GET", API, "/v1/items", context__failed_logins=6, **MANAGED)
    base["request"]["auth"] = {"mfa": True}
    query = "x := [data.mcp.platform.zero_trust.allow, data.mcp.platform.zero_trust.deny]"
    assert opa_eval(ACCESS, base, query) == {"x": [False, True]}  # audit unproven
    base["request"]["auth"]["audit"] = "true"  # a string proves nothing
    assert opa_eval(ACCESS, base, query) == {"x": [False, True]}
    base["request"]["auth"]["audit"] = True
    assert opa_eval(ACCESS, base, query) == {"x": [True, False]}
    # main: the union (audit, mfa) of zero-trust and approval-free change-freeze
    assert opa_eval(ACCESS, base, "data.mcp.main.allow") is True
    base["request"]["auth"]["mfa"] = 1
    assert opa_eval(ACCESS, base, "data.mcp.main.allow") is False


def test_main_allow_needs_every_policy() -> None:
    req = request(("agent", "bot"), "POST", API, "/v1/items", now__hour=10, **MANAGED)
    req["request"]["auth"] = {"approval": True, "audit": True}
    assert opa_eval(ACCESS, req, "data.mcp.ops.change_freeze.allow") is True
    assert opa_eval(ACCESS, req, "data.mcp.main.allow") is False  # zero-trust denies
    assert opa_eval(ACCESS, req, "data.mcp.main.deny") is True


# ------------------------------------------------------------------ decisions: network (cidr)


NETWORK = fixture("network")


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("10.1.2.3", decision(True, ["network/pod-network"])),
        ("192.168.1.1", decision(False, ["network/outside"])),
        (None, decision(False, ["network/outside"])),  # missing: not in the network
        ("not-an-ip", decision(False, ["network/outside"])),
        ("::ffff:10.1.2.3", decision(False, ["network/outside"])),
        (167837955, decision(False, ["network/outside"])),  # ERROR: the deny fails closed
    ],
)
def test_network_decisions(ip: Any, expected: dict[str, Any]) -> None:
    req = request(API, "CONNECT", POSTGRES)
    if ip is not None:
        req["source"] = {"ip": ip}
    assert same(opa_eval(NETWORK, req, "data.mcp.platform.network.decision"), expected)


def test_ipv6_network() -> None:
    req = request(POSTGRES, "GET", API, source__ip="fd00:1::5")
    assert same(opa_eval(NETWORK, req), decision(True, ["network/v6"]))
    req = request(POSTGRES, "GET", API, source__ip="10.1.2.3")
    assert same(opa_eval(NETWORK, req), decision(False, default_applied=True))


def check_request(
    peer: str | None, method: str, path: str, ip: str, destination: str | None
) -> dict[str, Any]:
    """An east-west CheckRequest (Istio CUSTOM) as the OPA-Envoy plugin gives it to OPA."""
    source: dict[str, Any] = {"address": {"socketAddress": {"address": ip, "portValue": 40000}}}
    if peer is not None:
        source["principal"] = peer
    attributes: dict[str, Any] = {
        "source": source,
        "request": {"http": {"method": method, "path": path, "headers": {"x-a": "1"}}},
    }
    if destination is not None:
        attributes["destination"] = {"principal": destination}
    return {"attributes": attributes, "parsed_path": [], "parsed_query": {}}


API_IDENTITY = "spiffe://mcp.local/ns/core/sa/api"
# postgres declares no identity: it runs as its workload identity (mcpdsl.ir.workload)
POSTGRES_IDENTITY = "spiffe://cluster.local/ns/data/sa/postgres"


def test_envoy_entry_point_maps_a_check_request() -> None:
    query = "x := [data.mcp.envoy.request, data.mcp.envoy.decision, data.mcp.envoy.allow]"
    inside = check_request(API_IDENTITY, "CONNECT", "/?a=%41", "10.1.2.3", POSTGRES_IDENTITY)
    got = opa_eval(NETWORK, inside, query)["x"]
    assert got[0] == {
        "principal": {"type": "service", "id": "api", "identity": API_IDENTITY},
        "action": "CONNECT",
        "resource": {"type": "service", "id": "postgres"},
        "request": {"path": "/", "query": {"a": "A"}, "headers": {"x-a": "1"}, "auth": {}},
        "source": {"ip": "10.1.2.3", "namespace": "core"},
        "context": {},
    }
    assert same(got[1], decision(True, ["network/pod-network"]))
    assert got[1] == opa_eval(NETWORK, got[0]) and got[2] is True
    outside = check_request(API_IDENTITY, "CONNECT", "/", "192.168.0.1", POSTGRES_IDENTITY)
    assert opa_eval(NETWORK, outside, query)["x"][1:] == [
        decision(False, ["network/outside"]),
        False,
    ]


def test_envoy_entry_point_without_a_known_identity() -> None:
    query = "x := [data.mcp.envoy.request, data.mcp.envoy.allow]"
    stranger = "spiffe://mcp.local/ns/data/sa/etl"
    got = opa_eval(NETWORK, check_request(stranger, "GET", "/", "10.1.2.3", None), query)["x"]
    assert got[0]["principal"] == {"identity": stranger}
    assert got[0]["source"] == {"ip": "10.1.2.3", "namespace": "data"}
    assert got[1] is False
    got = opa_eval(NETWORK, check_request(None, "GET", "/", "", None), query)["x"]
    assert got[0]["principal"] == {} and got[0]["resource"] == {} and got[0]["source"] == {}
    assert got[1] is False
    for garbage in ({"attributes": "x"}, {"attributes": {"request": 5, "source": []}}, []):
        assert opa_eval(NETWORK, garbage, "data.mcp.envoy.allow") is False
        refusal = opa_eval(NETWORK, garbage, "data.mcp.envoy.decision")["refusal"]
        assert refusal.startswith("the CheckRequest ")


def test_envoy_entry_point_proves_no_obligation_without_a_provider() -> None:
    frontend = "spiffe://mcp.local/ns/web/sa/frontend"
    req = check_request(frontend, "DELETE", "/v1/items/1", "10.0.0.1", API_IDENTITY)
    got = opa_eval(ACCESS, req, "x := [data.mcp.envoy.decision, data.mcp.envoy.allow]")["x"]
    assert same(got[0], decision(True, ["zero-trust/deletes"], ["audit"], risk=0.4))
    assert got[1] is False


def test_regopy_lib_has_no_cidr_without_in_cidr() -> None:
    _, access = compiled(ACCESS)
    _, network = compiled(NETWORK)
    assert "net.cidr" not in modules(access)["opa/mcp/lib.rego"]
    assert "net.cidr_contains" in modules(network)["opa/mcp/lib.rego"]


# ------------------------------------------------------------------ test blocks


def _trees() -> list[str]:
    trees = [fixture(n) for n in ("access", "network", "injection")]
    for candidate in [REPO / "policies", *sorted((REPO / "examples").glob("*"))]:
        if candidate.is_dir() and any(candidate.rglob("*.mcp")):
            trees.append(str(candidate))
    return trees


def _request_tests() -> list[tuple[str, str]]:
    out = []
    for tree in _trees():
        try:
            project = mcpdsl.load(tree)
        except mcpdsl.CompileError:
            if tree.startswith(str(FIXTURES)):
                raise  # our own fixtures must compile
            out.append((tree, "<does not compile>"))
            continue
        out.extend((tree, t.name) for t in project.tests if t.request is not None)
    return out


REQUEST_TESTS = _request_tests()


def _tree_id(tree: str) -> str:
    return str(Path(tree).relative_to(REPO)) if Path(tree).is_relative_to(REPO) else tree


@pytest.mark.parametrize(
    ("tree", "name"), REQUEST_TESTS, ids=[f"{_tree_id(t)}::{n}" for t, n in REQUEST_TESTS]
)
def test_test_blocks_pass_against_the_rego(tree: str, name: str) -> None:
    if name == "<does not compile>":
        pytest.skip(f"{tree} does not compile (other tests report it)")
    project, output = compiled(tree)
    test = next(t for t in project.tests if t.name == name and t.request is not None)
    engines = [("OPA", lambda r: run_opa(modules(output), data(output), r, MAIN))]
    no_cidr = not any("net.cidr" in text for text in modules(output).values())
    if no_cidr and regopy_safe(test.request):
        engines.append(
            ("regopy", lambda r: run_rego(regopy_modules(output), data(output), r, MAIN))
        )
    view = artifact_view(project)
    full_engine, view_engine = mcpdsl.Engine.from_project(project), mcpdsl.Engine.from_project(view)
    served = (
        full_engine.authorize(test.request).as_dict()
        != view_engine.authorize(test.request).as_dict()
    )
    for engine, evaluate in engines:
        got = evaluate(test.request)
        if served:
            # the decision depends on the server's counters (B0171): the bundle decides
            # as the engine does without the rules that need them
            want = view_engine.authorize(test.request).as_dict()
            want.pop("enforced")
            assert same(got, want), f"{engine}: {got} != {want}"
            continue
        for expect in test.expect:
            if expect.kind == "decision":
                assert got["allowed"] is expect.allowed, f"{engine}: {got}"
                if expect.obligations is not None:
                    assert tuple(got["obligations"]) == expect.obligations, f"{engine}: {got}"
            elif expect.kind == "risk":
                assert Decimal(str(got["risk"])) == expect.risk, f"{engine}: {got}"


# ------------------------------------------------------------------ injection


INJECTION = fixture("injection")
EVIL_TOOL = 'evil"\n}\npackage evil\nallow := true # \\ é ✓'
EVIL_AGENT = 'bot"}\npackage evil'


def test_hostile_strings_stay_literals() -> None:
    _, output = compiled(INJECTION)
    for path, text in modules(output).items():
        packages = [line for line in text.splitlines() if line.startswith("package ")]
        assert len(packages) == 1, (path, packages)
        assert "package evil" not in packages[0]
        assert text.isascii(), path
    # OPA compiles the modules together (run_opa raises otherwise)
    cases = [
        (request(("agent", EVIL_AGENT), "invoke", ("tool", EVIL_TOOL)), ["quoting/tool-name"]),
        (request(("agent", "bot"), "invoke", ("tool", EVIL_TOOL)), None),
        (request(("agent", EVIL_AGENT), "invoke", ("tool", "evil")), None),
        (request(("user", "u"), "GET", ("service", "s"), '/a"b/c/}/\n/é✓'), ["quoting/odd-path"]),
        (request(("user", "u"), "GET", ("service", "s"), '/a"b/c/}/\n/é✓/x?q\\'), ["quoting/odd-path"]),
        (request(("user", "u"), "GET", ("service", "s"), '/a"b/c/}/\n/e✓'), None),
        (request(("user", "u"), "GET", ("service", "s"), '/a"b/d/}/\n/é✓'), None),
        (
            request(("user", "u"), "POST", ("service", "s"), None, context__note='"\n}\npackage evil\n', context__who="ünïcödé"),
            ["quoting/strings"],
        ),
        (
            request(("user", "u"), "POST", ("service", "s"), None, context__note='"\n}\npackage evil', context__who="}"),
            None,
        ),
    ]  # fmt: skip
    for req, rules in cases:
        got = opa_eval(INJECTION, req)
        want = decision(True, rules) if rules else decision(False, default_applied=True)
        assert same(got, want), (req, got)
        if regopy_safe(req):
            assert same(run_rego(regopy_modules(output), data(output), req, MAIN), want)
    denied = request(("user", "u"), "DELETE", ("service", "s"), None, context__reason="y")
    assert same(opa_eval(INJECTION, denied), decision(False, ["quoting/deny-4"]))
    quoted = request(("user", "u"), "DELETE", ("service", "s"), None, context__reason='x" # }')
    assert same(opa_eval(INJECTION, quoted), decision(False, default_applied=True))


def test_hostile_ids_in_comments_stay_on_one_line() -> None:
    _, output = compiled(INJECTION)
    text = modules(output)["opa/injection/quoting.rego"]
    comment_lines = [line for line in text.splitlines() if line.startswith("# quoting/")]
    assert len(comment_lines) == 4
    assert all(line.isascii() for line in comment_lines)


def test_rego_string_round_trips_through_opa() -> None:
    nasty = ['"', "\\", "\n", "\r\t", "}", '" + "\n" + "package evil', "é✓😀", "\x00\x7f", "\u2028"]
    source = (
        "package s\n\nimport rego.v1\n\nvalues := ["
        + ", ".join(opa_expr.rego_string(s) for s in nasty)
        + "]\n"
    )
    assert run_opa({"s.rego": source}, None, {}, "data.s.values") == nasty
    assert run_rego({"s.rego": source}, None, {}, "data.s.values") == nasty


# ------------------------------------------------------------------ naming


def test_names_are_sanitised_injectively(tmp_path: Path) -> None:
    services = 'service api {\n  image "x"\n  port 80\n  namespace "n"\n  stateful\n}\n'
    (tmp_path / "a.mcp").write_text(
        "package lib\n\n" + services + "\npolicy a-b {\n  allow any -> service api\n}\n"
        "\npolicy a_b {\n  deny any -> service api\n}\n\npolicy null {\n  default allow\n}\n",
        encoding="utf-8",
    )
    (tmp_path / "b.mcp").write_text(
        "package main-pkg\n\npolicy if {\n  default allow\n}\n", encoding="utf-8"
    )
    project = mcpdsl.load(tmp_path)
    names = target.rego_names(project)
    idents = set(names.values())
    assert len(idents) == len(names) == 4
    assert names[("lib", "a_b")][1] == "a_b"
    assert names[("lib", "a-b")][1].startswith("a_b_")
    assert names[("lib", "a-b")][0].startswith("lib_")
    assert names[("main-pkg", "if")] == ("main_pkg", names[("main-pkg", "if")][1])
    assert names[("main-pkg", "if")][1].startswith("if_")
    for package, policy in idents:
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", package)
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", policy)
    output = target.compile(project, CTX)
    paths = sorted(files(output))
    assert "opa/mcp/lib.rego" in paths and "opa/mcp/main.rego" in paths
    got = run_opa(modules(output), data(output), request(("user", "u"), "GET", API), MAIN)
    # a-b allows, a_b denies, default and if fall back to allow
    assert same(got, decision(False, ["a-b/allow-1", "a_b/deny-1"]))
    meta = data(output)["mcp"]["meta"]
    decisions = {p["policy"]: p["decision"] for p in meta["policies"]}
    for (_package, policy), (pkg_ident, ident) in names.items():
        assert decisions[policy] == f"data.mcp.{pkg_ident}.{ident}.decision"
        assert f"opa/{pkg_ident}/{ident}.rego" in paths


def test_a_tree_without_policies_allows_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.mcp").write_text(
        'package p\n\nservice api {\n  image "x"\n  port 80\n  namespace "n"\n  stateful\n}\n',
        encoding="utf-8",
    )
    output = target.compile(mcpdsl.load(tmp_path), CTX)
    assert same(
        run_opa(modules(output), data(output), request(FRONTEND, "GET", API), MAIN),
        decision(False, default_applied=True),
    )
    assert output.enforcement == []


def test_risk_weights_finer_than_millionths_stay_exact(tmp_path: Path) -> None:
    (tmp_path / "a.mcp").write_text(
        "package p\n\npolicy fine {\n  default allow\n  risk {\n"
        "    0.1234567 when context.a\n    0.0000001 when context.b\n  }\n}\n",
        encoding="utf-8",
    )
    project = mcpdsl.load(tmp_path)
    assert target.risk_scale(project.policies[0]) == 10**7
    output = target.compile(project, CTX)
    req = request(FRONTEND, "GET", API, context__a=True, context__b=True)
    assert same(run_opa(modules(output), data(output), req, MAIN)["risk"], 0.1234568)


# ------------------------------------------------------------------ artifacts and bundle


def test_artifact_layout_and_enforcement() -> None:
    project, output = compiled(ACCESS)
    assert sorted(files(output)) == [
        "opa/bundle.tar.gz",
        "opa/config.yaml",
        "opa/data.json",
        "opa/mcp/envoy.rego",
        "opa/mcp/lib.rego",
        "opa/mcp/main.rego",
        "opa/ops/change_freeze.rego",
        "opa/platform/zero_trust.rego",
    ]
    for path, text in modules(output).items():
        assert "\nimport rego.v1\n" in text, path
    expected = {
        (f"{p.name}/{r.id}", "opa", "data.mcp.platform.zero_trust.decision")
        if p.package == "platform"
        else (f"{p.name}/{r.id}", "opa", "data.mcp.ops.change_freeze.decision")
        for p in project.policies
        for r in p.rules
    }
    assert {(e.rule, e.target, e.where) for e in output.enforcement} == expected
    meta = data(output)["mcp"]["meta"]
    assert meta["identities"] == {
        "spiffe://mcp.local/ns/core/sa/api": "platform.api",
        "spiffe://mcp.local/ns/web/sa/frontend": "platform.frontend",
    }
    assert meta["entrypoints"] == {"allow": "data.mcp.main.allow", "decision": MAIN}


def _bundle(output: TargetOutput) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    raw = files(output)["opa/bundle.tar.gz"]
    out = {}
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            assert handle is not None
            out[member.name] = (member, handle.read())
    return out


@pytest.mark.parametrize("tree", ["access", "network", "injection"])
def test_bundle(tree: str) -> None:
    _, output = compiled(fixture(tree))
    entries = _bundle(output)
    names = list(entries)
    assert names == sorted(names)
    assert ".manifest" in names and "data.json" in names
    for member, _ in entries.values():
        assert member.isreg() and member.mtime == 0 and member.mode == 0o644
        assert member.uid == member.gid == 0 and member.uname == member.gname == ""
    manifest = json.loads(entries[".manifest"][1])
    assert manifest["roots"] == ["mcp"]
    assert manifest["rego_version"] == 1
    recomputed = hashlib.sha256(
        "".join(
            f"{hashlib.sha256(content).hexdigest()}  {name}\n"
            for name, (_, content) in sorted(entries.items())
            if name != ".manifest"
        ).encode()
    ).hexdigest()
    assert manifest["revision"] == recomputed
    # the bundle holds exactly the loose artifacts (OPA's own configuration is not one)
    loose = {
        p.removeprefix("opa/"): c
        for p, c in files(output).items()
        if p not in ("opa/bundle.tar.gz", "opa/config.yaml")
    }
    assert {n: c for n, (_, c) in entries.items() if n != ".manifest"} == loose
    # every package and every data path lies under the roots
    bundle_modules = {n: c.decode() for n, (_, c) in entries.items() if n.endswith(".rego")}
    for name, text in bundle_modules.items():
        package = re.search(r"^package (\S+)$", text, re.M)
        assert package is not None and package.group(1).split(".")[0] == "mcp", name
    bundle_data = json.loads(entries["data.json"][1])
    assert list(bundle_data) == ["mcp"]
    # the real OPA compiles the bundle's modules together with its data
    assert run_opa(bundle_modules, bundle_data, {}, "x := data.mcp.main.decision.allowed") == {
        "x": False
    }


def test_gzip_header_is_deterministic() -> None:
    _, output = compiled(ACCESS)
    raw = files(output)["opa/bundle.tar.gz"]
    assert raw[:2] == b"\x1f\x8b"
    assert raw[4:8] == b"\0\0\0\0"  # mtime 0
    assert raw[3] & 0x08 == 0  # no file name
    assert gzip.decompress(raw)  # a valid stream


def test_revision_changes_with_content() -> None:
    files_a = {"a.rego": b"package mcp.a\n", "data.json": b"{}\n"}
    files_b = {"a.rego": b"package mcp.a\n\n", "data.json": b"{}\n"}
    revision = opa_bundle.bundle_revision
    assert revision(files_a) != revision(files_b)
    assert revision(files_a) == revision(dict(reversed(list(files_a.items()))))
    assert revision({**files_a, ".manifest": b"x"}) == revision(files_a)


@pytest.mark.parametrize("tree", ["access", "network", "injection"])
def test_two_builds_are_byte_identical(tree: str) -> None:
    first = target.compile(mcpdsl.load(fixture(tree)), CTX)
    second = target.compile(mcpdsl.load(fixture(tree)), CTX)
    assert [(a.path, a.content) for a in first.artifacts] == [
        (a.path, a.content) for a in second.artifacts
    ]
    assert first.enforcement == second.enforcement


def test_build_registers_the_target(tmp_path: Path) -> None:
    from mcpdsl.builder.artifacts import compile_artifacts
    from mcpdsl.pipeline import compile_tree

    result = compile_artifacts(compile_tree(ACCESS), ("opa",))
    paths = [a.path for a in result.artifacts]
    assert "opa/bundle.tar.gz" in paths and paths[-1] == "manifest.json"
    assert result.per_target == {"opa": 8}


def test_generated_rego_snapshot(snapshot: Any) -> None:
    _, output = compiled(ACCESS)
    assert modules(output) == snapshot
    _, injection = compiled(INJECTION)
    assert modules(injection)["opa/injection/quoting.rego"] == snapshot


def test_doctests() -> None:
    for module in (target, opa_expr):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


# ------------------------------------------------------------------ agreement with the engine


def _engine_value(value: Any) -> Any:
    from mcpdsl.engine import ERROR as ENGINE_ERROR
    from mcpdsl.engine import MISSING as ENGINE_MISSING

    def plain(x: Any) -> Any:
        if isinstance(x, Decimal):
            return int(x) if x == x.to_integral_value() else float(x)
        if isinstance(x, (list, tuple)):
            return [plain(i) for i in x]
        if isinstance(x, dict):
            return {k: plain(i) for k, i in x.items()}
        return x

    if value is ENGINE_MISSING:
        return MISSING
    if value is ENGINE_ERROR:
        return ERROR
    return {"v": plain(value)}


def test_engine_agrees_on_the_expression_table(expression_ir: dict[str, m.Expr]) -> None:
    """The in-process engine's reference evaluator gives the table's results too."""
    interp = pytest.importorskip("mcpdsl.evaluate.interp")
    for expr, given, expected in EXPRESSION_CASES:
        got = _engine_value(interp.evaluate(expression_ir[expr], given, Decimal("0.5")))
        assert same(got, expected), f"engine: {expr} on {given} gave {got}, want {expected}"


def _agreement_requests() -> list[tuple[str, dict[str, Any]]]:
    cases = [(ACCESS, req) for _, req, _, _ in ACCESS_CASES]
    for ip in ("10.1.2.3", "192.168.1.1", "::ffff:10.1.2.3", "fd00::1", 5):
        cases.append((NETWORK, request(API, "CONNECT", POSTGRES, source__ip=ip)))
        cases.append((NETWORK, request(POSTGRES, "GET", API, source__ip=ip)))
    for tree, name in REQUEST_TESTS:
        if name != "<does not compile>":
            project, _ = compiled(tree)
            test = next(t for t in project.tests if t.name == name and t.request is not None)
            assert test.request is not None
            cases.append((tree, test.request))
    return cases


def test_engine_agrees_on_every_decision() -> None:
    """OPA's `data.mcp.main` and `Engine.authorize` give the same decision and enforcement."""
    engine_module = pytest.importorskip("mcpdsl.engine")
    engines: dict[str, Any] = {}
    for tree, req in _agreement_requests():
        if tree not in engines:
            # rules needing the decision server never fire in the bundle (B0171)
            engines[tree] = engine_module.Engine.from_project(artifact_view(compiled(tree)[0]))
        want = engines[tree].authorize(req).as_dict()
        enforced = want.pop("enforced")
        got = opa_eval(tree, req, "x := [data.mcp.main.decision, data.mcp.main.allow]")["x"]
        assert same(got[0], want), (tree, req, got[0], want)
        assert got[1] is enforced, (tree, req)


# ------------------------------------------------------------------ OPA configuration (config.yaml)

POLICIES = str(REPO / "policies")


def opa_config(output: TargetOutput) -> dict[str, Any]:
    doc = yaml.safe_load(files(output)["opa/config.yaml"])
    assert isinstance(doc, dict)
    return doc


def test_config_serves_mcp_envoy_allow_with_the_envoy_plugin() -> None:
    from mcpdsl.compile.envoy_clusters import OPA_PORT

    doc = opa_config(compiled(ACCESS)[1])
    plugin = doc["plugins"]["envoy_ext_authz_grpc"]
    # the plugin's `path` is the decision's document path without `data.`, in `/` form
    assert plugin == {
        "addr": f":{OPA_PORT}",
        "path": "mcp/envoy/allow",
        "dry-run": False,
        "enable-reflection": False,
    }
    # the bundle comes from a declared service; no decision_logs section, since one
    # without `console: true` would upload decision logs to that (first) service
    assert doc["services"] == {"mcpdsl": {"url": "http://mcpdsl-bundles.mcpdsl-system.svc"}}
    assert doc["bundles"] == {"mcp": {"service": "mcpdsl", "resource": "bundle.tar.gz"}}
    assert set(doc) == {"services", "bundles", "plugins"}


def _delegated_route(project: m.Project, path: str) -> dict[str, str]:
    """The context extensions the Envoy target sends for the delegated route `path`."""
    from mcpdsl.compile import envoy

    output = envoy.compile(project, CTX)
    (bootstrap,) = [json.loads(a.content) for a in output.artifacts if a.path.endswith(".json")]
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    for route in hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]:
        if route["match"].get("path_separated_prefix") == path:
            per_route = route["typed_per_filter_config"]["envoy.filters.http.ext_authz"]
            extensions: dict[str, str] = per_route["check_settings"]["context_extensions"]
            return extensions
    raise KeyError(path)


def test_config_decision_path_agrees_with_the_engine_on_a_delegated_route() -> None:
    """Ask OPA what the plugin asks (`data.` + path) for CheckRequests on a delegated
    route of policies/, and the engine for the equivalent mcpdsl requests."""
    engine_module = pytest.importorskip("mcpdsl.engine")
    project, output = compiled(POLICIES)
    query = "data." + opa_config(output)["plugins"]["envoy_ext_authz_grpc"]["path"].replace(
        "/", "."
    )
    assert query == "data.mcp.envoy.allow"
    extensions = _delegated_route(project, "/v1")  # route "/v1/**" -> service mcp-api
    assert extensions["mcpdsl.resource.type"] == "service"
    assert extensions["mcpdsl.resource.id"] == "mcp-api"
    engine = engine_module.Engine.from_project(project)
    edge = ("api-gateway", "spiffe://mcp.local/ns/edge/sa/api-gateway", "edge")
    core = ("mcp-api", "spiffe://mcp.local/ns/core/sa/mcp-api", "core")
    cases = [
        (edge, "GET", "/v1/items", True),
        (edge, "DELETE", "/v1/items/7", True),
        (edge, "PATCH", "/v1/items/7", False),
        (core, "GET", "/v1/items", False),
    ]
    for (name, identity, namespace), method, path, expected in cases:
        check = {
            "attributes": {
                "source": {
                    "principal": identity,
                    "address": {"socketAddress": {"address": "10.0.0.5", "portValue": 40000}},
                },
                "request": {"http": {"method": method, "path": path, "headers": {"x-a": "1"}}},
                "contextExtensions": extensions,
            },
            "parsed_path": [],
            "parsed_query": {},
        }
        equivalent = {
            "principal": {"type": "service", "id": name, "identity": identity},
            "action": method,
            "resource": {"type": "service", "id": "mcp-api"},
            "request": {"path": path, "headers": {"x-a": "1"}, "auth": {}},
            "source": {"ip": "10.0.0.5", "namespace": namespace},
            "context": {},
        }
        want = engine.authorize(equivalent).as_dict()["enforced"]
        got = run_opa(modules(output), data(output), check, query)
        assert got is want is expected, (name, method, path, got, want)


@pytest.mark.parametrize("tree", ["access", "network", "injection"])
def test_config_is_deterministic_and_the_same_for_every_tree(tree: str) -> None:
    first = files(target.compile(mcpdsl.load(fixture(tree)), CTX))["opa/config.yaml"]
    second = files(target.compile(mcpdsl.load(fixture(tree)), CTX))["opa/config.yaml"]
    assert first == second == files(compiled(POLICIES)[1])["opa/config.yaml"]
    assert first == dump_yaml(target.config_document())
    assert first.endswith(b"\n") and b"\r" not in first
