"""W0106: a deny that a request lacking the attribute walks past."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcpdsl.pipeline import compile_tree


def _w0106(tmp_path: Path, rules: str) -> list[str]:
    (tmp_path / "main.mcp").write_text(f"package shop\n\npolicy p {{\n  default allow\n{rules}}}\n")
    compilation = compile_tree(tmp_path)
    assert compilation.project is not None, compilation.diagnostics
    return [d.message for d in compilation.diagnostics if d.code == "W0106"]


@pytest.mark.parametrize(
    "rule",
    [
        '  a: deny any -> any when context.tier != "gold"\n',
        '  a: deny any -> any when principal.dept not in ["eng"]\n',
        '  a: deny any -> any when action == "GET" or "gold" != request.headers.x-tier\n',
        '  a: deny any -> any when (source.ip in cidr "10.0.0.0/8") and context.tier != "x"\n',
    ],
)
def test_flagged(tmp_path: Path, rule: str) -> None:
    found = _w0106(tmp_path, rule)
    assert len(found) == 1 and found[0].startswith("deny `p/a` does not fire when `")


@pytest.mark.parametrize(
    "rule",
    [
        '  a: deny any -> any unless context.tier == "gold"\n',
        '  a: deny any -> any unless context.tier != "gold"\n',  # under `not`: fires if missing
        '  a: allow any -> any when context.tier != "gold"\n',  # an allow fails closed
        '  a: deny any -> any when action != "GET"\n',  # never missing
        "  a: deny any -> any when risk != 0\n",
        '  a: deny any -> any when context.tier == "gold"\n',
        '  a: deny any -> any when not (context.tier != "gold")\n',
        "  a: deny any -> any when context.a != context.b\n",  # two attributes: no one fix
    ],
)
def test_not_flagged(tmp_path: Path, rule: str) -> None:
    assert _w0106(tmp_path, rule) == []
