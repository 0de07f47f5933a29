"""The exit-code contract is written once (`mcpdsl.cli.exit`) and every subcommand uses it.

A literal `sys.exit(2)` in a new subcommand would silently fork the contract that scripts
and CI rely on (0 ok, 1 findings, 2 usage/input), so the CLI sources are scanned for it.
"""

from __future__ import annotations

import ast

from repo_paths import REPO

from mcpdsl.cli import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE

CLI = REPO / "mcpdsl" / "cli"


def _literal_exits(tree: ast.AST) -> list[int]:
    """Line numbers of `sys.exit(<int>)` / `SystemExit(<int>)` calls with a literal code."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name not in ("exit", "SystemExit"):
            continue
        if any(isinstance(n, ast.Constant) and isinstance(n.value, int) for n in ast.walk(node)):
            lines.append(node.lineno)
    return lines


def test_the_contract_values_are_binding() -> None:
    assert (EXIT_OK, EXIT_FINDINGS, EXIT_USAGE) == (0, 1, 2)


def test_no_cli_module_exits_with_a_literal_code() -> None:
    offenders = {
        path.name: lines
        for path in sorted(CLI.glob("*.py"))
        if (lines := _literal_exits(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert offenders == {}


def test_the_scan_sees_a_literal_exit() -> None:
    assert _literal_exits(ast.parse("import sys\nsys.exit(1 if x else 0)\n")) == [2]
    assert _literal_exits(ast.parse("raise SystemExit(2)\n")) == [1]
    assert _literal_exits(ast.parse("sys.exit(EXIT_USAGE)\n")) == []
