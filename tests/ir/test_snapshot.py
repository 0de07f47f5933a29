"""The IR of the flagship policy set, as JSON: any change to lowering shows up here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mcpdsl

REPO = Path(__file__).resolve().parents[2]


def test_ir_of_policies(snapshot: Any) -> None:
    project = mcpdsl.load(REPO / "policies")
    text = json.dumps(project.model_dump(mode="json"), indent=1, sort_keys=True)
    assert text == snapshot


def test_policies_and_examples_are_formatted() -> None:
    """`mcpdsl fmt --check` is the CI gate users run; our own trees pass it."""
    from click.testing import CliRunner

    from mcpdsl.cli import main

    result = CliRunner().invoke(
        main, ["fmt", "--check", str(REPO / "policies"), str(REPO / "examples")]
    )
    assert result.exit_code == 0, result.output
