"""Golden formatting cases: tests/fmt/cases/*.fmt hold an input and its expected output.

Rewrite the expected sections with `pytest tests/fmt --update-goldens` (then
review the diff).  Every case is also checked for idempotence and for an
unchanged IR.
"""

from __future__ import annotations

import pytest
from fmt_support import CASES, Case, unit_of

from mcpdsl.fmt import SyntaxErrors, format_source

CASE_FILES = sorted(CASES.glob("*.fmt"))


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_golden(path, update_goldens: bool) -> None:
    case = Case.load(path)
    output = format_source(case.input, path.name)
    if update_goldens or case.expected is None:
        if not update_goldens:
            pytest.fail(f"{path.name} has no expected section; run with --update-goldens")
        case.save(output)
    else:
        assert output == case.expected
    assert format_source(output, path.name) == output
    assert unit_of(output) == unit_of(case.input)


def test_every_declaration_kind_has_a_case() -> None:
    text = "".join(p.read_text(encoding="utf-8") for p in CASE_FILES)
    for keyword in (
        "import", "service", "scale", "pool", "balance", "carbon", "job",
        "policy", "integration", "gateway", "test", "provider", "mesh", "server",
    ):  # fmt: skip
        assert f"\n{keyword} " in text, keyword


def test_crlf_and_bom_input() -> None:
    text = '\ufeffpackage crlf\r\n\r\nservice a {\r\n  image "a:1"  # c\r\n  port 80\r\n}\r\n'
    assert format_source(text) == 'package crlf\n\nservice a {\n  image "a:1"  # c\n  port  80\n}\n'


def test_strings_and_numbers_are_kept_as_written() -> None:
    text = (
        'package p\nintegration i {\n  description "a\\"b\\u00E9\\/\\t"\n'
        '  call GET "https://x.example/{id}"\n  timeout 2.50s\n}\n'
    )
    output = format_source(text)
    assert '"a\\"b\\u00E9\\/\\t"' in output
    assert "2.50s" in output


def test_syntax_error_is_reported_not_formatted() -> None:
    with pytest.raises(SyntaxErrors) as info:
        format_source('package p\nservice a {\n  image "x"\n', "broken.mcp")
    assert info.value.diagnostics
    assert all(d.span is None or d.span.file == "broken.mcp" for d in info.value.diagnostics)


def test_empty_file_is_a_syntax_error() -> None:
    with pytest.raises(SyntaxErrors):
        format_source("")


def test_comment_only_file_after_package() -> None:
    text = "package p\n# only a comment\n"
    assert format_source(text) == "package p\n\n# only a comment\n"


def test_docstring_examples() -> None:
    import doctest

    import mcpdsl.fmt

    assert doctest.testmod(mcpdsl.fmt).failed == 0


def test_docs_examples_are_formatted() -> None:
    """The declarations shown in docs/fmt.md are the formatter's own output."""
    docs = CASES.parents[2] / "docs" / "fmt.md"
    blocks: list[str] = []
    current: list[str] | None = None
    for line in docs.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    examples = [b for b in blocks if b.split()[:1] in (["service"], ["pool"], ["policy"])]
    assert len(examples) >= 2
    for block in examples:
        source = "package docs\n\n" + block
        assert format_source(source) == source
