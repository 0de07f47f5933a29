"""`Engine.transform`: `map` blocks, `??` defaults, nested targets and TransformError."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_support import engine_for

from mcpdsl.engine import Engine, TransformError

SOURCE = """
integration crm {
  call GET "https://crm.internal/api/v2/customers/{id}"
  map {
    id         = $.id
    name       = $.first_name + " " + $.last_name
    email      = lower($.contact.email)
    tier       = $.segment ?? "standard"
    owner.name = $.owner.name ?? "nobody"
    owner.team = upper($.owner.team ?? "core")
    score      = $.score * 2
    tags       = len($.tags ?? [])
    vip        = $.segment == "gold"
    raw        = $.contact
  }
}

integration ten {
  call GET "https://x.internal/"
  map {
    f0 = $.a
    f1 = $.b ?? 0
    f2 = $.c + 1
    f3 = lower($.d)
    f4 = $.e.f
    f5 = $.g ?? "x"
    f6 = len($.h)
    f7 = $.i == "y"
    f8 = upper($.j)
    f9 = $.k * 2
  }
}
"""

PAYLOAD = {
    "id": 7,
    "first_name": "Ada",
    "last_name": "Lovelace",
    "contact": {"email": "ADA@Example.com"},
    "segment": "gold",
    "owner": {"name": "grace"},
    "score": 0.1,
    "tags": ["a", "b"],
}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return engine_for(tmp_path_factory.mktemp("tf"), SOURCE)


def test_mapping(engine: Engine) -> None:
    out = engine.transform("crm", PAYLOAD)
    assert out == {
        "id": 7,
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "tier": "gold",
        "owner": {"name": "grace", "team": "CORE"},
        "score": 0.2,
        "tags": 2,
        "vip": True,
        "raw": {"email": "ADA@Example.com"},
    }
    assert type(out["score"]) is float  # exact decimal 0.2 as a JSON number


def test_defaults(engine: Engine) -> None:
    payload = {k: v for k, v in PAYLOAD.items() if k not in ("segment", "owner", "tags")}
    out = engine.transform("crm", payload)
    assert out["tier"] == "standard" and out["owner"] == {"name": "nobody", "team": "CORE"}
    assert out["tags"] == 0 and out["vip"] is False


def test_missing_field_names_the_field_and_the_span(engine: Engine) -> None:
    payload = dict(PAYLOAD)
    del payload["last_name"]
    with pytest.raises(TransformError) as info:
        engine.transform("crm", payload)
    err = info.value
    assert err.field == "name"
    assert "field `name` of `crm` is missing" in str(err)
    assert "`$.last_name` is missing" in str(err)
    assert err.span is not None and f"t.mcp:{err.span.line}:" in str(err)


def test_errors_raise(engine: Engine) -> None:
    with pytest.raises(TransformError, match=r"field `email` .* evaluation error"):
        engine.transform("crm", {**PAYLOAD, "contact": {"email": 5}})
    with pytest.raises(TransformError, match="`score`"):
        engine.transform("crm", {**PAYLOAD, "score": "high"})
    with pytest.raises(TransformError, match="field `id`"):
        engine.transform("crm", [])  # type: ignore[arg-type]


def test_unknown_integration(engine: Engine) -> None:
    with pytest.raises(KeyError):
        engine.transform("nope", {})


def test_ten_field_mapping(engine: Engine, tmp_path: Path) -> None:
    payload = {
        "a": 1,
        "b": 2,
        "c": 3,
        "d": "X",
        "e": {"f": 1},
        "h": [1],
        "i": "y",
        "j": "z",
        "k": 4,
    }
    assert len(engine.transform("ten", payload)) == 10
