"""The TextMate grammar (editors/vscode/syntaxes) against the compiler's own lexer.

Every `.mcp` file of `policies/` and `examples/` is tokenized by the real
engine VS Code uses (`vscode-textmate` + `vscode-oniguruma`, pinned in
`editors/textmate-test/package-lock.json`) and compared with the tokens lark
reads from the same text: comments, strings, numbers, numbers with units and
keywords must carry their scopes.

Needs `node` and `npm`; the packages are installed with `npm ci` into a cache
directory outside the checkout.  Without node/npm the test is skipped with the
reason, unless `MCPDSL_REQUIRE_SYSTEM_TESTS=1` (CI), where it fails instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from lark import Token

from mcpdsl.syntax.parser import keyword_terminals, parser

REPO = Path(__file__).resolve().parent.parent.parent
TOOLING = REPO / "editors" / "textmate-test"
GRAMMAR = REPO / "editors" / "vscode" / "syntaxes" / "mcp.tmLanguage.json"
FILES = sorted((REPO / "policies").rglob("*.mcp")) + sorted((REPO / "examples").rglob("*.mcp"))


def _missing(reason: str) -> None:
    if os.environ.get("MCPDSL_REQUIRE_SYSTEM_TESTS") == "1":
        pytest.fail(f"{reason} (MCPDSL_REQUIRE_SYSTEM_TESTS=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """`npm ci` of the pinned tooling, once per lockfile, in the user's cache directory."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _missing("node and npm are needed to run the TextMate engine")
    lock = (TOOLING / "package-lock.json").read_bytes()
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = cache_root / "mcpdsl" / f"textmate-test-{hashlib.sha256(lock).hexdigest()[:16]}"
    modules = cache / "node_modules"
    if not (modules / "vscode-textmate").is_dir() or not (modules / "vscode-oniguruma").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(TOOLING / name, cache / name)
        done = subprocess.run(
            [str(npm), "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=cache,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            _missing(f"`npm ci` failed (is the npm registry reachable?): {done.stderr[-500:]}")
    return modules


@pytest.fixture(scope="module")
def tokenized(node_modules: Path) -> dict[str, list[tuple[int, int, str, list[str]]]]:
    done = subprocess.run(
        ["node", str(TOOLING / "tokenize.js"), str(GRAMMAR), *map(str, FILES)],
        env={**os.environ, "NODE_PATH": str(node_modules)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _scopes_at(tokens: list[tuple[int, int, str, list[str]]], line: int, column: int) -> list[str]:
    """The scopes of the TextMate token covering a 1-based line and 0-based column."""
    for t_line, start, text, scopes in tokens:
        if t_line == line and start <= column < start + max(1, len(text)):
            return scopes
    return []


def _tokens(text: str) -> list[Token]:
    """The tokens the compiler reads, comments included, in order.

    Keywords and names come from a real parse (the contextual lexer reads
    `pool gpu {` as a name, a plain lexer as the keyword `gpu`); comments, which
    the parse drops, come from the plain lexer.
    """
    tree = parser().parse(text, start="start")
    tokens = [t for t in tree.scan_values(lambda v: isinstance(v, Token))]
    comments = [t for t in parser().lex(text, dont_ignore=True) if t.type == "COMMENT"]
    return sorted(tokens + comments, key=lambda t: (t.line or 0, t.column or 0))


def test_the_corpus_is_not_empty() -> None:
    assert len(FILES) >= 10


def test_every_lark_token_gets_its_scope(tokenized) -> None:  # type: ignore[no-untyped-def]
    keywords = set(keyword_terminals())
    checked = {"COMMENT": 0, "STRING": 0, "QUANTITY": 0, "NUMBER": 0, "keyword": 0}
    problems: list[str] = []
    for file in FILES:
        tokens = tokenized[str(file)]
        lark_tokens = _tokens(file.read_text())
        for i, tok in enumerate(lark_tokens):
            line, column = tok.line or 1, (tok.column or 1) - 1
            scopes = _scopes_at(tokens, line, column)
            where = f"{file.relative_to(REPO)}:{line}:{column + 1} `{tok}`"
            if tok.type == "COMMENT":
                ok = any(s.startswith("comment.line") for s in scopes)
                kind = "COMMENT"
            elif tok.type == "STRING":
                ok = any(s.startswith("string.quoted.double") for s in scopes)
                kind = "STRING"
            elif tok.type in ("NUMBER", "TIME"):
                ok = any(s.startswith("constant.numeric") for s in scopes)
                kind = "NUMBER"
            elif tok.type == "QUANTITY":
                digits = len(str(tok)) - len(str(tok).lstrip("$0123456789."))
                unit_scopes = _scopes_at(tokens, line, column + digits)
                ok = any(s.startswith("constant.numeric") for s in scopes) and any(
                    s.startswith("keyword.other.unit") for s in unit_scopes
                )
                kind = "QUANTITY"
            elif tok.type in keywords:
                before = lark_tokens[i - 1].type if i else ""
                after = lark_tokens[i + 1].type if i + 1 < len(lark_tokens) else ""
                if "DOT" in (before, after):  # an attribute root or a key in a path
                    continue
                ok = any(
                    s.startswith(("keyword.", "constant.language", "variable.language"))
                    for s in scopes
                )
                kind = "keyword"
            else:
                continue
            checked[kind] += 1
            if not ok:
                problems.append(f"{where}: {tok.type} has scopes {scopes}")
    assert not problems, "\n".join(problems[:30])
    assert all(count > 0 for count in checked.values()), checked


def test_declared_names_and_labels_are_highlighted(tokenized) -> None:  # type: ignore[no-untyped-def]
    access = REPO / "policies" / "access.mcp"
    tokens = tokenized[str(access)]
    text = access.read_text().split("\n")
    line = next(n for n, t in enumerate(text, 1) if t.startswith("policy zero-trust"))
    assert "entity.name.type.mcp" in _scopes_at(tokens, line, len("policy "))
    line = next(n for n, t in enumerate(text, 1) if t.strip().startswith("edge-api:"))
    assert "entity.name.tag.label.mcp" in _scopes_at(tokens, line, 2)


def test_the_grammar_knows_every_keyword_of_the_language() -> None:
    """A keyword added to grammar/mcp.lark must be added to the TextMate grammar too."""
    grammar = GRAMMAR.read_text()
    missing = [
        k
        for k in keyword_terminals().values()
        if f"|{k}|" not in grammar.replace("(", "|").replace(")", "|")
    ]
    assert not missing, missing
