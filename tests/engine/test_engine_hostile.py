"""Every engine entry point fails closed on hostile input; no cache can be poisoned.

`authorize` never raises and never allows what the plain-JSON form of the same
request denies; a decision never depends on earlier requests; `explain()` never
raises; `admit`, `scale`, `route`, `transform` and `mcpdsl eval` answer hostile
arguments with a clear error.
"""

from __future__ import annotations

import enum
import json
import math
from collections import UserDict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from engine_support import engine_for, request, write_tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcpdsl.cli import main as cli
from mcpdsl.engine import Engine, ScaleError, TransformError
from mcpdsl.evaluate.values import MAX_DEPTH, Refused, plain_request
from mcpdsl.ir.paths import PathRejected

SOURCE = """
policy access {
  default deny
  no-read: deny any -> service api on read
  no-admin: deny any -> any on * "/admin/**"
  blocked: deny any -> any when context.blocked
  low-score: deny any -> any when context.score < 0.5
  vip: allow service frontend -> service api when context.tier == "gold"
  open: allow any -> any
}

integration crm {
  call GET "https://crm.internal/api/{id}"
  map {
    name = $.first
    id = $.id
  }
}

gateway edge {
  listen 8443
  limit 10/s
  route "/v1/**" -> service api
}

scale api {
  replicas 1..10
  target cpu 70%
}
"""


class Action(enum.StrEnum):
    READ = "read"


class Weird(str):
    """A str subclass that lies about itself."""

    def __str__(self) -> str:
        return "something else"

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = str.__hash__


class Number(int):
    pass


class Obj(dict):  # type: ignore[type-arg]
    def items(self):  # type: ignore[no-untyped-def,override]
        raise RuntimeError("items() of a hostile dict")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return engine_for(tmp_path_factory.mktemp("hostile"), SOURCE)


def _id(value: Any) -> str | None:
    """Test ids: a huge integer cannot be printed (Python's 4,300-digit limit)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"int{value.bit_length()}bits"
    if isinstance(value, (dict, list)):
        return type(value).__name__
    return None


def base(**context: Any) -> dict[str, Any]:
    req = request(action="read", path="/v1/items")
    req["context"] = {"score": 0.9, **context}
    return req


# ------------------------------------------------------------ regressions


def test_a_str_enum_action_does_not_poison_the_candidate_memo(engine: Engine) -> None:
    plain = base()
    assert engine.authorize(plain).rules == ("access/no-read",)
    hostile = {**plain, "action": Action.READ}
    assert engine.authorize(hostile).rules == ("access/no-read",)  # read as "read"
    # before the fix the enum call memoised candidates without the `read` rules
    # under a key equal to the plain one, and this deny was skipped until reload
    assert engine.authorize(plain).rules == ("access/no-read",)
    assert not engine.authorize(plain).allowed


def test_subclasses_everywhere_are_read_as_plain_values(engine: Engine) -> None:
    plain = base(tier="gold", blocked=False)
    plain["action"] = "GET"
    hostile = UserDictLike(plain)
    assert engine.authorize(hostile).as_dict() == engine.authorize(plain).as_dict()
    weird = {**plain, "context": {"tier": Weird("gold"), "score": Number(1), "blocked": False}}
    assert engine.authorize(weird).as_dict() == engine.authorize(plain).as_dict()
    assert engine.authorize(weird).rules == ("access/open", "access/vip")


def UserDictLike(value: dict[str, Any]) -> dict[str, Any]:
    class Sub(dict):  # type: ignore[type-arg]
        pass

    return Sub({k: Sub(v) if isinstance(v, dict) else v for k, v in value.items()})


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ([], "the request is a list, not a JSON object"),
        ("x", "the request is a string, not a JSON object"),
        (None, "the request is null, not a JSON object"),
        (UserDict({"action": "GET"}), "the request is a `UserDict`, not a JSON object"),
    ],
)
def test_non_object_requests_are_denied_with_a_reason(
    engine: Engine, value: Any, reason: str
) -> None:
    d = engine.authorize(value)
    assert not d.allowed and d.refusal == reason
    assert reason in d.explain()


@pytest.mark.parametrize(
    ("score", "reason"),
    [
        (math.nan, "NaN and infinities are not JSON"),
        (math.inf, "NaN and infinities are not JSON"),
        (Decimal("NaN"), "NaN and infinities are not JSON"),
        (10**5000, "an integer has more than 1024 bits"),
        (b"0.9", "a value is a `bytes`, not JSON"),
        ({1, 2}, "a value is a `set`, not JSON"),
        (object(), "a value is a `object`, not JSON"),
    ],
    ids=_id,
)
def test_non_json_values_that_are_read_deny_with_a_reason(
    engine: Engine, score: Any, reason: str
) -> None:
    d = engine.authorize(base(score=score))
    assert not d.allowed and d.refusal is not None and reason in d.refusal, d.refusal
    assert "request refused" in d.explain()
    assert d.as_dict()["refusal"] == d.refusal


def test_deep_nesting_and_cycles_are_refused_not_a_recursion_error(engine: Engine) -> None:
    deep: Any = 0.9
    for _ in range(MAX_DEPTH + 10):
        deep = [deep]
    d = engine.authorize(base(score=deep))
    assert not d.allowed and "nested deeper" in (d.refusal or "")
    cyclic: dict[str, Any] = base()
    cyclic["context"]["self"] = cyclic["context"]
    with pytest.raises(Refused, match="nested deeper"):
        plain_request(cyclic)
    # a cycle the policy never reads does not stop the decision, and explain() copes
    d = engine.authorize(cyclic)
    assert d.rules == ("access/no-read",)
    assert "no explanation" in d.explain()
    nested = base()
    nested["context"]["deep"] = deep
    assert engine.authorize(nested).rules == ("access/no-read",)  # never read: no effect
    nested["principal"] = UserDictLike(nested["principal"])  # the slow path walks it all
    d = engine.authorize(nested)
    assert not d.allowed and "nested deeper" in (d.refusal or "")


def test_a_hostile_dict_subclass_is_read_through_its_storage(engine: Engine) -> None:
    req = base()
    req["principal"] = Obj(req["principal"])
    d = engine.authorize(req)
    assert d.rules == ("access/no-read",)
    assert d.explain().startswith("decision: deny")


def test_explain_never_raises_on_a_request_mutated_after_authorize(engine: Engine) -> None:
    req = base()
    d = engine.authorize(req)
    req["context"]["score"] = math.nan
    assert d.explain().startswith("decision: deny")


# ------------------------------------------------------------ other entry points


@pytest.mark.parametrize(
    "now",
    [math.nan, math.inf, -math.inf, "1", None.__class__, True, 10**400, -(10**400), Decimal(1)],
)
def test_admit_refuses_a_now_that_is_not_a_finite_number(engine: Engine, now: Any) -> None:
    with pytest.raises(ValueError, match="finite number"):
        engine.admit("gateway:edge", now)


def test_a_clock_far_ahead_does_not_freeze_the_bucket(engine: Engine) -> None:
    key = "gateway:edge"
    assert engine.admit(key, 1e300)
    for _ in range(9):
        engine.admit(key, 1e300)
    assert not engine.admit(key, 1e300)
    assert not engine.admit(key, 0.0)  # re-anchored, nothing refilled yet
    assert engine.admit(key, 1.0)  # refills from the new anchor: not frozen until 1e300


def test_admit_with_a_non_string_key_is_a_key_error(engine: Engine) -> None:
    with pytest.raises(KeyError):
        engine.admit(["gateway:edge"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("metrics", "current", "history", "now"),
    [
        ({"cpu": math.nan}, 1, None, 0),
        ({"cpu": Decimal("1e999999")}, 1, None, 0),
        ({"cpu": 0.9}, 10**5000, None, 0),
        ({"cpu": 0.9}, -1, None, 0),
        (["cpu"], 1, None, 0),
        ({"cpu": 0.9}, 1, [(math.nan, 3)], 0),
        ({"cpu": 0.9}, 1, [(0, "3")], 0),
        ({"cpu": 0.9}, 1, [1, 2], 0),
        ({"cpu": 0.9}, 1, "history", 0),
        ({"cpu": 0.9}, 1, None, math.nan),
        ({"cpu": 0.9}, 1, None, 1e300),
        ({"cpu": 0.9}, 1, None, "now"),
    ],
    ids=_id,
)
def test_scale_answers_hostile_arguments_with_a_scale_error(
    engine: Engine, metrics: Any, current: Any, history: Any, now: Any
) -> None:
    with pytest.raises(ScaleError):
        engine.scale("api", metrics, current, history, now)


def test_route_answers_hostile_arguments_with_a_value_error(engine: Engine) -> None:
    with pytest.raises(PathRejected):
        engine.route("edge", "GET", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="headers"):
        engine.route("edge", "GET", "/v1/x", {"host": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        engine.route(["edge"], "GET", "/v1/x")  # type: ignore[arg-type]
    d = engine.route("edge", Action.READ, Weird("/v1/x"))
    assert d is not None and d.path == "/v1/x" and type(d.path) is str


@pytest.mark.parametrize("bad", [math.nan, 10**5000, object(), {1, 2}], ids=_id)
def test_transform_answers_non_json_payload_values_with_a_transform_error(
    engine: Engine, bad: Any
) -> None:
    with pytest.raises(TransformError, match="not JSON"):
        engine.transform("crm", {"first": bad, "id": 1})
    with pytest.raises(TransformError):
        engine.transform("crm", bad)
    assert engine.transform("crm", {"first": Weird("Ada"), "id": Number(7)}) == {
        "name": "Ada",
        "id": 7,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"action": NaN}', "`NaN` is not a JSON number"),
        ('{"action": Infinity}', "`Infinity` is not a JSON number"),
        ('{"n": ' + "9" * 5000 + "}", "is not usable input"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"a": "\\ud800"}', "lone surrogate"),
        ("[]", "not a JSON object"),
    ],
    ids=["nan", "infinity", "5000-digits", "deep", "surrogate", "list"],
)
def test_eval_cli_refuses_hostile_input_without_a_traceback(
    tmp_path: Path, text: str, message: str
) -> None:
    tree = write_tree(tmp_path, SOURCE)
    (tmp_path / "in.json").write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["eval", str(tree), "--input", str(tmp_path / "in.json")])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert ("Traceback" not in result.output and result.exception is None) or isinstance(
        result.exception, SystemExit
    )


def test_eval_cli_refuses_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    tree = write_tree(tmp_path, SOURCE)
    (tmp_path / "in.json").write_bytes(b'{"a": "\xff"}')
    result = CliRunner().invoke(cli, ["eval", str(tree), "--input", str(tmp_path / "in.json")])
    assert result.exit_code == 2 and "not UTF-8" in result.output


# ------------------------------------------------------------ properties

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["read", "GET", "gold", "api", "frontend", "service", "/admin/x", "/v1/a"]),
    st.text(max_size=5),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
hostile_scalars = st.one_of(
    st.sampled_from(
        [math.nan, math.inf, -math.inf, 10**400, Decimal("NaN"), b"x", object(), {1}, 1j]
    ),
    st.sampled_from(["read", "gold", "api"]).map(Weird),
    st.sampled_from(["read", "gold", "api"]).map(lambda s: Action.READ if s == "read" else s),
    st.integers(-5, 5).map(Number),
)


def _disguise(draw: st.DrawFn, value: Any) -> Any:
    """The same JSON value with subclasses, tuples and some hostile leaves mixed in."""
    if isinstance(value, dict):
        items = {k: _disguise(draw, v) for k, v in value.items()}
        return UserDictLike(items) if draw(st.booleans()) else items
    if isinstance(value, list):
        items_ = [_disguise(draw, v) for v in value]
        return tuple(items_) if draw(st.booleans()) else items_
    if isinstance(value, str) and draw(st.booleans()):
        return Weird(value)
    if type(value) is int and draw(st.booleans()):
        return Number(value)
    if draw(st.integers(0, 9)) == 0:
        return draw(hostile_scalars)
    return value


@st.composite
def requests_(draw: st.DrawFn) -> dict[str, Any]:
    req: dict[str, Any] = {
        "principal": {
            "type": draw(st.sampled_from(["service", "user", 1])),
            "id": draw(st.sampled_from(["frontend", "api", "x"])),
        },
        "resource": {"type": "service", "id": draw(st.sampled_from(["api", "frontend"]))},
        "action": draw(st.sampled_from(["read", "GET", None, 7])),
        "request": {"path": draw(st.sampled_from(["/v1/a", "/admin/x", "/a/../admin/x"]))},
        "context": draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "score": json_values,
                    "tier": json_values,
                    "blocked": json_values,
                    "other": json_values,
                },
            )
        ),
    }
    return req


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(plain=requests_(), data=st.data())
def test_hostile_requests_never_raise_nor_allow_more_than_their_plain_form(
    engine: Engine, plain: dict[str, Any], data: st.DataObject
) -> None:
    disguised = _disguise(data.draw, plain)
    d = engine.authorize(disguised)
    d.explain()
    d.as_dict()
    reference = engine.authorize(plain)
    if d.refusal is None:
        try:
            cleaned = plain_request(disguised)
        except Refused:
            cleaned = None  # a hostile leaf the policy never read
        if cleaned is not None:
            assert d.as_dict() == engine.authorize(cleaned).as_dict()
    if not reference.allowed:
        assert not d.allowed, (plain, disguised)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=st.lists(st.one_of(requests_(), json_values, hostile_scalars), max_size=6),
    probes=st.lists(requests_(), min_size=1, max_size=3),
    data=st.data(),
)
def test_decisions_never_depend_on_earlier_requests(
    tmp_path_factory: pytest.TempPathFactory,
    history: list[Any],
    probes: list[dict[str, Any]],
    data: st.DataObject,
) -> None:
    fresh = _fresh(tmp_path_factory)
    before = [json.dumps(fresh.authorize(p).as_dict(), sort_keys=True) for p in probes]
    used = _used(tmp_path_factory)
    for h in history:
        used.authorize(_disguise(data.draw, h))
    after = [json.dumps(used.authorize(p).as_dict(), sort_keys=True) for p in probes]
    assert before == after


_ENGINES: dict[str, Engine] = {}


def _fresh(factory: pytest.TempPathFactory) -> Engine:
    """A new engine every call: nothing memoised."""
    return Engine.from_project(_engine(factory).project)


def _used(factory: pytest.TempPathFactory) -> Engine:
    """One engine shared by every example: its memo sees every earlier request."""
    return _engine(factory)


def _engine(factory: pytest.TempPathFactory) -> Engine:
    if "e" not in _ENGINES:
        _ENGINES["e"] = engine_for(factory.mktemp("history"), SOURCE)
    return _ENGINES["e"]


def test_the_decision_log_records_hostile_requests_without_raising(tmp_path: Path) -> None:
    lines: list[str] = []
    logged = engine_for(tmp_path, SOURCE, decision_log=lines.append)
    cyclic: dict[str, Any] = base()
    cyclic["context"]["self"] = cyclic["context"]
    for req in (base(score=math.nan), cyclic, base(other=10**5000), [], base(s="\ud800")):
        assert not logged.authorize(req).allowed  # type: ignore[arg-type]
    records = [json.loads(line) for line in lines]
    assert len(records) == 5
    assert "NaN" in records[0]["decision"]["refusal"]
    assert "not plain JSON" in records[1]["input"]["not_logged"]
    assert records[3]["decision"]["refusal"] == "the request is a list, not a JSON object"


# ------------------------------------------------------------ lone surrogates

SURROGATES = """
policy access {
  default deny
  no-files: deny any -> any on * "/files/**"
  gold: deny any -> any when context.tier == "g\ufffd"
  open: allow any -> any
}
"""


@pytest.mark.parametrize(
    "hostile",
    [
        request(path="/v1/\ud83d\ude00"),  # one character to OPA (a pair), two to Python
        request(path="/v1/\ud800"),
        request(principal=("service", "front\ud800end")),
        request(resource=("service", "a\udfff")),
        request(action="G\ud800T"),
        request(context__tier="g\ud800"),  # U+FFFD to OPA: `gold` denies
    ],
    ids=["pair-in-path", "path", "principal", "resource", "action", "attribute"],
)
def test_a_lone_surrogate_the_evaluation_reads_is_refused(
    tmp_path: Path, hostile: dict[str, Any]
) -> None:
    """Python strings may hold lone surrogates, JSON text cannot: OPA's decoder turns them
    into U+FFFD (or joins a pair into one character), so the engine read them differently
    and allowed what the Rego denies.  Every read refuses them, fast path and slow path."""
    engine = engine_for(tmp_path, SURROGATES)
    decision = engine.authorize(hostile)
    assert not decision.allowed
    assert decision.refusal == "a string contains a lone surrogate (not a Unicode scalar value)"
    assert engine.authorize(request(path="/files/é")).rules == ("access/no-files",)
    assert engine.authorize(request(path="/v1/é")).allowed
    assert not engine.authorize(request(context__tier="g\ufffd")).allowed


def test_eval_cli_reads_numbers_exactly_as_opa_does(tmp_path: Path) -> None:
    """`0.49999999999999999999` is below 0.5 for OPA (exact JSON numbers); read as a Python
    float it is 0.5, so `eval` allowed what the Rego denies.  Decimal keeps it exact."""
    tree = write_tree(tmp_path, SOURCE)
    text = json.dumps(request(context__tier="x")).replace(
        '"tier": "x"', '"tier": "x", "score": 0.49999999999999999999'
    )
    (tmp_path / "in.json").write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["eval", str(tree), "--input", str(tmp_path / "in.json")])
    assert result.exit_code == 0, result.output
    decision = json.loads(result.output)
    assert decision["allowed"] is False and decision["rules"] == ["access/low-score"]
    (tmp_path / "in.json").write_text(text.replace("0.49999999999999999999", "0.5"))
    result = CliRunner().invoke(cli, ["eval", str(tree), "--input", str(tmp_path / "in.json")])
    assert json.loads(result.output)["allowed"] is True, result.output
