"""Fixtures for the decision-server tests: real `mcpdsl serve` processes on loopback.

`serve(path, *args)` starts one (see server_process.py) and stops it at the
end of the test, whatever happened; `demo_tree` is a small policy tree whose
one rule a test can flip from allow to deny (`write_gate`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from server_process import ServerProcess, start_server

#: A request the demo policy allows (and denies once `write_gate(..., "deny")`).
ALLOWED = {
    "principal": {"type": "service", "id": "frontend"},
    "resource": {"type": "service", "id": "api"},
    "action": "GET",
    "request": {"path": "/v1/items"},
}

GATE = """\
package demo

service api {{
  image "ghcr.io/demo/api:1.0.0"
  port  8080
}}

service frontend {{
  image "ghcr.io/demo/frontend:1.0.0"
  port  3000
}}

policy gate {{
  default deny

  {effect} service frontend -> service api on GET "/v1/**"
}}
"""


def write_gate(root: Path, effect: str = "allow") -> Path:
    """Write the demo tree atomically (a reload never sees a half-written file)."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / "gate.mcp"
    tmp = root / ".gate.mcp.tmp"
    tmp.write_text(GATE.format(effect=effect), encoding="utf-8")
    os.replace(tmp, target)
    return root


@pytest.fixture
def demo_tree(tmp_path: Path) -> Path:
    return write_gate(tmp_path / "tree")


@pytest.fixture
def serve() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(path: str | os.PathLike[str], *args: str, **kw: object) -> ServerProcess:
        server = start_server(path, *args, **kw)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(15)
