"""Helpers for the trust tests: a real build of a small policy tree.

The build uses every compile target that is importable (targets are written
concurrently; a missing one is skipped).  If the OPA target does not produce
`opa/bundle.tar.gz`, a small bundle in OPA's layout is added so that bundle
signing is always exercised; with no target at all the artifact set is derived
from the compiled IR.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

from mcpdsl.builder.artifacts import compile_artifacts, manifest, write_atomically
from mcpdsl.compile import TARGETS, Artifact, load_target
from mcpdsl.compile.serialize import dump_json
from mcpdsl.pipeline import compile_tree
from mcpdsl.trust.common import utcnow

FIXTURE = Path(__file__).parent / "fixtures" / "shop"
NOW = utcnow()


def available_targets() -> tuple[str, ...]:
    names = []
    for name in TARGETS:
        try:
            load_target(name)
        except ImportError:
            continue
        names.append(name)
    return tuple(names)


def tarball(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(files):
            info = tarfile.TarInfo(path)
            info.size = len(files[path])
            tar.addfile(info, io.BytesIO(files[path]))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def make_build(out: Path) -> list[str]:
    """Build the fixture tree into `out`; returns the artifact paths (manifest excluded)."""
    compilation = compile_tree(FIXTURE)
    assert compilation.project is not None, "the trust fixture tree must check cleanly"
    artifacts = [
        a
        for a in compile_artifacts(compilation, available_targets()).artifacts
        if a.path != "manifest.json"
    ]
    paths = {a.path for a in artifacts}
    if "opa/bundle.tar.gz" not in paths:
        data = dump_json(compilation.project.model_dump(mode="json"))
        rego = b"package shop.edge\n\ndefault allow := false\n"
        extra = {
            "ir/project.json": data,
            "opa/shop/edge.rego": rego,
            "opa/bundle.tar.gz": tarball(
                {".manifest": b'{"roots": ["shop"]}\n', "data.json": data, "shop/edge.rego": rego}
            ),
        }
        artifacts += [Artifact(p, c) for p, c in extra.items() if p not in paths]
    artifacts.sort(key=lambda a: a.path)
    write_atomically(out, [*artifacts, manifest(artifacts)])
    return [a.path for a in artifacts]
