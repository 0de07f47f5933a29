"""Locate the grammar and target templates, installed or in a checkout.

`grammar/` and `targets/` live at the top of the repository and are shipped
inside the wheel as `mcpdsl/_data/...` (hatchling force-include).  In a wheel
they are package resources; in an editable checkout they are found beside the
package.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


@cache
def data_dir(name: str) -> Traversable:
    """The `grammar` or `targets` directory, as a traversable resource.

    An installed package on disk and a checkout are plain directories, looked up
    without `importlib.resources` (its import, with `tempfile` and `shutil`, was a
    noticeable part of a warm `mcpdsl check`); only a package that is not
    (a zip) is asked through it.
    """
    package = Path(__file__).resolve().parent
    for directory in (package / "_data" / name, package.parent / name):
        if directory.is_dir():
            return directory
    from importlib import resources

    packaged = resources.files("mcpdsl") / "_data" / name
    if packaged.is_dir():
        return packaged
    raise FileNotFoundError(f"mcpdsl data directory `{name}` is missing from the installation")


def read_text(directory: str, *parts: str) -> str:
    node = data_dir(directory)
    for part in parts:
        node = node / part
    return node.read_text(encoding="utf-8")
