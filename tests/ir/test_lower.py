"""Lowering to the typed IR: unit values, span-blind equality, immutability, JSON round trip."""

from __future__ import annotations

import json
import re
import shutil
from decimal import Decimal
from pathlib import Path

import pydantic
import pytest
from repo_paths import FIXTURES

import mcpdsl
from mcpdsl.ir import model as m
from mcpdsl.ir.lower import lower
from mcpdsl.source import SourceFile
from mcpdsl.syntax.parser import parse_source

EXAMPLE = (FIXTURES / "language_example.mcp").read_text(encoding="utf-8")
PEERS = (FIXTURES / "example_peers.mcp").read_text(encoding="utf-8")


def tree(root: Path, example: str = EXAMPLE) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "platform.mcp").write_text(example, encoding="utf-8")
    (root / "peers.mcp").write_text(PEERS, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> m.Project:
    return mcpdsl.load(tree(tmp_path_factory.mktemp("example")))


def one(items: tuple[m.Decl, ...], name: str) -> m.Decl:
    (found,) = [d for d in items if d.name == name]
    return found


# ------------------------------------------------------------- lowering alone


def test_example_lowers_without_diagnostics() -> None:
    """Lowering is per file; the example's own file has no clause or unit error."""
    unit, diagnostics = lower(parse_source(SourceFile("platform.mcp", EXAMPLE)))
    assert diagnostics == []
    assert unit is not None and unit.package == "platform"
    kinds = [d.kind for d in unit.decls]  # type: ignore[attr-defined]
    assert kinds == [
        "service",
        "scale",
        "pool",
        "balance",
        "carbon",
        "job",
        "policy",
        "integration",
        "gateway",
        "test",
        "test",
    ]


# ------------------------------------------------------------------ the values


def test_service_units(project: m.Project) -> None:
    api = one(project.services, "api")
    assert isinstance(api, m.Service)
    assert api.cpu == Decimal("0.5")  # 500m: millicores where a cpu is expected
    assert api.memory == 536870912  # 512Mi
    assert api.port == 8080
    assert api.tier == "gold"
    assert api.regions == ("eu-north-1", "us-east-1")
    assert api.identity == "spiffe://mcp.local/ns/core/sa/api"
    assert api.labels == {"team": "core"}
    assert api.namespace == "core"  # as its SPIFFE identity says (E0905)
    assert not api.stateful


def test_scale_units(project: m.Project) -> None:
    scale = one(project.scales, "api")
    assert isinstance(scale, m.Scale)
    assert scale.service == m.Ref(package="platform", name="api")
    assert (scale.min_replicas, scale.max_replicas) == (2, 40)
    assert scale.targets == (
        m.Target(metric="cpu", value=Decimal("0.7")),  # 70%
        m.Target(metric="pods", name="http_requests_per_second", value=Decimal(150)),
    )
    assert scale.up == m.ScaleRules(
        policies=(m.StepPolicy(amount=Decimal(1), unit="percent", period=Decimal(15)),),
        select="max",
        stabilize=Decimal(0),
    )
    assert scale.down is not None
    assert scale.down.policies[0].amount == Decimal("0.1")
    assert scale.down.stabilize == Decimal(300)  # 5m where a duration is expected
    (during,) = scale.during
    assert during.days == (0, 1, 2, 3, 4)
    # 08:00-20:00 "Europe/Stockholm"
    assert during.window == m.TimeWindow(start=8 * 60, end=20 * 60, zone="Europe/Stockholm")
    assert (during.min_replicas, during.max_replicas) == (6, 40)
    assert scale.predict == m.Predict(
        metric="http_requests_per_second", horizon=Decimal(900), lookback=Decimal(7 * 86400)
    )


def test_pool_units(project: m.Project) -> None:
    pool = one(project.pools, "general")
    assert isinstance(pool, m.Pool)
    assert pool.node == m.NodeShape(
        cpu=Decimal(8),
        memory=32 * 2**30,
        idle_watts=Decimal(90),
        peak_watts=Decimal(350),
        cost_per_hour=Decimal("0.38"),  # $0.38/h
    )
    assert (pool.min_nodes, pool.max_nodes) == (3, 20)
    assert pool.quotas == (
        m.Quota(team="core", resources=m.Resources(cpu=Decimal(32), memory=128 * 2**30)),
    )
    (reservation,) = pool.reservations
    assert reservation.service == m.Ref(package="platform", name="api")
    assert reservation.resources == m.Resources(cpu=Decimal(4), memory=8 * 2**30)


def test_balance_units(project: m.Project) -> None:
    balance = one(project.balances, "api")
    assert isinstance(balance, m.Balance)
    assert balance.strategy == "least-request"
    assert balance.affinity == m.Affinity(source="cookie", key="mcp-session", ttl=Decimal(3600))
    assert balance.health == m.HealthCheck(
        protocol="http",
        path="/healthz",
        interval=Decimal(5),
        timeout=Decimal(1),
        healthy=2,
        unhealthy=3,
    )
    assert balance.eject == m.Ejection(errors=5, duration=Decimal(30), max_percent=Decimal("0.5"))
    assert balance.failover == ("eu-north-1", "eu-west-1", "us-east-1")
    assert balance.limit is not None
    assert balance.limit.rate == m.Rate(amount=Decimal(1000), per=Decimal(1))  # 1000/s
    assert balance.limit.rate.per_second == 1000
    assert (balance.limit.burst, balance.limit.key) == (2000, "client-ip")


def test_carbon_units(project: m.Project) -> None:
    carbon = one(project.carbons, "platform")
    assert isinstance(carbon, m.Carbon)
    assert carbon.budget == m.Budget(mass_kg=Decimal(1200), period="month")
    assert carbon.renewable_min == Decimal("0.8")
    assert carbon.intensity_file == "data/intensity.csv"
    assert carbon.regions == (
        m.CarbonRegion(  # 28g/kWh
            region="eu-north-1",
            intensity=Decimal(28),
            renewable=Decimal("0.95"),
            pue=Decimal("1.1"),
        ),
        m.CarbonRegion(
            region="us-east-1",
            intensity=Decimal(379),
            renewable=Decimal("0.22"),
            pue=Decimal("1.2"),
        ),
    )


def test_job_units(project: m.Project) -> None:
    job = one(project.jobs, "nightly-etl")
    assert isinstance(job, m.Job)
    assert job.cpu == Decimal(4)  # a bare number is cores
    assert job.memory == 8 * 2**30
    assert job.energy_kwh == Decimal(12)
    assert job.runs == Decimal(7200)
    assert job.window == m.TimeWindow(start=0, end=480, zone="UTC")
    assert job.deadline == Decimal(8 * 3600)
    assert job.carbon == m.Ref(package="platform", name="platform")


def test_policy_rules_and_risk(project: m.Project) -> None:
    policy = one(project.policies, "zero-trust")
    assert isinstance(policy, m.Policy)
    assert policy.default == "deny"
    first, second, third = policy.rules
    assert (first.id, first.effect) == ("allow-1", "allow")
    assert first.principal == m.EntityPattern(type="service", ids=("frontend",))
    assert first.resource == m.EntityPattern(type="service", ids=("api",))
    assert (first.actions, first.path) == (("GET", "POST"), "/v1/**")
    assert first.condition == m.And(
        operands=(
            m.Attr(root="request", path=("auth", "mfa")),
            m.Compare(op="<", left=m.Attr(root="risk"), right=m.Literal_(value=Decimal("0.7"))),
        )
    )
    assert second.effect == "deny" and second.principal == m.EntityPattern()
    assert isinstance(second.condition, m.Not)  # `unless C` is `when not C`
    assert third.resource == m.EntityPattern(type="tool", ids=("crm.lookup",))
    assert [t.weight for t in policy.risk] == [Decimal("0.4"), Decimal("0.3"), Decimal("0.5")]
    (require,) = policy.requires
    assert require.obligation == "mfa"


def test_integration_and_gateway(project: m.Project) -> None:
    crm = one(project.integrations, "crm-lookup")
    assert isinstance(crm, m.Integration)
    assert (crm.tool, crm.method, crm.timeout) == ("crm.lookup", "GET", Decimal(2))
    assert crm.input == {"customer_id": "string"}
    assert crm.retry == m.Retry(
        attempts=3, backoff_min=Decimal("0.2"), backoff_max=Decimal(5), on=("5xx", "reset")
    )
    assert crm.limit == m.Limit(rate=m.Rate(amount=Decimal(100), per=Decimal(1)), burst=200)
    assert [mp.target for mp in crm.mappings] == [("id",), ("name",), ("email",), ("tier",)]
    gateway = one(project.gateways, "public")
    assert isinstance(gateway, m.Gateway)
    assert gateway.port == 8443
    assert [(r.path, r.target.kind, r.target.ref.name) for r in gateway.routes] == [
        ("/v1/crm/**", "integration", "crm-lookup"),
        ("/v1/**", "service", "api"),
    ]
    assert gateway.routes[1].rewrite == "/" and gateway.routes[1].timeout == Decimal(5)


def test_tests(project: m.Project) -> None:
    scale_test = one(project.tests, "api scales out under load")
    assert isinstance(scale_test, m.Test)
    assert scale_test.scale is not None
    assert scale_test.scale.replicas == 5
    assert scale_test.scale.metrics == {"cpu": Decimal("0.95")}
    assert scale_test.expect == (m.Expectation(kind="replicas", replicas=7),)
    request_test = one(project.tests, "frontend may call the API with MFA")
    assert isinstance(request_test, m.Test)
    assert request_test.request == {
        "principal": {"type": "service", "id": "frontend"},
        "action": "GET",
        "resource": {"type": "service", "id": "api"},
        "request": {"path": "/v1/items", "auth": {"mfa": True}},
        "context": {"device": {"managed": True}},
    }


@pytest.mark.parametrize(
    ("text", "unit", "value"),
    [
        ("5m", "duration", None),  # ambiguous in an expression: see E0304
        ("30s", "duration", Decimal(30)),
        ("250ms", "duration", Decimal("0.25")),
        ("5min", "duration", Decimal(300)),
        ("70%", "percent", Decimal("0.7")),
        ("512Mi", "bytes", Decimal(536870912)),
        ("100/s", "rate", Decimal(100)),
        ("6000/m", "rate", Decimal(100)),
        ("28g/kWh", "intensity", Decimal(28)),
        ("1.2MWh", "energy", Decimal(1200)),
        ("2.5kW", "power", Decimal(2500)),
        ("3t", "mass", Decimal(3000)),
        ("$0.38", "money", Decimal("0.38")),
        ("42", "number", Decimal(42)),
    ],
)
def test_literals_in_conditions(tmp_path: Path, text: str, unit: str, value: Decimal) -> None:
    (tmp_path / "p.mcp").write_text(
        f"package p\npolicy q {{\n  allow any -> any when context.x < {text}\n}}\n"
    )
    if value is None:
        assert [d.code for d in mcpdsl.check(tmp_path)] == ["E0304"]
        return
    policy = mcpdsl.load(tmp_path).policies[0]
    condition = policy.rules[0].condition
    assert isinstance(condition, m.Compare)
    assert condition.right == m.Literal_(value=value, unit=unit)


# ------------------------------------------------------- equality and hashing


def _relayout(text: str) -> str:
    """The same policy with other whitespace and comments."""
    out = []
    for line in text.splitlines():
        code = re.sub(r"\s+#.*$", "", line) if not line.lstrip().startswith("#") else ""
        code = re.sub(r"^\s+", "\t\t", code)
        code = re.sub(r"(?<=[a-z0-9\"\]}]) {2,}(?=[a-z\"\[{$0-9])", " ", code)
        out.append(code + "   # reformatted" if code.strip() else "# a comment of its own")
        out.append("")
    return "\n".join(out) + "\n"


def test_equality_ignores_layout_and_comments(tmp_path: Path, project: m.Project) -> None:
    variant = _relayout(EXAMPLE)
    assert variant != EXAMPLE
    other = mcpdsl.load(tree(tmp_path / "variant", variant))
    assert other == project
    assert hash(other) == hash(project)
    assert other.canonical_json() == project.canonical_json()
    # ... while the spans really differ.
    api, api2 = one(project.services, "api"), one(other.services, "api")
    assert api.span is not None and api2.span is not None
    assert api.span != api2.span
    assert api == api2 and hash(api) == hash(api2)


def test_a_different_policy_is_not_equal(tmp_path: Path, project: m.Project) -> None:
    changed = mcpdsl.load(tree(tmp_path / "changed", EXAMPLE.replace("500m", "600m")))
    assert changed != project
    assert one(changed.services, "api") != one(project.services, "api")
    assert one(changed.scales, "api") == one(project.scales, "api")


def test_equal_quantities_spelled_differently_hash_alike(tmp_path: Path) -> None:
    """`200ms` and `0.2s` are the same value: equal IR must mean equal hashes."""
    spelled = EXAMPLE.replace("backoff 200ms..5s", "backoff 0.2s..5000ms")
    assert spelled != EXAMPLE
    a = mcpdsl.load(tree(tmp_path / "a"))
    b = mcpdsl.load(tree(tmp_path / "b", spelled))
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1


def test_spans_are_kept_for_diagnostics(project: m.Project) -> None:
    api = one(project.services, "api")
    assert api.span is not None
    assert (api.span.file, api.span.line, api.span.column) == ("platform.mcp", 3, 1)
    assert "span" not in api.model_dump()


# ------------------------------------------------------------------ immutability


def test_models_are_frozen(project: m.Project) -> None:
    api = one(project.services, "api")
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        api.port = 1  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        project.services = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        project.services[0] = api  # type: ignore[index]
    scale = one(project.scales, "api")
    assert isinstance(scale, m.Scale)
    with pytest.raises(pydantic.ValidationError):
        scale.targets[0].value = Decimal(1)  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="extra"):
        m.Ref(name="x", nickname="y")  # type: ignore[call-arg]


def test_model_copy_leaves_the_original(project: m.Project) -> None:
    api = one(project.services, "api")
    moved = api.model_copy(update={"port": 9090})
    assert moved.port == 9090 and api.port == 8080
    assert moved != api


# -------------------------------------------------------------------- JSON form


def test_json_round_trip(project: m.Project) -> None:
    dump = project.model_dump(mode="json")
    text = json.dumps(dump, sort_keys=True)
    back = m.Project.model_validate(json.loads(text))
    assert back == project
    assert hash(back) == hash(project)
    assert back.model_dump(mode="json") == dump
    assert m.Project.model_validate_json(project.model_dump_json()) == project


def test_json_form_tells_numbers_from_strings() -> None:
    number = m.Literal_(value=Decimal(5))
    string = m.Literal_(value="5")
    assert number != string
    for literal in (number, string):
        assert m.Literal_.model_validate(literal.model_dump(mode="json")) == literal


def test_json_form_is_deterministic(tmp_path: Path, project: m.Project) -> None:
    again = mcpdsl.load(tree(tmp_path / "again"))
    assert again.canonical_json() == project.canonical_json()
    assert json.loads(project.canonical_json())["packages"] == ["platform"]


def test_load_raises_compile_error_with_every_diagnostic(tmp_path: Path) -> None:
    broken = FIXTURES / "diagnostics" / "E0101-three-broken-declarations"
    shutil.copytree(broken, tmp_path / "t")
    with pytest.raises(mcpdsl.CompileError) as info:
        mcpdsl.load(tmp_path / "t")
    assert [d.code for d in info.value.diagnostics] == ["E0101", "E0101", "E0101"]
    assert str(info.value).startswith("3 error(s); first: main.mcp:4:3: unexpected name `imag`")
