"""A real LSP client (pytest-lsp) talking to `python -m mcpdsl lsp` over stdio.

Each test gets a fresh server whose workspace is a copy of `policies/`, so
that edits, saves and formatting never touch the repository.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

REPO = Path(__file__).resolve().parent.parent.parent

CONFIG = ClientServerConfig(
    server_command=[sys.executable, "-m", "mcpdsl", "lsp"],
    server_env={**os.environ, "PYTHONPATH": str(REPO)},
)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "policies"
    shutil.copytree(REPO / "policies", root)
    return root


@pytest_lsp.fixture(config=CONFIG)
async def client(lsp_client: LanguageClient, workspace: Path):
    params = types.InitializeParams(
        capabilities=types.ClientCapabilities(
            general=types.GeneralClientCapabilities(
                position_encodings=[types.PositionEncodingKind.Utf16]
            ),
            text_document=types.TextDocumentClientCapabilities(
                document_symbol=types.DocumentSymbolClientCapabilities(
                    hierarchical_document_symbol_support=True
                ),
            ),
        ),
        root_uri=workspace.as_uri(),
        workspace_folders=[types.WorkspaceFolder(uri=workspace.as_uri(), name="policies")],
    )
    await lsp_client.initialize_session(params)
    yield
    await lsp_client.shutdown_session()
