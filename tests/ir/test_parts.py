"""`mcpdsl.ir.parts`: the named positions lowering reads must match the grammar."""

from __future__ import annotations

from lark import Token, Tree

from mcpdsl.ir.parts import PARTS, part
from mcpdsl.source import SourceFile
from mcpdsl.syntax.parser import parse_source, parser

SOURCE = """package demo

service api { image "x/api:1" port 8080 }
scale api { replicas 1..4 target cpu 70%
  up by 2 pods every 30s
}

policy access {
  default deny
  r1: allow user any -> service api on GET, POST "/v1/**" when request.auth.mfa
  deny service [api, web] -> service api unless context.ip in cidr "10.0.0.0/8"
  risk {
    0.4 when not (context.device.managed)
  }
  require mfa when lower(context.tenant) matches "/t/*"
}

gateway edge {
  listen 8443
  route "/v1/**" -> service api rewrite "/" timeout 2s retry 3
  route prefix "/v2" header "x-a" == "b" query "q" -> service api
}

integration hook {
  call http "https://example.com"
  map { out.id = payload.id }
}

test "t" {
  request user alice -> service api GET "/v1/x" { context.tenant: "a", n: 1 }
  expect allow
}
"""

EXPECTED_TOKENS = {
    ("default_clause", "effect"): ("DENY",),
    ("risk_term", "weight"): ("NUMBER",),
    ("require_clause", "obligation"): ("NAME",),
    ("on_clause", "path"): ("STRING",),
    ("action", "name"): ("NAME", "STAR"),
    ("route_clause", "path"): ("STRING",),
    ("rewrite_option", "value"): ("STRING",),
    ("timeout_option", "value"): ("QUANTITY", "NUMBER"),
    ("route_clause", "prefix"): ("PREFIX",),
    ("header_match", "name"): ("STRING",),
    ("header_match", "op"): ("COMPARE_OP",),
    ("header_match", "value"): ("STRING",),
    ("query_match", "name"): ("STRING",),
    ("in_cidr", "network"): ("STRING",),
    ("glob_match", "pattern"): ("STRING",),
    ("call", "function"): ("NAME",),
    ("step_clause", "direction"): ("UP", "DOWN"),
    ("rule", "label"): ("NAME",),
}


def _names() -> set[str]:
    names = set()
    for rule in parser().rules:
        names.add(str(rule.origin.name))
        if rule.alias:
            names.add(str(rule.alias))
    return names


def test_every_rule_in_the_table_is_in_the_grammar() -> None:
    assert set(PARTS) - _names() == set()


def test_the_named_parts_are_what_the_grammar_puts_there() -> None:
    parsed = parse_source(SourceFile("demo.mcp", SOURCE))
    assert not [d for d in parsed.diagnostics if d.is_error], parsed.diagnostics
    checked: set[tuple[str, str]] = set()
    for item in parsed.items:
        for tree in item.iter_subtrees():
            for name in PARTS.get(str(tree.data), {}):
                found = part(tree, name)
                want = EXPECTED_TOKENS.get((str(tree.data), name))
                if want is not None and found is not None:  # None: an absent [optional] part
                    assert isinstance(found, Token) and found.type in want, (tree.data, name)
                    checked.add((str(tree.data), name))
                else:
                    assert found is None or isinstance(found, (Token, Tree)), (tree.data, name)
    assert checked == set(EXPECTED_TOKENS)
