"""Locate the grammar and target templates, installed or in a checkout.

`grammar/` and `targets/` live at the top of the repository and are shipped
inside the wheel as `mcpdsl/_data/...` (hatchling force-include).  In a wheel
they are package resources; in an editable checkout they are found beside the
package.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path


@cache
def data_dir(name: str) -> Traversable:
    """The `grammar` or `targets` directory, as a traversable resource."""
    packaged = resources.files("mcpdsl") / "_data" / name
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"mcpdsl data directory `{name}` is missing from the installation")


def read_text(directory: str, *parts: str) -> str:
    node = data_dir(directory)
    for part in parts:
        node = node / part
    return node.read_text(encoding="utf-8")
