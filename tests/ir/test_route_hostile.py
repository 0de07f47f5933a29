"""Hostile route, retry and balance clauses: each a coded diagnostic, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcpdsl.pipeline import compile_tree

PRELUDE = """package t

service api { image "example/api:1" port 8080 stateful }
balance api { strategy maglev }

gateway edge {
  listen 8080
"""


def _codes(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    (tmp_path / "main.mcp").write_text(text, encoding="utf-8")
    compilation = compile_tree(tmp_path)
    return [(d.code, d.message) for d in compilation.diagnostics if d.is_error]


@pytest.mark.parametrize(
    ("route", "code", "words"),
    [
        ('route "/**" header "" -> service api', "E0314", "is empty"),
        ('route "/**" header "a b" -> service api', "E0314", "not an HTTP header name"),
        ('route "/**" header "x-caf\u00e9" -> service api', "E0314", "not an HTTP header name"),
        ('route "/**" header ":path" == "/" -> service api', "E0314", "not an HTTP header"),
        ('route "/**" header "Host" == "a" -> service api', "E0314", "rewritten by the gateway"),
        ('route "/**" header "X-Forwarded-For" -> service api', "E0314", "gateway itself"),
        ('route "/**" header "x-request-id" -> service api', "E0314", "gateway itself"),
        (f'route "/**" header "{"x" * 300}" -> service api', "E0314", "longer than 256"),
        ('route "/**" header "x-a" == "a\\nb" -> service api', "E0314", "NUL, CR or LF"),
        ('route "/**" header "x-a" == "a\\u0000" -> service api', "E0314", "NUL, CR or LF"),
        ('route "/**" header "x-a" < "b" -> service api', "E0314", "`<` cannot compare"),
        ('route "/**" query "q" != "1" -> service api', "E0314", "`!=` cannot compare"),
        ('route "/**" query "" -> service api', "E0314", "is empty"),
        ('route prefix "v1" -> service api', "E0309", "must start with `/`"),
        ('route prefix "/v1?x=1" -> service api', "E0309", "query or fragment"),
        ('route prefix "/v1/*" -> service api', "E0309", "matched as text"),
        ('route prefix "/v1//x" -> service api', "E0309", "normal form"),
        ('route prefix "/v1/../x" -> service api', "E0309", "normal form"),
        ('route prefix "/v1\\u0001" -> service api', "E0309", "control characters"),
        ('route "/**" -> service api retry 2 on [teapot]', "E0204", "`teapot`"),
        ('route "/**" -> service api retry 2 on [5xx, "gateway error"]', "E0204", "gateway error"),
        ('route "/**" -> service api retry 11', "E0303", "out of bounds"),
        ('route "/**" -> service api retry 2 per try timeout 0s', "E0303", "positive"),
        ('route "/**" -> service api retry 2 per try timeout 5MB', "E0301", ""),
    ],
)
def test_hostile_route_clauses(tmp_path: Path, route: str, code: str, words: str) -> None:
    found = _codes(tmp_path, PRELUDE + f"  {route}\n}}\n")
    assert found and found[0][0] == code, found
    assert words in found[0][1], found


def test_a_retry_on_list_is_deduplicated(tmp_path: Path) -> None:
    from mcpdsl import load

    (tmp_path / "main.mcp").write_text(
        PRELUDE + '  route "/**" -> service api retry 2 on [reset, 5xx, reset]\n}\n'
    )
    route = load(tmp_path).gateways[0].routes[0]
    assert route.retry is not None and route.retry.on == ("reset", "5xx")


def test_a_huge_route_table_with_conditions_lowers(tmp_path: Path) -> None:
    routes = "".join(
        f'  route prefix "/r{i}" header "x-h{i}" == "{i}" query "q{i}" -> service api\n'
        for i in range(300)
    )
    assert _codes(tmp_path, PRELUDE + routes + "}\n") == []
