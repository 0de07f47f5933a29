"""`split_target`: the one split of a request target into path and query map."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mcpdsl.evaluate.target import split_target


def test_path_query_and_fragment() -> None:
    assert split_target("/v1/items?limit=10&q=a%20b#top") == (
        "/v1/items",
        {"limit": "10", "q": "a b"},
    )


def test_first_value_wins_and_bare_names_are_empty() -> None:
    assert split_target("/x?a=1&a=2&flag&=skipped&b=c=d") == (
        "/x",
        {"a": "1", "flag": "", "b": "c=d"},
    )


def test_plus_is_not_a_space() -> None:
    assert split_target("/x?q=a+b")[1] == {"q": "a+b"}


def test_no_query() -> None:
    assert split_target("/x") == ("/x", {})
    assert split_target("/x?") == ("/x", {})


@given(st.text())
def test_never_raises_and_path_has_no_query(target: str) -> None:
    path, query = split_target(target)
    assert "?" not in path and "#" not in path
    assert all(isinstance(k, str) and k for k in query)
