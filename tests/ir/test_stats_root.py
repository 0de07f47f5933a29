"""`stats`: the decision server's counters as a typed attribute root (mcpdsl.ir.stats).

Exactly six counters under `stats.principal`, each a *count*; anything else
under `stats` is E0320 with a did-you-mean; a count never meets a string or a
quantity (E0305); a deny on a counter at a positive position is W0106 (only
the server counts); `test` blocks may set the counters as the server would.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mcpdsl.diagnostics import Diagnostic
from mcpdsl.ir import stats
from mcpdsl.pipeline import compile_tree


def _check(tmp_path: Path, body: str) -> list[Diagnostic]:
    (tmp_path / "main.mcp").write_text(f"package shop\n\n{body}\n", encoding="utf-8")
    return compile_tree(tmp_path).diagnostics


def _policy(tmp_path: Path, condition: str, effect: str = "allow") -> list[Diagnostic]:
    rule = f"  r: {effect} agent any -> agent any when {condition}"
    return _check(tmp_path, f"policy p {{\n  default deny\n{rule}\n}}")


def _codes(diags: list[Diagnostic]) -> list[str]:
    return [d.code for d in diags if d.is_error]


@pytest.mark.parametrize("field", stats.FIELDS)
def test_every_counter_is_a_count(tmp_path: Path, field: str) -> None:
    condition = f"stats.principal.{field} >= 3 and stats.principal.{field} + 1 != 7"
    assert _codes(_policy(tmp_path, condition)) == []


@pytest.mark.parametrize(
    "condition",
    [
        "stats.principal.calls_1m < stats.principal.calls_1h",
        "(stats.principal.denials_1m ?? 0) * 2 > 10",
        "stats.principal.resources_1h in [1, 2, 3]",
        "-stats.principal.calls_1m < 0",
    ],
)
def test_counts_compute_with_numbers_and_counts(tmp_path: Path, condition: str) -> None:
    assert _codes(_policy(tmp_path, condition)) == []


def test_counters_in_risk_terms_and_requires(tmp_path: Path) -> None:
    body = """policy p {
  default allow
  risk {
    0.5 when stats.principal.denials_1h >= 3
  }
  require mfa when stats.principal.resources_1m > 20
}"""
    assert _codes(_check(tmp_path, body)) == []


@pytest.mark.parametrize(
    ("path", "message", "hint"),
    [
        (
            "stats.principal.calls_1min",
            "unknown server statistic `stats.principal.calls_1min`",
            "did you mean `stats.principal.calls_1m`?",
        ),
        (
            "stats.principl.denials_1h",
            "unknown server statistic `stats.principl.denials_1h`",
            "did you mean `stats.principal.denials_1h`?",
        ),
        (
            "stats.calls_1h",
            "unknown server statistic `stats.calls_1h`",
            "did you mean `stats.principal.calls_1h`?",
        ),
        (
            "stats.principal",
            "`stats.principal` is an object of counters, not a value",
            "the server counts `stats.principal.calls_1m`",
        ),
        ("stats", "`stats` is an object of counters, not a value", "the server counts"),
        (
            "stats.principal.calls_1m.rate",
            "`stats.principal.calls_1m` is a count and has no attributes",
            "compare `stats.principal.calls_1m` itself with a number",
        ),
        ("stats.tenant.calls_1m", "unknown server statistic `stats.tenant.calls_1m`", "the"),
        ("stats.principal.latency", "unknown server statistic", "the server counts"),
    ],
)
def test_unknown_paths_under_stats_are_e0320(
    tmp_path: Path, path: str, message: str, hint: str
) -> None:
    diags = [d for d in _policy(tmp_path, f"{path} > 1") if d.code == "E0320"]
    assert len(diags) == 1, diags
    assert diags[0].message.startswith(message)
    assert diags[0].help is not None and diags[0].help.startswith(hint)


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ('stats.principal.calls_1m == "600"', "cannot compare a count with a string"),
        ('stats.principal.calls_1m < "600"', "cannot order a count and a string"),
        ("stats.principal.calls_1m < 30s", "cannot order a count and a duration"),
        ("stats.principal.calls_1h >= 2Gi", "cannot order a count and a bytes"),
        ("stats.principal.calls_1m == 50%", "cannot compare a count with a percent"),
        ("stats.principal.calls_1m and true", "`and` needs a boolean, found a count"),
        ('startswith(stats.principal.calls_1m, "1")', "`startswith` needs strings, found a count"),
    ],
)
def test_a_count_is_not_a_string_or_a_quantity(
    tmp_path: Path, condition: str, message: str
) -> None:
    diags = [d for d in _policy(tmp_path, condition) if d.code == "E0305"]
    assert diags and diags[0].message.startswith(message), [d.message for d in diags]


def test_stats_is_not_a_mapping_root(tmp_path: Path) -> None:
    body = """integration crm {
  expose tool "crm.lookup" input { id: string }
  call GET "https://crm.internal/v1/{id}"
  map { calls = stats.principal.calls_1m }
}"""
    assert any(d.code == "E0306" and "`stats`" in d.message for d in _check(tmp_path, body))


# ------------------------------------------------------------------ W0106


def _w0106(diags: list[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diags if d.code == "W0106"]


@pytest.mark.parametrize(
    ("condition", "suggestion"),
    [
        ("stats.principal.calls_1m > 600", "unless stats.principal.calls_1m <= 600"),
        ("stats.principal.calls_1m >= 600", "unless stats.principal.calls_1m < 600"),
        ("10 < stats.principal.denials_1m", "unless 10 >= stats.principal.denials_1m"),
        ("stats.principal.calls_1h == 0", "unless stats.principal.calls_1h != 0"),
        ("stats.principal.calls_1m in [1, 2]", "unless stats.principal.calls_1m not in [...]"),
        (
            "stats.principal.calls_1m > stats.principal.calls_1h / 30",
            "unless stats.principal.calls_1m <= ...",
        ),
    ],
)
def test_a_deny_on_a_counter_is_fail_open_without_the_server(
    tmp_path: Path, condition: str, suggestion: str
) -> None:
    found = _w0106(_policy(tmp_path, condition, effect="deny"))
    assert found, condition
    assert found[0].help == (
        f"to deny requests without `{found[0].message.split('`')[3]}` too, write `{suggestion}`"
    )


@pytest.mark.parametrize(
    ("condition", "effect"),
    [
        ("stats.principal.calls_1m > 600", "allow"),  # an allow fails closed
        ("not (stats.principal.calls_1m <= 600)", "deny"),  # under `not`: fires when missing
    ],
)
def test_fail_closed_forms_are_not_flagged(tmp_path: Path, condition: str, effect: str) -> None:
    assert _w0106(_policy(tmp_path, condition, effect=effect)) == []


def test_unless_is_not_flagged(tmp_path: Path) -> None:
    rule = "  r: deny agent any -> agent any unless stats.principal.calls_1m <= 600"
    assert _w0106(_check(tmp_path, f"policy p {{\n  default allow\n{rule}\n}}")) == []


def test_an_unknown_counter_gets_no_second_warning(tmp_path: Path) -> None:
    diags = _policy(tmp_path, "stats.principal.calls_2m > 1", effect="deny")
    assert [d.code for d in diags] == ["E0320"]


# ------------------------------------------------------------------ test blocks


def test_a_test_request_sets_counters(tmp_path: Path) -> None:
    body = """policy p {
  default allow
  deny agent any -> agent any unless stats.principal.calls_1m <= 60
}

test "counted" {
  request agent a -> agent b call {
    stats.principal.calls_1m: 61
    stats.principal.denials_1h: 0
  }
  expect deny
}"""
    (tmp_path / "main.mcp").write_text(f"package shop\n\n{body}\n", encoding="utf-8")
    c = compile_tree(tmp_path)
    assert c.project is not None and _codes(c.diagnostics) == []
    request = c.project.tests[0].request
    assert request is not None
    assert request["stats"] == {"principal": {"calls_1m": 61, "denials_1h": 0}}
    assert type(request["stats"]["principal"]["calls_1m"]) is int


@pytest.mark.parametrize(
    ("attribute", "code"),
    [
        ("stats.principal.calls_2m: 3", "E0320"),
        ("stats.calls_1m: 3", "E0320"),
        ("stats.principal.calls_1m: 2.5", "E0208"),
        ('stats.principal.calls_1m: "3"', "E0208"),
        ("stats.principal.calls_1m: true", "E0208"),
        ("stats.principal.calls_1m: 9007199254740992", "E0208"),
    ],
)
def test_a_test_request_sets_only_known_whole_counters(
    tmp_path: Path, attribute: str, code: str
) -> None:
    body = f"""policy p {{
  default allow
}}

test "counted" {{
  request agent a -> agent b call {{
    {attribute}
  }}
  expect allow
}}"""
    assert _codes(_check(tmp_path, body)) == [code]
