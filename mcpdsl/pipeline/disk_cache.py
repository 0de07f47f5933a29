"""The per-file front-end results, kept between runs in the user's cache directory.

`mcpdsl check` on an unchanged tree used to parse and lower every file again:
importing lark, loading the parser tables, compiling the lexer's regular
expressions and building the pydantic validators the lowering uses took most of
its start-up (docs/performance.md).  The per-file stages (`parse`, `lower`)
depend on nothing but the file's bytes, its display path and the code that runs
them, so their result is stored per file and reused while all of those are
unchanged.  The cross-file stages (`resolve`, `typecheck`, `analyze`) run every
time, as in `FrontEndCache`, which this is the on-disk counterpart of.

Staleness: an entry is found by the SHA-256 of

* the toolchain: the source of every mcpdsl module the per-file stages can run
  (the layers up to `ir`, which `tests/test_layers.py` forbids to import anything
  higher, plus `pipeline`), the grammar, the Python version and the lark and
  pydantic releases (`lark/__init__.py` and `pydantic/version.py` as bytes);
* the file's display path (spans carry it) and its bytes.

Any change to one of them is another key, so a stale result cannot be found.

Trust: the directory and file checks of `mcpdsl.cachedir` (private directory,
owner-only regular file, SHA-256 of the payload verified before decoding).  The
payload is a pickle of the IR; it is unpickled with every global refused except
the IR's own data classes (`ALLOWED`), so a file that asks for any other
callable is rejected and the file is parsed again.

The store is bounded: when it holds more than `MAX_ENTRIES` files, the oldest
are deleted.

The z3 analyses' result (the `analyze` stage's diagnostics for the whole tree) is
kept in the same directory, by the same rules, as one `an-*.pickle` entry per
analysed tree (`run_analyze`).  Its key is the SHA-256 of everything the
analyses' output depends on (`analysis_key`):

* the code: the front end's toolchain (above) and the source of every layer the
  analyses can import (`ANALYSIS_CODE`: evaluator, optimiser coefficients,
  formatter, the analyses themselves), and the z3 build (its `RECORD` of file
  hashes, version header and library size and time);
* the project, spans included (`ir_digest`: a canonical walk of every field,
  `root` and the fields left out of the IR JSON too), and every source file's
  path and text (labels are narrowed to clauses by reading the text);
* the files outside the IR the analyses read (`mcpdsl.analysis.inputs`: carbon
  forecasts, tz database entries), as bytes;
* the options (`MCPDSL_ANALYSIS_TIMEOUT_MS`, the resource limit).

Nothing else is read: the clock never reaches a result (a witness that reads
`now` carries its own, and the reference year of `scaling` is fixed; tested).
Only definitive results are stored (`Analysis.definitive`: no solver check gave
up, every witness confirmed), and the inputs are read again after the run and
must be unchanged, so a file edited while the solver ran is not stored under
its old bytes.  The granularity is the whole tree: the analyses compare rules
across policies and packages (shadowing, routes, carbon blocks over every
job), so a per-file key would need their dependency graph to be sound.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from mcpdsl.cachedir import (
    cache_root,
    open_private_dir,
    prune_oldest,
    read_verified,
    write_atomic,
)
from mcpdsl.diagnostics import Diagnostic
from mcpdsl.ir import model as m
from mcpdsl.pipeline import STAGES, Compilation
from mcpdsl.pipeline.cache import PER_FILE_STAGES
from mcpdsl.resources import read_text
from mcpdsl.source import SourceFile, Span

FORMAT = b"mcpdsl-frontend-cache 1"
PREFIX = "fe-"
SUFFIX = ".pickle"
MAX_ENTRIES = 512
ANALYSIS_FORMAT = b"mcpdsl-analysis-cache 1"
ANALYSIS_PREFIX = "an-"

#: The mcpdsl packages and modules whose code the per-file stages can run: every
#: layer up to `ir` (they may import only lower layers) and the stages themselves.
FRONT_END = (
    "_version",
    "_gc",
    "cachedir",
    "resources",
    "source",
    "diagnostics",
    "outdir",
    "reader",
    "syntax",
    "ir",
    "pipeline",
)

#: What the analyses can run besides the front end: the layers between `ir` and
#: `analysis` (`tests/test_layers.py` keeps `analysis` from importing higher ones).
ANALYSIS_CODE = ("evaluate", "optimize", "fmt", "analysis")

#: The only globals a stored entry may name: data classes whose construction runs no
#: code beyond building the value.
ALLOWED: dict[str, frozenset[str]] = {
    "mcpdsl.ir.model": frozenset(
        name
        for name, value in vars(m).items()
        if isinstance(value, type) and issubclass(value, m.Node)
    ),
    "mcpdsl.source": frozenset({"Span"}),
    "mcpdsl.diagnostics.model": frozenset(
        {"Diagnostic", "Label", "Enforcement", "Severity", "Status"}
    ),
    "decimal": frozenset({"Decimal"}),
}


@dataclass(frozen=True)
class Entry:
    """One file's results after the per-file stages."""

    sources: tuple[tuple[str, str], ...]  # (path, text) of each SourceFile
    diagnostics: tuple[Diagnostic, ...]
    units: tuple[m.FileUnit, ...]


@cache
def toolchain() -> str:
    """A hash of everything the per-file stages depend on besides the file itself."""
    digest = hashlib.sha256(FORMAT)
    package = Path(__file__).resolve().parent.parent
    for name in FRONT_END:
        for file in _sources(package / name):
            digest.update(b"\x00" + file.relative_to(package).as_posix().encode() + b"\x00")
            digest.update(file.read_bytes())
    digest.update(b"\x00grammar\x00" + read_text("grammar", "mcp.lark").encode())
    digest.update(b"\x00python\x00" + sys.version.encode())
    for library, version_file in (("lark", "__init__.py"), ("pydantic", "version.py")):
        spec = find_spec(library)
        origin = spec.origin if spec is not None else None
        digest.update(f"\x00{library}\x00".encode())
        if origin is not None:
            digest.update((Path(origin).parent / version_file).read_bytes())
    return digest.hexdigest()


@cache
def analysis_toolchain() -> str:
    """A hash of the code the analyses run: the front end's, their layers' and z3's."""
    digest = hashlib.sha256(ANALYSIS_FORMAT + b"\x00" + toolchain().encode())
    package = Path(__file__).resolve().parent.parent
    for name in ANALYSIS_CODE:
        for file in _sources(package / name):
            digest.update(b"\x00" + file.relative_to(package).as_posix().encode() + b"\x00")
            digest.update(file.read_bytes())
    digest.update(b"\x00z3\x00" + _z3_identity())
    return digest.hexdigest()


def _z3_identity() -> bytes:
    """What identifies the installed z3 without importing it (importing costs 0.1 s).

    The wheel's `RECORD` lists the SHA-256 of every file it installed, the
    native library included; the version header and the library's size and
    modification time are added for installations without one.
    """
    spec = find_spec("z3")
    if spec is None or spec.origin is None:
        return b"absent"
    home = Path(spec.origin).parent
    parts = [str(home).encode()]
    for record in sorted(home.parent.glob("z3_solver-*.dist-info/RECORD")):
        with suppress(OSError):
            parts.append(record.read_bytes())
    for file in (home / "include" / "z3_version.h", home / "z3core.py"):
        with suppress(OSError):
            parts.append(file.read_bytes())
    for lib in sorted((home / "lib").glob("libz3*")):
        with suppress(OSError):
            st = lib.stat()
            parts.append(f"{lib.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return b"\x00".join(parts)


def _sources(path: Path) -> list[Path]:
    """The `.py` files of a package directory (recursively) or of one module, sorted."""
    if path.is_dir():
        return sorted(path.rglob("*.py"))
    module = path.with_suffix(".py")
    return [module] if module.is_file() else []


def entry_name(display: str, data: bytes) -> str:
    """The file name of one file's entry: toolchain, display path and bytes, hashed."""
    digest = hashlib.sha256(toolchain().encode())
    digest.update(b"\x00" + display.encode("utf-8", "surrogateescape") + b"\x00")
    digest.update(data)
    return f"{PREFIX}{digest.hexdigest()[:40]}{SUFFIX}"


class _IROnly(pickle.Unpickler):
    """An unpickler that builds IR data classes and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if name in ALLOWED.get(module, ()):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing `{module}.{name}` in a front-end cache")


def encode(entry: Entry) -> bytes:
    return pickle.dumps(entry_data(entry), protocol=pickle.HIGHEST_PROTOCOL)


def entry_data(entry: Entry) -> tuple[object, ...]:
    """The entry as a tuple: the `Entry` class itself is not among the allowed globals."""
    return (entry.sources, entry.diagnostics, entry.units)


def decode(payload: bytes) -> Entry | None:
    """An entry from a verified payload, or None when it is not one."""
    try:
        data = _IROnly(io.BytesIO(payload)).load()
    except Exception:  # any malformed or refused pickle: compute the file again
        return None
    if not (isinstance(data, tuple) and len(data) == 3):
        return None
    sources, diagnostics, units = data
    if not (
        isinstance(sources, tuple)
        and all(
            isinstance(s, tuple) and len(s) == 2 and all(isinstance(x, str) for x in s)
            for s in sources
        )
        and isinstance(diagnostics, tuple)
        and all(isinstance(d, Diagnostic) for d in diagnostics)
        and isinstance(units, tuple)
        and all(isinstance(u, m.FileUnit) for u in units)
    ):
        return None
    return Entry(sources, diagnostics, units)


class Store:
    """The entries in an open private cache directory (`open_store()`)."""

    def __init__(self, directory: int) -> None:
        self.directory = directory
        self.written = 0

    def get(self, name: str) -> Entry | None:
        payload = read_verified(self.directory, name, FORMAT)
        return None if payload is None else decode(payload)

    def put(self, name: str, entry: Entry) -> None:
        try:
            payload = encode(entry)
        except Exception:  # an unpicklable value in the IR: simply not stored
            return
        write_atomic(self.directory, name, payload, FORMAT)
        self.written += 1

    def get_analysis(self, name: str) -> tuple[Diagnostic, ...] | None:
        payload = read_verified(self.directory, name, ANALYSIS_FORMAT)
        return None if payload is None else decode_analysis(payload, name)

    def put_analysis(self, name: str, diagnostics: tuple[Diagnostic, ...]) -> None:
        try:
            payload = encode_analysis(name, diagnostics)
        except Exception:  # an unpicklable value in a diagnostic: simply not stored
            return
        write_atomic(self.directory, name, payload, ANALYSIS_FORMAT)
        self.written += 1

    def prune(self, keep: int = MAX_ENTRIES) -> None:
        """Delete the oldest entries beyond `keep` (by modification time)."""
        prune_oldest(self.directory, _is_entry, keep)


def _is_entry(name: str) -> bool:
    return name.startswith((PREFIX, ANALYSIS_PREFIX)) and name.endswith(SUFFIX)


@contextmanager
def open_store() -> Iterator[Store | None]:
    """The store in the user's cache directory, or None when it is not private/usable."""
    directory = open_private_dir(cache_root())
    if directory is None:
        yield None
        return
    store = Store(directory)
    try:
        yield store
        if store.written:
            store.prune()
    finally:
        os.close(directory)


def sources_of(entry: Entry) -> list[SourceFile]:
    return [SourceFile(path, text) for path, text in entry.sources]


def run_per_file(c: Compilation) -> None:
    """The per-file stages on `c.raw`, each file's result taken from the store if there.

    What `parse` then `lower` would add to `c` (sources, diagnostics, units), file
    by file in the same order; `c.parsed` stays empty (no syntax tree is stored).
    """
    with open_store() as store:
        for display, data in c.raw.items():
            name = entry_name(display, data)
            entry = store.get(name) if store is not None else None
            if entry is not None and not _is_for(entry, display):
                entry = None
            if entry is None:
                entry = _compute(c, display, data)
                if store is not None:
                    store.put(name, entry)
            for source in sources_of(entry):
                c.sources.add(source)
            c.diagnostics.extend(entry.diagnostics)
            c.units.extend(entry.units)


def _is_for(entry: Entry, display: str) -> bool:
    """Whether an entry describes the file `display` (an entry names its file twice)."""
    return all(path == display for path, _ in entry.sources) and all(
        unit.path == display for unit in entry.units
    )


def _compute(c: Compilation, display: str, data: bytes) -> Entry:
    unit = Compilation(root=c.root, raw={display: data})
    for _name, stage in STAGES[: len(PER_FILE_STAGES)]:
        stage(unit)
    return Entry(
        tuple((s.path, s.text) for s in unit.sources),
        tuple(unit.diagnostics),
        tuple(unit.units),
    )


# ------------------------------------------------------------------ the analyses


def ir_digest(value: object) -> str:
    """A SHA-256 of a project (or any IR value), spans and every field included.

    `==` and `hash` on IR nodes ignore spans and Python's `hash` of a string
    changes from process to process, so neither can key a cache whose
    diagnostics point at lines.  This walks the value canonically: a node is its
    class and its fields by name (those left out of the IR JSON too), a dict its
    items by key; every scalar is written with its type.  A value of any other
    type raises TypeError (the caller then does not cache).
    """
    out: list[str] = []
    _walk(value, out)
    return hashlib.sha256("\x1f".join(out).encode("utf-8", "surrogatepass")).hexdigest()


def _walk(value: object, out: list[str]) -> None:
    kind = type(value)
    if kind is str:
        out.append(repr(value))
    elif value is None or kind is bool:
        out.append(f"={value}")
    elif kind is int:
        out.append(f"i{value}")
    elif kind is Decimal:
        out.append(f"d{value}")  # "0.200" and "0.2" apart: an exact spelling
    elif kind is float:
        out.append(f"f{value!r}")
    elif isinstance(value, m.Node):
        out.append(f"<{kind.__module__}.{kind.__qualname__}")
        for key in sorted(value.__dict__):
            out.append(key)
            _walk(value.__dict__[key], out)
        out.append(">")
    elif kind is Span:
        assert isinstance(value, Span)
        out.append(
            f"@{value.file!r}:{value.line}:{value.column}:{value.end_line}:{value.end_column}"
        )
    elif kind is tuple or kind is list:
        assert isinstance(value, (tuple, list))
        out.append("(" if kind is tuple else "[")
        for item in value:
            _walk(item, out)
        out.append(")")
    elif kind is dict:
        assert isinstance(value, dict)
        out.append("{")
        for key in sorted(value, key=repr):
            _walk(key, out)
            _walk(value[key], out)
        out.append("}")
    else:
        raise TypeError(f"no canonical form for {kind.__name__} in the IR")


def analysis_key(
    c: Compilation,
    options: object,
    found: tuple[tuple[str, bytes | None], ...] | None = None,
) -> str | None:
    """The name of the analyses' entry for `c`, or None when it cannot be keyed.

    `options` is the `mcpdsl.analysis.Options` the run uses; its repr (a
    dataclass: every field) goes into the key.  `found`: the analyses' input
    files (`mcpdsl.analysis.inputs`), read here when not given.
    """
    from mcpdsl.analysis import inputs

    if c.project is None:
        return None
    if found is None:
        found = inputs(c.project)
    if found is None:
        return None
    try:
        project = ir_digest(c.project)
    except (TypeError, RecursionError):
        return None
    digest = hashlib.sha256(analysis_toolchain().encode())
    digest.update(b"\x00options\x00" + repr(options).encode())
    digest.update(b"\x00project\x00" + project.encode())
    for source in c.sources:
        digest.update(b"\x00source\x00" + source.path.encode("utf-8", "surrogateescape"))
        digest.update(
            b"\x00" + hashlib.sha256(source.text.encode("utf-8", "surrogatepass")).digest()
        )
    for name, data in found:
        digest.update(b"\x00input\x00" + name.encode("utf-8", "surrogateescape") + b"\x00")
        digest.update(b"-" if data is None else b"+" + hashlib.sha256(data).digest())
    return f"{ANALYSIS_PREFIX}{digest.hexdigest()[:40]}{SUFFIX}"


def encode_analysis(key: str, diagnostics: tuple[Diagnostic, ...]) -> bytes:
    return pickle.dumps((key, diagnostics), protocol=pickle.HIGHEST_PROTOCOL)


def decode_analysis(payload: bytes, key: str) -> tuple[Diagnostic, ...] | None:
    """The diagnostics of a verified payload stored under `key`, or None."""
    try:
        data = _IROnly(io.BytesIO(payload)).load()
    except Exception:  # any malformed or refused pickle: analyse again
        return None
    if not (isinstance(data, tuple) and len(data) == 2 and data[0] == key):
        return None
    diagnostics = data[1]
    if not (isinstance(diagnostics, tuple) and all(_well_formed(d) for d in diagnostics)):
        return None
    return diagnostics


def _well_formed(d: object) -> bool:
    """Whether an unpickled value is a diagnostic every renderer can print.

    Unpickling sets a model's fields without validating them, so each field's
    type is checked here (cheaper than building pydantic's validator).
    """
    from mcpdsl.diagnostics.model import Enforcement, Label, Severity, Status

    if not isinstance(d, Diagnostic) or set(d.__dict__) != set(Diagnostic.model_fields):
        return False
    enforcement = d.enforcement
    return (
        isinstance(d.code, str)
        and isinstance(d.severity, Severity)
        and isinstance(d.message, str)
        and (d.span is None or _is_span(d.span))
        and isinstance(d.label, str)
        and isinstance(d.secondary, tuple)
        and all(
            isinstance(x, Label)
            and set(x.__dict__) == set(Label.model_fields)
            and _is_span(x.span)
            and isinstance(x.message, str)
            for x in d.secondary
        )
        and (d.help is None or isinstance(d.help, str))
        and isinstance(d.notes, tuple)
        and all(isinstance(n, str) for n in d.notes)
        and (
            enforcement is None
            or (
                isinstance(enforcement, Enforcement)
                and set(enforcement.__dict__) == set(Enforcement.model_fields)
                and all(
                    isinstance(v, str)
                    for v in (enforcement.rule, enforcement.target, enforcement.where)
                )
                and isinstance(enforcement.status, Status)
            )
        )
    )


def _is_span(span: object) -> bool:
    return (
        type(span) is Span
        and isinstance(span.file, str)
        and all(
            type(v) is int and v >= 0
            for v in (span.line, span.column, span.end_line, span.end_column)
        )
    )


def run_analyze(c: Compilation) -> None:
    """The `analyze` stage, its result taken from the store when it is there.

    Adds to `c.diagnostics` exactly what `mcpdsl.pipeline.analyze` would.  A
    result is stored only when it is definitive and its inputs did not change
    while it was computed; any doubt about an entry means "analyse again".
    """
    from mcpdsl.analysis import inputs, options_from_env

    if not c.analyze or c.project is None or c.has_errors:
        return
    options = options_from_env()
    found = inputs(c.project)
    key = analysis_key(c, options, found) if found is not None else None
    with open_store() as store:
        if store is not None and key is not None:
            stored = store.get_analysis(key)
            if stored is not None:
                c.diagnostics.extend(stored)
                return
        from mcpdsl.analysis import analyze

        result = analyze(c.project, c.sources, options)
        c.diagnostics.extend(result.diagnostics)
        if (
            store is not None
            and key is not None
            and result.definitive
            and inputs(c.project) == found  # no data file changed while solving
        ):
            store.put_analysis(key, tuple(result.diagnostics))
