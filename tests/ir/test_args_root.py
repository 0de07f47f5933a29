"""`args`: a tool call's arguments as a typed attribute root (mcpdsl.ir.args).

The typechecker knows which arguments a rule may read from the `input` of the
tools it is about (E0330-E0333); the engine, the interpreter and the z3
encoding read them alike: MISSING when absent, ERROR on a call about a tool
that carries no `args` object (fail closed), MISSING for anything else; `test`
blocks set them like any attribute.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpdsl.diagnostics import Diagnostic
from mcpdsl.engine import Engine
from mcpdsl.evaluate.interp import evaluate
from mcpdsl.evaluate.values import ERROR, MISSING
from mcpdsl.ir import args
from mcpdsl.pipeline import compile_tree

TOOLS = """
integration docs-search {
  expose tool "docs.search" input { query: string, limit: number, exact: boolean, filter: object, tags: array }
  call   POST "http://search.internal/query"
}

integration ticket-create {
  expose tool "tickets.create" input { title: string, limit: string }
  call   POST "http://tickets.internal/issue"
}
"""


def _check(tmp_path: Path, policy: str) -> list[Diagnostic]:
    (tmp_path / "main.mcp").write_text(f"package shop\n{TOOLS}\n{policy}\n", encoding="utf-8")
    return compile_tree(tmp_path).diagnostics


def _rule(tmp_path: Path, resource: str, condition: str) -> list[tuple[str, str]]:
    policy = f"policy p {{\n  default deny\n  r: deny agent any -> {resource} when {condition}\n}}"
    return [(d.code, d.message) for d in _check(tmp_path, policy) if d.is_error]


@pytest.mark.parametrize(
    "condition",
    [
        'args.query == "x" and args.limit <= 50 and not args.exact',
        '"public" in args.tags and len(args.tags) > 1',
        'args.filter.team == "ops" and args.filter.depth.x > 3',
        "(args.limit ?? 10) * 2 > 100",
        'startswith(args.query, "internal")',
    ],
)
def test_declared_arguments_are_typed(tmp_path: Path, condition: str) -> None:
    assert _rule(tmp_path, 'tool "docs.search"', condition) == []


@pytest.mark.parametrize(
    ("condition", "code"),
    [
        ('args.limit == "ten"', "E0305"),
        ("args.query < 3", "E0305"),
        ("args.exact + 1 > 2", "E0305"),
        ("args.lmit > 3", "E0330"),
        ("args.query.text == 1", "E0333"),
        ("args == 1", "E0333"),
    ],
)
def test_argument_errors(tmp_path: Path, condition: str, code: str) -> None:
    assert [c for c, _ in _rule(tmp_path, 'tool "docs.search"', condition)] == [code]


def test_did_you_mean(tmp_path: Path) -> None:
    policy = 'policy p {\n  r: deny agent any -> tool "docs.search" when args.lmit > 3\n}'
    (found,) = [d for d in _check(tmp_path, policy) if d.code == "E0330"]
    assert found.help == "did you mean `args.limit`?"


def test_a_list_of_tools_needs_the_argument_in_each(tmp_path: Path) -> None:
    both = 'tool ["docs.search", "tickets.create"]'
    assert _rule(tmp_path, both, 'args.title == "x"')[0][0] == "E0330"  # docs.search lacks it
    assert _rule(tmp_path, both, "args.limit == 3")[0][0] == "E0332"  # number vs string


def test_any_tool_reads_an_argument_some_tool_declares(tmp_path: Path) -> None:
    assert _rule(tmp_path, "tool any", 'args.title == "x"') == []
    assert _rule(tmp_path, "any", "args.limit == 3") == []  # untyped: the tools disagree
    assert [c for c, _ in _rule(tmp_path, "tool any", "args.nope == 3")] == ["E0330"]


@pytest.mark.parametrize("resource", ["agent any", "user any", "group any"])
def test_only_tool_calls_have_arguments(tmp_path: Path, resource: str) -> None:
    assert [c for c, _ in _rule(tmp_path, resource, "args.limit > 3")] == ["E0331"]


def test_risk_terms_and_requires(tmp_path: Path) -> None:
    policy = """policy p {
  default allow
  risk {
    0.5 when args.limit > 20
  }
  require mfa when args.exact
  require mfa when args.nope == 1
}"""
    codes = [d.code for d in _check(tmp_path, policy) if d.is_error]
    assert codes == ["E0330"]


# ------------------------------------------------------------------ evaluation

POLICY = """policy p {
  default deny
  search: allow agent any -> tool "docs.search" when args.limit <= 50
  cap:    deny agent any -> tool "docs.search" when args.limit > 100
  svc:    allow agent any -> any when (args.title ?? "none") == "none"
}"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    root = tmp_path_factory.mktemp("args")
    (root / "main.mcp").write_text(f"package shop\n{TOOLS}\n{POLICY}\n", encoding="utf-8")
    return Engine.load(root)


def _call(tool: str = "docs.search", **extra: Any) -> dict[str, Any]:
    return {
        "principal": {"type": "agent", "id": "a"},
        "action": "invoke",
        "resource": {"type": "tool", "id": tool},
        **extra,
    }


def test_arguments_decide(engine: Engine) -> None:
    assert engine.authorize(_call(args={"limit": 10})).rules == ("p/search", "p/svc")
    assert not engine.authorize(_call(args={"limit": 200})).allowed
    # an absent argument is missing: `??` gives its default, comparisons are false
    assert engine.authorize(_call(args={})).rules == ("p/svc",)


@pytest.mark.parametrize("value", [None, "x", [], [{"limit": 1}], 7, True])
def test_a_tool_call_without_an_args_object_fails_closed(engine: Engine, value: Any) -> None:
    request = _call() if value is None else _call(args=value)
    d = engine.authorize(request)
    assert not d.allowed and d.rules == ("p/cap",)  # the deny fires on the ERROR
    assert "evaluation error" in d.explain()


def test_elsewhere_a_missing_args_is_missing(engine: Engine) -> None:
    request = {"principal": {"type": "agent", "id": "a"}, "action": "invoke"}
    d = engine.authorize({**request, "resource": {"type": "service", "id": "x"}})
    assert d.allowed and d.rules == ("p/svc",)


class _Args(dict):  # type: ignore[type-arg]
    pass


def test_hostile_arguments_never_raise_never_allow(engine: Engine) -> None:
    deep: Any = 1
    for _ in range(200):
        deep = [deep]
    assert engine.authorize(_call(args=_Args(limit=10))).allowed  # read as the plain dict
    assert not engine.authorize(_call(args={"limit": float("nan")})).allowed
    assert not engine.authorize(_call(args={"limit": 10**400})).allowed
    assert engine.authorize(_call(args={"limit": 10, "query": deep})).allowed  # never read
    assert not engine.authorize(_call(args={"limit": deep})).allowed


VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 300), st.text(max_size=3), st.lists(st.integers(0, 3))
)


@given(
    args_value=st.one_of(
        st.none(), VALUES, st.dictionaries(st.sampled_from(["limit", "title"]), VALUES)
    ),
    rtype=st.sampled_from(["tool", "service", None]),
)
@settings(max_examples=300, deadline=None)
def test_the_closures_agree_with_the_interpreter(
    args_value: Any, rtype: Any, engine: Engine
) -> None:
    from mcpdsl.evaluate.closures import prepare_expr

    request: dict[str, Any] = {"resource": {"type": rtype, "id": "docs.search"}}
    if args_value is not None:
        request["args"] = args_value
    for rule in engine.project.policies[0].rules:
        assert rule.condition is not None
        fast = prepare_expr(rule.condition).fn(request, Decimal(0))
        slow = evaluate(rule.condition, request, Decimal(0))
        assert fast == slow or (fast is slow), (rule.id, request)


def test_unread_is_the_error_condition() -> None:
    assert args.unread({"resource": {"type": "tool"}})
    assert args.unread({"resource": {"type": "tool"}, "args": []})
    assert not args.unread({"resource": {"type": "tool"}, "args": {}})
    assert not args.unread({"resource": {"type": "service"}})
    assert not args.unread({"resource": "tool"})
    assert ERROR is not MISSING


def test_test_blocks_set_arguments(tmp_path: Path) -> None:
    (tmp_path / "main.mcp").write_text(
        f"""package shop
{TOOLS}
{POLICY}
test "a small search" {{
  request agent a -> tool "docs.search" invoke {{
    args.limit: 10
  }}
  expect allow
}}
""",
        encoding="utf-8",
    )
    compilation = compile_tree(tmp_path)
    assert compilation.project is not None
    (test,) = compilation.project.tests
    assert test.request is not None and test.request["args"] == {"limit": 10}


# ------------------------------------------------------------ federated tools

FEDERATED = """
integration wiki {
  upstream mcp "http://127.0.0.1:9/mcp" prefix "wiki"
}
"""


def _federated(tmp_path: Path, policy: str) -> list[tuple[str, str]]:
    text = f"package shop\n{TOOLS}\n{FEDERATED}\n{policy}\n"
    (tmp_path / "main.mcp").write_text(text, encoding="utf-8")
    return [(d.code, d.message) for d in compile_tree(tmp_path).diagnostics if d.is_error]


def _federated_rule(tmp_path: Path, resource: str, condition: str) -> list[tuple[str, str]]:
    policy = f"policy p {{\n  default deny\n  r: deny agent any -> {resource} when {condition}\n}}"
    return _federated(tmp_path, policy)


@pytest.mark.parametrize(
    "condition",
    [
        'args.query == "x"',
        'args.query == 3 and args.query.deep.deeper == "y"',  # untyped: any value, any path
        'args.page > 2 or "x" in args.tags',
    ],
)
def test_a_federated_tool_reads_untyped_arguments(tmp_path: Path, condition: str) -> None:
    """`wiki.search` is discovered at run time: no unknown-tool, no unknown-argument error."""
    assert _federated_rule(tmp_path, 'tool "wiki.search"', condition) == []


def test_a_federated_tool_still_has_no_bare_args(tmp_path: Path) -> None:
    assert [c for c, _ in _federated_rule(tmp_path, 'tool "wiki.search"', "args == 1")] == ["E0333"]


def test_a_list_with_a_federated_tool_checks_the_static_ones(tmp_path: Path) -> None:
    both = 'tool ["wiki.search", "tickets.create"]'
    assert _federated_rule(tmp_path, both, 'args.title == "x"') == []
    assert _federated_rule(tmp_path, both, "args.limit == 3") == []  # untyped with wiki.search
    assert [c for c, _ in _federated_rule(tmp_path, both, "args.pages == 3")] == ["E0330"]


def test_any_tool_reads_any_argument_when_the_project_federates(tmp_path: Path) -> None:
    assert _federated_rule(tmp_path, "tool any", "args.nope == 3") == []
    assert _federated_rule(tmp_path, "any", 'args.limit == "ten"') == []
    policy = """policy p {
  default allow
  risk {
    0.5 when args.pages > 20
  }
  require mfa when args.nope == 1
}"""
    assert _federated(tmp_path, policy) == []


def test_a_name_under_no_prefix_is_still_an_unknown_tool(tmp_path: Path) -> None:
    codes = [c for c, _ in _federated_rule(tmp_path, 'tool "wikis.search"', "args.q == 1")]
    assert codes == ["E0402"]
    codes = [c for c, _ in _federated_rule(tmp_path, 'tool "wiki"', "args.q == 1")]
    assert codes == ["E0402"]


def test_the_integration_behind_a_tool() -> None:
    from mcpdsl.ir import model as m

    rest = m.Integration(package="p", name="crm", tool="crm.lookup", method="GET", url="http://x/")
    wiki = m.Integration(package="p", name="wiki", method="POST", url="http://w/mcp",
                         upstream="mcp", prefix="wiki")  # fmt: skip
    both = [rest, wiki]
    assert args.tool_integration(both, "crm.lookup") is rest
    assert args.tool_integration(both, "wiki.search") is wiki
    assert args.tool_integration(both, "wiki.a.b") is wiki
    assert args.tool_integration(both, "wiki") is None
    assert args.tool_integration(both, "wiki.") is None
    assert args.tool_integration(both, "wikis.x") is None
    assert args.federated_prefixes(both) == frozenset({"wiki"})
