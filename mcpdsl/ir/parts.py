"""Named parts of parse trees, keyed by grammar rule (grammar/mcp.lark).

Lowering reads `part(clause, "condition")` instead of `clause.children[3]`: the
positions live in one table next to the rules they describe, so a grammar edit
that moves a child is fixed here once, and a read of a part the rule does not
have fails loudly (`KeyError`) instead of lowering the wrong child.  Positions
count every child lark keeps: named keyword tokens (`DEFAULT`, `WHEN`, ...) and
`None` for an absent `[optional]` item; a negative position counts from the end
(for rules with a repeated middle).
"""

from __future__ import annotations

from typing import Any

from lark import Token, Tree

#: rule (or alias) -> part name -> child position, as the grammar writes the rule.
PARTS: dict[str, dict[str, int]] = {
    # policy
    "rule": {"label": 0},  # [NAME COLON] (ALLOW | DENY) principal_pattern ARROW entity_pattern ...
    "default_clause": {"effect": 1},  # DEFAULT (ALLOW | DENY)
    "principal_pattern": {"entity": 0},  # entity_pattern
    "any_of_type": {"type": 0},  # entity_type ANY
    "one_entity": {"type": 0},  # entity_type entity_ref
    "entity_list": {"type": 0},  # entity_type [ entity_ref, ... ]
    "entity_type": {"keyword": 0},  # SERVICE | AGENT | USER | TOOL | GROUP
    "on_clause": {"path": -1},  # ON action (COMMA action)* [STRING]
    "action": {"name": 0},  # NAME | STAR
    "when_condition": {"expr": 1},  # WHEN expr
    "unless_condition": {"expr": 1},  # UNLESS expr
    "risk_term": {"weight": 0, "condition": 2},  # scalar WHEN expr
    "require_clause": {"obligation": 1, "condition": 3},  # REQUIRE NAME [WHEN expr]
    # integration, gateway
    "mapping": {"target": 0, "expr": 2},  # key_path ASSIGN expr
    "input_field": {"key": 0, "optional": 1, "value": -1},  # (key | STRING) [QMARK] COLON value
    "auth_bearer": {"secret": 2},  # AUTH BEARER secret_source
    "auth_header": {"header": 2, "secret": 3},  # AUTH HEADER STRING secret_source
    "secret_env": {"value": 1},  # ENV STRING
    "secret_file": {"value": 1},  # FILE STRING
    "secret_inline": {"value": 0},  # STRING
    "breaker_clause": {"failures": 1, "open": 4},  # BREAKER scalar FAILURES OPEN scalar
    "upstream_clause": {"url": 2, "prefix": 4},  # UPSTREAM MCP STRING [PREFIX STRING]
    "mcp_clause": {"resource": 2, "accept": 3},  # MCP RESOURCE STRING [accept_clause]
    # ROUTE [PREFIX] STRING [on_methods] route_match* ARROW route_target route_option*
    "route_clause": {"prefix": 1, "path": 2},
    "header_match": {"name": 1, "op": 2, "value": 3},  # HEADER STRING [COMPARE_OP STRING]
    "query_match": {"name": 1, "op": 2, "value": 3},  # QUERY STRING [COMPARE_OP STRING]
    "rewrite_option": {"value": 1},  # REWRITE STRING
    "timeout_option": {"value": 1},  # TIMEOUT scalar
    # scaling, jobs
    "step_clause": {"direction": 0},  # (UP | DOWN) BY scalar [PODS] EVERY scalar ...
    "select_clause": {"direction": 0, "choice": 2},  # (UP | DOWN) SELECT (MAX | NAME)
    "time_window": {"zone": -1},  # TIME MINUS TIME zone
    # tests
    "attribute": {"path": 0, "value": -1},  # key_path COLON literal
    "expect_risk": {"value": 2},  # EXPECT RISK scalar
    "expect_replicas": {"value": 2},  # EXPECT REPLICAS scalar
    # expressions
    "in_cidr": {"network": -1},  # sum IN CIDR STRING
    "glob_match": {"pattern": -1},  # sum MATCHES STRING
    "path": {"root": 0},  # (NAME | DOLLAR) (DOT key)*
    "call": {"function": 0},  # NAME LPAR [expr (COMMA expr)*] RPAR
    # literals
    "range": {"low": 0, "high": 2},  # scalar DOTDOT scalar
    "pair": {"key": 0, "value": -1},  # (key | STRING) COLON value
    "literal_pair": {"key": 0, "value": -1},  # (key | STRING) COLON literal
    "setting": {"key": 0, "value": 1},  # key value
    "key": {"word": 0},  # NAME or a keyword
}


def part(tree: Tree[Token], name: str) -> Any:
    """The child of `tree` that its grammar rule calls `name` (a tree, a token or None)."""
    return tree.children[PARTS[tree.data][name]]


def tree_part(tree: Tree[Token], name: str) -> Tree[Token]:
    """`part` for a part that is always a tree (the grammar makes it one)."""
    found = tree.children[PARTS[tree.data][name]]
    assert isinstance(found, Tree), (tree.data, name)
    return found


def leading(tree: Tree[Token]) -> Token | Tree[Token]:
    """The first child: every clause rule starts with its keyword token."""
    return tree.children[0]


def rest(tree: Tree[Token]) -> list[Token | Tree[Token]]:
    """Every child after the first (the items after a leading keyword or type)."""
    return tree.children[1:]
