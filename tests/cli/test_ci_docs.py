"""The recipes in docs/ci.md are valid YAML and name what the repository ships.

A reader copies these blocks into their own repository, where a wrong hook id or
action input fails only on their first commit or pull request.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from repo_paths import REPO

CI_DOC = (REPO / "docs" / "ci.md").read_text(encoding="utf-8")
BLOCKS = [yaml.safe_load(m) for m in re.findall(r"^```yaml\n(.*?)^```", CI_DOC, re.S | re.M)]


def _dicts(kind: str) -> list[dict[str, Any]]:
    return [b for b in BLOCKS if isinstance(b, dict) and kind in b]


def test_every_yaml_block_parses() -> None:
    assert len(BLOCKS) >= 3
    assert all(block is not None for block in BLOCKS)


def test_the_pre_commit_recipe_names_the_shipped_hooks() -> None:
    shipped = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    ids = {hook["id"] for hook in shipped}
    (config,) = _dicts("repos")
    (repo,) = config["repos"]
    assert {hook["id"] for hook in repo["hooks"]} == ids
    assert repo["rev"], "pre-commit needs a rev"


def test_the_action_recipe_passes_only_declared_inputs() -> None:
    action = yaml.safe_load((REPO / "action.yml").read_text(encoding="utf-8"))
    (workflow,) = _dicts("jobs")
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    (ours,) = [s for s in steps if "mcpdsl@" in s.get("uses", "")]
    assert set(ours["with"]) <= set(action["inputs"])
    for name in action["inputs"]:
        assert f"`{name}`" in CI_DOC, f"input `{name}` is not documented"


def test_the_gitlab_recipe_runs_in_merge_request_pipelines() -> None:
    """`CI_MERGE_REQUEST_*` variables exist only there; without rules the diff never runs."""
    (gitlab,) = _dicts("policy")
    job = gitlab["policy"]
    sources = " ".join(rule.get("if", "") for rule in job["rules"])
    assert '$CI_PIPELINE_SOURCE == "merge_request_event"' in sources
    script = "\n".join(job["script"])
    assert "CI_MERGE_REQUEST_TARGET_BRANCH_NAME" in script
    assert "pip install mcpdsl\n" not in script + "\n", "mcpdsl is not on PyPI"
