"""Syntax: the cached lark parser, error recovery and syntax-error mapping."""

from mcpdsl.syntax.parser import ParsedFile, parse_source

__all__ = ["ParsedFile", "parse_source"]
