"""IR `==`/`hash` read field values directly; they must agree with comparing dumps.

`Node.__eq__` used to compare `model_dump()`s.  It now compares fields (nested
nodes by their own span-blind `==`), which is much faster; these tests pin the
meaning: equal exactly when the dumps are equal, equal nodes hash alike, spans
never count.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from repo_paths import REPO

from mcpdsl.ir import model as m
from mcpdsl.pipeline import compile_tree
from mcpdsl.source import Span


def _nodes(value: Any) -> Iterator[m.Node]:
    if isinstance(value, m.Node):
        yield value
        for name in type(value).model_fields:
            yield from _nodes(getattr(value, name))
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _nodes(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _nodes(item)


@pytest.fixture(scope="module")
def by_type() -> dict[type, list[m.Node]]:
    project = compile_tree(REPO / "policies").project
    assert project is not None
    found: dict[type, list[m.Node]] = defaultdict(list)
    for node in _nodes(project):
        found[type(node)].append(node)
    return found


def test_equal_exactly_when_the_dumps_are_equal(by_type: dict[type, list[m.Node]]) -> None:
    pairs = 0
    for nodes in by_type.values():
        for a, b in itertools.combinations(nodes[:60], 2):
            same = a.model_dump() == b.model_dump()
            assert (a == b) is same, (a, b)
            if same:
                assert hash(a) == hash(b)
            pairs += 1
    assert pairs > 1000  # the policies/ tree really exercised the comparison


def test_spans_take_no_part() -> None:
    here, there = Span("a.mcp", 1, 1, 1, 5), Span("b.mcp", 9, 2, 9, 7)
    a = m.Ref(name="api", span=here)
    b = m.Ref(name="api", span=there)
    assert a == b and hash(a) == hash(b)
    assert m.Ref(name="api") != m.Ref(name="web")
    assert m.Ref(name="api") != m.Ref(package="p", name="api")


def test_exact_decimals_compare_by_value() -> None:
    a = m.Rate(amount=Decimal("100"), per=Decimal("0.200"))
    b = m.Rate(amount=Decimal("100.0"), per=Decimal("0.2"))
    assert a == b and hash(a) == hash(b)
    assert a != m.Rate(amount=Decimal("100"), per=Decimal("0.3"))


def test_a_list_built_with_fast_hashes_like_its_tuple() -> None:
    listed = m.Ref.fast(name="api")
    object.__setattr__(listed, "__dict__", {**listed.__dict__, "name": ["api"]})
    tupled = m.Ref.fast(name="api")
    object.__setattr__(tupled, "__dict__", {**tupled.__dict__, "name": ("api",)})
    assert hash(listed) == hash(tupled)


def test_different_node_types_are_never_equal() -> None:
    assert m.Ref(name="x") != m.Rate(amount=Decimal(1), per=Decimal(1))
