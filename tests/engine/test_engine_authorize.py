"""Access decisions, one semantic rule of docs/semantics.md per test."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from engine_support import engine_for, request

import mcpdsl
from mcpdsl.engine import Decision, Engine

ZT = """
policy zero-trust {
  default deny

  allow service frontend -> service api
    on GET, POST "/v1/**"
    when request.auth.mfa and risk < 0.7

  deny any -> service postgres
    unless source.namespace == "data"

  risk {
    0.4 when not context.device.managed
    0.3 when context.geo not in principal.countries
    0.5 when context.failed_logins > 5
  }

  require mfa when risk >= 0.5
}
"""


@pytest.fixture(scope="module")
def zt(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return engine_for(tmp_path_factory.mktemp("zt"), ZT)


def ok(**attrs: object) -> dict:
    base = {"request__auth__mfa": True, "context__device__managed": True}
    base.update(attrs)
    return request(**base)  # type: ignore[arg-type]


def test_matching_allow_fires(zt: Engine) -> None:
    d = zt.authorize(ok())
    assert d == Decision(True, (), Decimal(0), ("zero-trust/allow-1",), False, True, d.spans)
    assert d.spans[0] is not None and d.spans[0].line > 0


def test_default_deny_when_nothing_fires(zt: Engine) -> None:
    d = zt.authorize(request(context__device__managed=True))  # no mfa: the allow is false
    assert not d.allowed and d.default_applied and d.rules == () and not d.enforced


def test_path_glob_is_a_whole_segment_and_ignores_the_query(zt: Engine) -> None:
    assert zt.authorize(ok(path="/v1")).allowed
    assert zt.authorize(ok(path="/v1/a/b?x=/v2")).allowed
    assert not zt.authorize(ok(path="/v10")).allowed
    assert not zt.authorize(ok(path=None)).allowed  # no path: a rule with a path cannot match
    bad = ok()
    bad["request"]["path"] = 5
    assert not zt.authorize(bad).allowed


def test_actions_are_exact_and_case_sensitive(zt: Engine) -> None:
    assert zt.authorize(ok(action="POST")).allowed
    assert not zt.authorize(ok(action="get")).allowed
    assert not zt.authorize(ok(action="DELETE")).allowed


def test_principal_and_resource_must_match(zt: Engine) -> None:
    assert not zt.authorize(ok(principal=("agent", "frontend"))).allowed
    assert not zt.authorize(ok(resource=("service", "web"))).allowed
    weird = ok()
    weird["principal"] = {"type": "service", "id": ["frontend"]}
    assert not zt.authorize(weird).allowed
    weird["principal"] = "service frontend"
    assert not zt.authorize(weird).allowed


def test_deny_overrides_and_unless(zt: Engine) -> None:
    d = zt.authorize(request(resource=("service", "postgres"), source__namespace="web"))
    assert d.rules == ("zero-trust/deny-2",) and not d.allowed and not d.default_applied
    d = zt.authorize(request(resource=("service", "postgres"), source__namespace="data"))
    assert d.rules == () and d.default_applied


def test_deny_with_a_missing_attribute_fires(zt: Engine) -> None:
    # `unless source.namespace == "data"`: MISSING makes == false, `not` true: the deny fires
    d = zt.authorize(request(resource=("service", "postgres")))
    assert d.rules == ("zero-trust/deny-2",)


def test_risk_terms_sum_exactly_and_clamp(zt: Engine) -> None:
    assert zt.authorize(ok()).risk == Decimal(0)
    assert zt.authorize(ok(context__device__managed=False)).risk == Decimal("0.4")
    d = zt.authorize(ok(context__device__managed=False, context__failed_logins=6))
    assert d.risk == Decimal("0.9")
    d = zt.authorize(
        ok(
            context__device__managed=False,
            context__failed_logins=6,
            context__geo="se",
            principal__countries=["no"],
        )
    )
    assert d.risk == Decimal(1)  # 1.2 clamped
    assert isinstance(d.risk, Decimal)


def test_a_risk_term_that_errors_counts(zt: Engine) -> None:
    # `context.failed_logins > 5` on a string is an error: fail closed, the weight counts
    d = zt.authorize(ok(context__failed_logins="many"))
    assert d.risk == Decimal("0.5")


def test_obligations_on_allow(zt: Engine) -> None:
    d = zt.authorize(ok(context__failed_logins=9))  # risk 0.5 < 0.7: allowed, mfa required
    assert d.allowed and d.obligations == ("mfa",) and d.enforced  # request.auth.mfa is true
    d = zt.authorize(ok(context__failed_logins=9, context__device__managed=False))
    assert not d.allowed and d.obligations == ()  # risk 0.9: the allow does not fire


def test_unproven_obligation_is_not_enforced(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path,
        """
policy p {
  allow any -> any
  require mfa
  require mfa when context.x
  require audit when context.bad > 1
  require zzz when context.never
}
""",
    )
    d = engine.authorize(request(context__bad="x"))
    assert d.allowed and d.obligations == ("audit", "mfa")  # sorted, de-duplicated; error counts
    assert not d.enforced
    d = engine.authorize(
        request(context__bad="x", request__auth__mfa=True, request__auth__audit=True)
    )
    assert d.enforced
    d = engine.authorize(
        request(context__bad="x", request__auth__mfa=True, request__auth__audit="yes")
    )
    assert not d.enforced  # proven only by `true`


def test_fail_closed_deny_and_no_allow_on_error(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path,
        """
policy p {
  allow any -> any when context.level > 3
  deny agent any -> any when context.level > 9
}
""",
    )
    assert engine.authorize(request(context__level=5)).allowed
    d = engine.authorize(request(context__level="high"))  # the allow errors: never allows
    assert not d.allowed and d.default_applied
    d = engine.authorize(request(principal=("agent", "a"), context__level="high"))
    assert d.rules == ("p/deny-2",)  # the deny errors: fires (fail closed)


def test_default_allow_and_labels(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path,
        """
policy open {
  default allow
  no-agents: deny agent any -> any
  require mfa
}
""",
    )
    d = engine.authorize(request())
    assert d.allowed and d.default_applied and d.rules == () and d.obligations == ("mfa",)
    d = engine.authorize(request(principal=("agent", "x")))
    assert d.rules == ("open/no-agents",) and d.obligations == ()


def test_typed_any_and_id_lists(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path,
        """
policy p {
  allow user [alice, bob] -> service any
  allow group any -> any on *
  deny user alice -> service postgres
}
""",
    )
    assert engine.authorize(request(principal=("user", "bob"))).rules == ("p/allow-1",)
    assert not engine.authorize(request(principal=("user", "carol"))).allowed
    assert engine.authorize(request(principal=("group", "x"), action="ANY")).allowed
    d = engine.authorize(request(principal=("user", "alice"), resource=("service", "postgres")))
    assert d.rules == ("p/deny-3",)


def test_several_policies(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path,
        """
policy a {
  allow any -> any
  risk { 0.2 when true }
  require mfa
}

policy b {
  allow user any -> any
  deny user mallory -> any
  risk { 0.6 when true }
}

policy c {
  default allow
}
""",
    )
    d = engine.authorize(request(principal=("user", "u")))
    assert d.allowed and d.rules == ("a/allow-1", "b/allow-1") and d.risk == Decimal("0.6")
    assert d.obligations == ("mfa",) and not d.default_applied
    d = engine.authorize(request(principal=("service", "frontend")))
    assert not d.allowed and d.rules == ("a/allow-1",)  # b falls back to deny
    d = engine.authorize(request(principal=("user", "mallory")))
    assert not d.allowed and d.rules == ("a/allow-1", "b/deny-2")
    # the union of obligations is kept even when another policy denies (as in the Rego)
    assert d.obligations == ("mfa",) and not d.enforced


def test_default_applied_only_when_every_policy_defaults(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path, "policy a {\n  default allow\n}\npolicy b {\n  default allow\n}\n"
    )
    d = engine.authorize(request())
    assert d.allowed and d.default_applied


def test_no_policies_deny(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, "")
    d = engine.authorize(request())
    assert not d.allowed and d.default_applied and d.risk == 0
    assert "no policies" in d.explain()


def test_risk_sum_is_exact_decimal(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path,
        """
policy p {
  allow any -> any when risk == 0.3
  risk {
    0.1 when context.a
    0.2 when context.b
  }
}
""",
    )
    d = engine.authorize(request(context__a=True, context__b=True))
    assert d.risk == Decimal("0.3") and d.allowed
    assert d.as_dict()["risk"] == 0.3


def test_now_from_the_request_or_the_clock(tmp_path: Path) -> None:
    engine = engine_for(
        tmp_path,
        """
policy p {
  allow any -> any when now.hour >= 9 and now.weekday == "mon"
  allow agent any -> any when now.hour >= 0
}
""",
    )
    assert engine.authorize(request(now__hour=9, now__weekday="mon")).allowed
    assert not engine.authorize(request(now__hour=9, now__weekday="tue")).allowed
    assert engine.authorize(request(principal=("agent", "x"))).allowed  # the clock, in UTC
    assert not engine.authorize(request(principal=("agent", "x"), now__minute=3)).allowed


def test_a_rule_listed_under_several_ids_fires_once(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, "policy p {\n  allow user [a, a, b] -> any\n}\n")
    assert engine.authorize(request(principal=("user", "a"))).rules == ("p/allow-1",)


def test_unrelated_rules_are_not_candidates(tmp_path: Path) -> None:
    rules = "\n".join(f"  allow user u{i} -> any" for i in range(200))
    engine = engine_for(tmp_path, f"policy p {{\n{rules}\n  allow any -> any when context.x\n}}\n")
    policies = engine.compiled.policies
    cands = policies.candidates("user", "u7", "service", "api", "GET")
    assert [c.key for c in cands] == ["p/allow-8", "p/allow-201"]
    assert engine.authorize(request(principal=("user", "u7"))).rules == ("p/allow-8",)


def test_explain_lists_matches_failures_and_reasons(zt: Engine) -> None:
    d = zt.authorize(request(context__failed_logins=7))
    text = d.explain()
    assert "decision: deny" in text
    assert "`context.device.managed` is missing" in text
    assert "`request.auth.mfa` is missing" in text
    assert "`7 > 5` is true" in text
    assert "allow-1 (allow): matched; condition is false: did not fire" in text
    assert 'deny-2: not matched: resource id is "api"' in text
    err = zt.authorize(request(resource=("service", "postgres"), source__namespace=5))
    assert "deny-2 (deny): matched; condition is true: fired" in err.explain()
    d = zt.authorize(ok(action="DELETE"))
    assert 'action is "DELETE", the rule wants one of GET, POST' in d.explain()


def test_explain_reports_errors_as_fail_closed(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, "policy p {\n  deny any -> any when context.n < 3\n}\n")
    text = engine.authorize(request(context__n="x")).explain()
    assert "evaluation error: the deny fires (fail closed)" in text
    assert "`<` compares numbers, found a string and a number" in text


def test_decision_is_frozen(zt: Engine) -> None:
    d = zt.authorize(ok())
    with pytest.raises(AttributeError):
        d.allowed = False  # type: ignore[misc]


def test_requests_are_not_mutated(zt: Engine) -> None:
    req = ok()
    before = repr(req)
    zt.authorize(req)
    assert repr(req) == before


def test_load_raises_compile_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "t.mcp").write_text("package t\npolicy p {\n  allow any -> nowhere\n}\n")
    with pytest.raises(mcpdsl.CompileError):
        mcpdsl.Engine.load(bad)
    with pytest.raises(mcpdsl.CompileError):
        mcpdsl.Engine.load(tmp_path / "absent")


def test_non_dict_request_is_denied_with_a_reason(zt: Engine) -> None:
    d = zt.authorize([])  # type: ignore[arg-type]
    assert not d.allowed and not d.enforced
    assert d.refusal == "the request is a list, not a JSON object"
    assert d.as_dict()["refusal"] == d.refusal
    assert "request refused" in d.explain()


def test_import_mcpdsl_does_not_import_the_engine() -> None:
    import subprocess
    import sys

    code = "import sys, mcpdsl; assert 'mcpdsl.engine' not in sys.modules; mcpdsl.Engine; assert 'mcpdsl.engine' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
