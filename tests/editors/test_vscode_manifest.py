"""The VS Code extension's manifest agrees with its files, the client and the CLI.

VS Code reports a wrong grammar path or language id only at run time, in a log
a user rarely opens; the packaging tool (`vsce`) checks neither.  These checks
read the manifest, `extension.js` and the CLI, with no node or VS Code needed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from click.testing import CliRunner
from repo_paths import REPO

from mcpdsl.cli import main

EXTENSION = REPO / "editors" / "vscode"


def _manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXTENSION / "package.json").read_text(encoding="utf-8"))
    return data


def test_every_file_the_manifest_names_exists() -> None:
    manifest = _manifest()
    named = [manifest["main"]]
    named += [lang["configuration"] for lang in manifest["contributes"]["languages"]]
    named += [grammar["path"] for grammar in manifest["contributes"]["grammars"]]
    for path in named:
        assert (EXTENSION / path).is_file(), path
    for path in named:
        if path.endswith(".json"):
            json.loads((EXTENSION / path).read_text(encoding="utf-8"))


def test_one_language_id_everywhere() -> None:
    manifest = _manifest()
    (language,) = manifest["contributes"]["languages"]
    (grammar,) = manifest["contributes"]["grammars"]
    assert language["extensions"] == [".mcp"]
    assert grammar["language"] == language["id"]
    tm = json.loads((EXTENSION / grammar["path"]).read_text(encoding="utf-8"))
    assert tm["scopeName"] == grammar["scopeName"]
    client = (EXTENSION / "extension.js").read_text(encoding="utf-8")
    selector = re.search(r"documentSelector:\s*\[\{\s*language:\s*\"(\w+)\"", client)
    assert selector is not None and selector.group(1) == language["id"]


def test_the_default_server_command_is_a_real_subcommand() -> None:
    manifest = _manifest()
    settings = manifest["contributes"]["configuration"]["properties"]
    command = settings["mcpdsl.server.command"]["default"]
    client = (EXTENSION / "extension.js").read_text(encoding="utf-8")
    assert json.dumps(command).replace(" ", "") in client.replace(" ", "")
    assert command[0] == "mcpdsl"
    assert CliRunner().invoke(main, [*command[1:], "--help"]).exit_code == 0
    # The client id is `mcpdsl`, so VS Code reads the trace level from `mcpdsl.trace.server`.
    assert 'new LanguageClient("mcpdsl"' in client
    assert "mcpdsl.trace.server" in settings


def test_the_extension_activates_on_a_policy_file() -> None:
    manifest = _manifest()
    engine = re.match(r"\^(\d+)\.(\d+)", manifest["engines"]["vscode"])
    assert engine is not None
    # Since VS Code 1.74 a contributed language activates its extension when a file
    # of it opens; the workspace event covers a folder opened with no file yet.
    assert (int(engine.group(1)), int(engine.group(2))) >= (1, 74)
    assert "workspaceContains:**/*.mcp" in manifest["activationEvents"]
