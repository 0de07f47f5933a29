"""A deterministic OPA bundle: a gzipped tarball with a `.manifest`.

The same files always give the same bytes: entries sorted by path, mtime 0,
uid/gid 0 with empty owner names, mode 0644, PAX format, and a gzip header
with mtime 0 and no file name.  The manifest's `revision` is the content hash
`bundle_revision` of the other files, so a changed policy changes it and an
unchanged one never does.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping

MANIFEST = ".manifest"


def bundle_revision(files: Mapping[str, bytes]) -> str:
    """sha256 over `"<sha256 of content>  <path>\\n"` lines of every file, sorted by path.

    (The format of `sha256sum`; `.manifest` itself is never part of it.)
    """
    lines = "".join(
        f"{hashlib.sha256(files[path]).hexdigest()}  {path}\n"
        for path in sorted(files)
        if path != MANIFEST
    )
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def manifest(files: Mapping[str, bytes], roots: list[str]) -> bytes:
    doc = {"revision": bundle_revision(files), "roots": sorted(roots), "rego_version": 1}
    return (json.dumps(doc, sort_keys=True, indent=2) + "\n").encode("utf-8")


def bundle_tarball(files: Mapping[str, bytes], roots: list[str]) -> bytes:
    """The .tar.gz bytes of `files` (paths relative to the bundle root) plus a manifest."""
    entries = dict(files)
    entries[MANIFEST] = manifest(files, roots)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries):
            content = entries[path]
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(content))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()
