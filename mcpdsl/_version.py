"""The version of mcpdsl, in a module of its own.

Why not in `mcpdsl/__init__.py`: the facade imports (lazily) the pipeline, the
engine and the builder, so a stage that read the version from the facade
(`builder` writes it into every manifest, the CLI prints it) would close an
import cycle through the facade.  Everything reads it from here; the facade
re-exports it as `mcpdsl.__version__`.
"""

from __future__ import annotations

__version__ = "0.1.0"
