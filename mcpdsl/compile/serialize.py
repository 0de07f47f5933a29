"""Deterministic serialisation of structured artifacts.

Structured outputs (YAML, JSON) are built as plain dicts and serialised here
with sorted keys, so that two builds of the same input are byte-identical and
user strings can never break out of their value (the serialiser escapes them).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import yaml


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# LibYAML's emitter when PyYAML was built with it (the wheels are): the pure
# Python emitter is most of the cost of a large Kubernetes build.
_BaseDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[misc,valid-type]
    """Safe YAML with block style and multi-line strings kept readable."""


# Scalars that some YAML reader (YAML 1.1 as in PyYAML and go-yaml v2, or the
# YAML 1.2 core schema) would read as something other than a string.  Such
# strings are always double-quoted so that kubectl reads back exactly the text.
_NOT_A_STRING = re.compile(
    r"""^(?:
        [-+]?(?:[0-9][0-9_]*)?\.?[0-9_]*(?:[eE][-+]?[0-9]+)?   # ints, floats, 1e3, +1e5
      | [-+]?0[xX][0-9a-fA-F_]+ | [-+]?0[oO]?[0-7_]+ | [-+]?0[bB][01_]+
      | [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)
      | [0-9]+(?::[0-5]?[0-9])+(?:\.[0-9_]*)?               # sexagesimal (YAML 1.1)
      | ~ | null | Null | NULL
      | [yY] | yes | Yes | YES | [nN] | no | No | NO
      | true | True | TRUE | false | False | FALSE | on | On | ON | off | Off | OFF
      | <<
    )$""",
    re.VERBOSE,
)


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    if data and _NOT_A_STRING.match(data):
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"')
    style = "|" if "\n" in data and data.isprintable() is False and "\r" not in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(doc: dict[str, Any] | list[dict[str, Any]]) -> bytes:
    """One YAML document (or a `---`-separated stream for a list)."""
    docs = doc if isinstance(doc, list) else [doc]
    text = yaml.dump_all(
        [_plain(d) for d in docs],
        Dumper=_Dumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
        explicit_start=len(docs) > 1,
    )
    return text.encode("utf-8")


def dump_json(doc: Any) -> bytes:
    return (json.dumps(_plain(doc), sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode(
        "utf-8"
    )


def decimal_str(value: Decimal) -> str:
    """A Decimal without exponent or trailing zeros (`0.50` -> `0.5`, `1E+1` -> `10`)."""
    text = format(value.normalize(), "f")
    return text
