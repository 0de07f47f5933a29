"""The output-directory policy (`mcpdsl.outdir`) shared by build, watch and report.

Every hostile `--out` is refused with a coded diagnostic at the path and exit 2,
and leaves every file as it was; allowed ones are replaced atomically with
normal permissions; leftovers of an interrupted swap are restored or removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from repo_paths import REPO

from mcpdsl.builder import compile_artifacts, write_atomically
from mcpdsl.cli import main
from mcpdsl.compile import Artifact
from mcpdsl.outdir import BUILD_FORMAT, OutputError, marker, prepare
from mcpdsl.pipeline import compile_tree

TREE = REPO / "examples" / "zero-trust"


def snapshot(root: Path) -> dict[str, tuple[str, bytes]]:
    """Every entry under `root` (symlinks not followed): its type and content or target."""
    found: dict[str, tuple[str, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                found[rel] = ("link", os.readlink(path).encode())
            elif stat.S_ISREG(mode):
                found[rel] = ("file", path.read_bytes())
            elif stat.S_ISDIR(mode):
                found[rel] = ("dir", b"")
            else:
                found[rel] = ("special", b"")
    return found


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cwd `work/`, sources in `work/proj/src` (with a package subdirectory), hostile paths."""
    work = tmp_path / "work"
    src = work / "proj" / "src"
    shutil.copytree(TREE, src)
    (src / "pkg").mkdir()
    shutil.copy(sorted(src.glob("*.mcp"))[0], src / "pkg" / "extra.mcp.txt")
    (work / "file.txt").write_text("keep me\n")
    os.mkfifo(work / "fifo")
    (work / "foreign").mkdir()
    (work / "foreign" / "notes.txt").write_text("mine\n")
    (work / "empty").mkdir()
    (work / "to-src").symlink_to("proj/src")
    (work / "to-pkg").symlink_to("proj/src/pkg")
    (work / "to-proj").symlink_to("proj")
    (work / "to-file").symlink_to("file.txt")
    (work / "loop").symlink_to("loop")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (work / "to-elsewhere").symlink_to(elsewhere)
    (work / "fake-manifest").mkdir()
    (work / "fake-manifest" / "manifest.json").write_text('{"artifacts": []}')
    (work / "linked-manifest").mkdir()
    monkeypatch.chdir(work)
    return work


def build(out: str, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        ["build", "proj/src", "--out", out, "--no-analyze", "-q", *extra],
        env={"NO_COLOR": "1", "FORCE_COLOR": ""},
    )
    return result.exit_code, result.output


REFUSED = [
    (".", "E0801"),
    ("./", "E0801"),
    ("..", "E0801"),
    ("proj/src/..", "E0802"),  # a parent of the sources
    ("proj", "E0802"),
    ("to-proj", "E0802"),  # a symlink to a parent of the sources
    ("proj/src", "E0802"),
    ("proj/src/", "E0802"),
    ("proj/./src/../src", "E0802"),
    ("to-src", "E0802"),  # a symlink to the sources
    ("to-src/pkg", "E0802"),  # through a symlink, into the sources
    ("proj/src/pkg", "E0802"),  # a child of the sources
    ("to-pkg", "E0802"),
    ("file.txt", "E0803"),
    ("to-file", "E0803"),
    ("fifo", "E0803"),
    ("loop", "E0803"),
    ("proj/src/policy.mcp", "E0803"),
    ("file.txt/sub", "E0805"),  # a parent that is a file
    ("foreign", "E0804"),
    ("fake-manifest", "E0804"),  # a manifest.json without our marker
    ("linked-manifest", "E0804"),  # manifest.json is a symlink to a real build's
]


@pytest.mark.parametrize(("out", "code"), REFUSED, ids=[o for o, _ in REFUSED])
@pytest.mark.parametrize("force", [False, True], ids=["", "force"])
def test_hostile_outputs_are_refused_and_nothing_changes(
    work: Path, out: str, code: str, force: bool
) -> None:
    real_build = work.parent / "real-build"
    write_atomically(real_build, compile_artifacts(compile_tree(TREE)).artifacts)
    (work / "linked-manifest" / "manifest.json").symlink_to(real_build / "manifest.json")
    before = snapshot(work.parent)
    status, output = build(out, *(["--force"] if force else []))
    if force and code == "E0804":  # the one case --force overrides
        assert status == 0, output
        assert marker(Path(out)) == BUILD_FORMAT
        return
    assert status == 2, output
    assert f"error[{code}]: " in output
    assert f" --> {out}:1:1" in output  # positioned at the argument
    assert "Traceback" not in output
    assert snapshot(work.parent) == before


def test_dev_null_is_refused_without_touching_it() -> None:
    """Read-only: only `prepare` (no write happens on a refusal) against the real device."""
    before = os.stat("/dev/null")
    with pytest.raises(OutputError) as caught:
        prepare("/dev/null", sources=(TREE,), force=True)
    assert caught.value.diagnostic.code == "E0803"
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_a_character_device_in_tmp_is_refused(work: Path) -> None:
    try:
        os.mknod(work / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except (PermissionError, OSError):
        pytest.skip("cannot create a device node here")
    status, output = build("null", "--force")
    assert status == 2 and "error[E0803]" in output
    assert stat.S_ISCHR(os.lstat(work / "null").st_mode)


ALLOWED = ["absent", "new/deep/absent", "empty", "proj/src/../build", "to-elsewhere"]


@pytest.mark.parametrize("out", ALLOWED)
def test_allowed_outputs_are_written(work: Path, out: str) -> None:
    before = snapshot(work / "proj")
    status, output = build(out)
    assert status == 0, output
    assert marker(Path(out)) == BUILD_FORMAT
    after = snapshot(work / "proj")
    assert {k: v for k, v in after.items() if not k.startswith("build")} == before


def test_a_symlinked_output_keeps_the_link_and_replaces_its_target(work: Path) -> None:
    assert build("to-elsewhere")[0] == 0
    assert (work / "to-elsewhere").is_symlink()
    assert marker(work.parent / "elsewhere") == BUILD_FORMAT


def test_previous_builds_and_builds_inside_the_tree_are_replaced(work: Path) -> None:
    assert build("proj/src/build")[0] == 0  # absent, inside the tree: `build . --out build`
    stale = work / "proj" / "src" / "build" / "stale.txt"
    stale.write_text("from an older build\n")
    status, output = build("proj/src/build")
    assert status == 0, output
    assert not stale.exists()


def test_a_build_written_before_the_marker_is_recognised(work: Path) -> None:
    legacy = work / "legacy"
    legacy.mkdir()
    (legacy / "manifest.json").write_text(json.dumps({"artifacts": [], "generator": "mcpdsl"}))
    assert build("legacy")[0] == 0
    assert marker(legacy) == BUILD_FORMAT


def test_a_report_directory_is_not_a_build(work: Path) -> None:
    report = work / "rep"
    report.mkdir()
    (report / "manifest.json").write_text(
        json.dumps({"artifacts": [], "format": "mcpdsl-report/1", "generator": "mcpdsl"})
    )
    status, output = build("rep")
    assert status == 2 and "error[E0804]" in output


def test_an_uninspectable_output_is_e0805(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root no permission is ever missing; the scan failing is what matters."""
    import mcpdsl.outdir as outdir

    def denied(path: object) -> object:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(outdir.os, "scandir", denied)
    with pytest.raises(OutputError) as caught:
        prepare("foreign", sources=("proj/src",))
    assert caught.value.diagnostic.code == "E0805"
    assert "permission denied" in caught.value.diagnostic.message


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize(("mask", "dirs", "files"), [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_outputs_get_normal_permissions(work: Path, mask: int, dirs: int, files: int) -> None:
    """Not the 0700 of a temporary directory: what any new directory gets under the umask."""
    with umask(mask):
        assert build("out")[0] == 0
    out = work / "out"
    modes = {p: stat.S_IMODE(os.lstat(p).st_mode) for p in [out, *out.rglob("*")]}
    assert modes[out] == dirs
    assert all(m == (dirs if p.is_dir() else files) for p, m in modes.items())


# ------------------------------------------------------------------ interrupted swaps

_CRASH = """
import os, sys
from mcpdsl.builder import compile_artifacts, write_atomically
from mcpdsl.pipeline import compile_tree
artifacts = compile_artifacts(compile_tree(sys.argv[1])).artifacts
real_rename, calls = os.rename, []
def rename(a, b):
    calls.append(a)
    real_rename(a, b)
    if len(calls) == int(sys.argv[3]):
        os._exit(9)  # killed right after this rename
os.rename = rename
write_atomically(sys.argv[2], artifacts)
"""


def crash_after_rename(out: Path, n: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", _CRASH, str(TREE), str(out), str(n)], env=env, check=False
    )
    assert done.returncode == 9


def test_a_crash_between_the_renames_is_restored_by_the_next_run(work: Path) -> None:
    assert build("out")[0] == 0
    good = snapshot(work / "out")
    (work / ".out.staging-crashed").mkdir()  # a half-written staging of an older crash
    (work / ".out.staging-crashed" / "partial.yaml").write_text("kind: Depl")
    crash_after_rename(work / "out", 1)  # out -> .out.old-*, then killed
    assert not (work / "out").exists()
    assert [p.name for p in work.glob(".out.old-*")]
    # The next run restores before compiling: even a failing build leaves the user a build.
    broken = work / "broken"
    broken.mkdir()
    (broken / "x.mcp").write_text("package x\nservice {\n")
    result = CliRunner().invoke(main, ["build", "broken", "--out", "out", "-q"])
    assert result.exit_code == 1
    assert "note: restored the previous output `out` from `.out.old-" in result.output
    assert "note: removed `.out.staging-" in result.output
    assert snapshot(work / "out") == good
    assert not list(work.glob(".out.*"))


def test_a_crash_after_the_swap_leaves_an_old_directory_that_is_removed(work: Path) -> None:
    assert build("out")[0] == 0
    crash_after_rename(work / "out", 2)  # both renames done, old not yet deleted
    assert marker(work / "out") == BUILD_FORMAT
    olds = list(work.glob(".out.old-*"))
    assert olds
    status, output = build("out")
    assert status == 0, output
    assert f"note: removed `{olds[0].name}` left by an interrupted run" in output
    assert not list(work.glob(".out.*"))


def test_leftovers_that_are_not_ours_or_in_use_are_left_alone(work: Path) -> None:
    assert build("out")[0] == 0
    foreign = work / ".out.old-foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a build\n")
    busy = work / ".out.staging-busy"
    busy.mkdir()
    fd = os.open(busy, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a writer that is still running
        status, output = build("out")
        assert status == 0, output
        assert "left `.out.old-foreign` alone: it is not an mcpdsl output" in output
        assert busy.is_dir() and (foreign / "notes.txt").exists()
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- property

COMPONENTS = st.sampled_from([".", "..", "src", "pkg", "new", "file.txt", "up", "lnk", "other"])


def _sandbox(root: Path) -> Path:
    """root/l1/l2/w is the cwd: four `..` at most reach `root`, never beyond it."""
    cwd = root / "l1" / "l2" / "w"
    (cwd / "src" / "pkg").mkdir(parents=True)
    shutil.copy(sorted(TREE.glob("*.mcp"))[0], cwd / "src" / "a.mcp")
    (cwd / "src" / "pkg" / "b.txt").write_text("b\n")
    (cwd / "file.txt").write_text("f\n")
    (cwd / "other").mkdir()
    (cwd / "other" / "keep.txt").write_text("k\n")
    (cwd / "up").symlink_to("..")
    (cwd / "lnk").symlink_to("src/pkg")
    (root / "l1" / "side.txt").write_text("s\n")
    return cwd


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(parts=st.lists(COMPONENTS, min_size=1, max_size=4), force=st.booleans())
def test_no_file_outside_the_output_is_ever_changed(
    tmp_path_factory: pytest.TempPathFactory, parts: list[str], force: bool
) -> None:
    root = tmp_path_factory.mktemp("sandbox")
    cwd = _sandbox(root)
    artifacts = list(compiled_once())
    before = snapshot(root)
    out = "/".join(parts)
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        try:
            plan = write_atomically(out, artifacts, sources=("src",), force=force)
            target = plan.target
        except OutputError as exc:
            target = None
            event(exc.diagnostic.code)
        else:
            event("written")
    finally:
        os.chdir(previous)
    after = snapshot(root)
    for rel, entry in before.items():
        path = (root / rel).resolve() if not (root / rel).is_symlink() else root / rel
        if target is not None and (path == target or target in path.parents):
            continue  # inside the output: replaced as asked
        assert after.get(rel) == entry, f"--out {out!r} (force={force}) changed {rel}"
    assert not [k for k in after if "staging-" in k or ".old-" in k]
    if target is not None:
        assert marker(target) == BUILD_FORMAT
        assert target != cwd and target not in (cwd / "src").resolve().parents
    shutil.rmtree(root)


@functools.cache
def compiled_once() -> tuple[Artifact, ...]:
    """The artifacts of TREE, compiled once: the property is about writing them."""
    return tuple(compile_artifacts(compile_tree(TREE)).artifacts)


# ------------------------------------------------------- one policy for every command


@pytest.mark.parametrize(
    ("command", "out", "code"),
    [
        (["watch", "proj/src", "--poll"], ".", "E0801"),
        (["watch", "proj/src", "--poll", "--force"], "to-src", "E0802"),
        (["watch", "proj/src", "--poll"], "foreign", "E0804"),
        (["report", "proj/src"], ".", "E0801"),
        (["report", "proj/src", "--force"], "proj", "E0802"),
        (["report", "proj/src", "--force"], "fifo", "E0803"),
        (["report", "proj/src"], "foreign", "E0804"),
    ],
)
def test_watch_and_report_share_the_policy(
    work: Path, command: list[str], out: str, code: str
) -> None:
    before = snapshot(work.parent)
    result = CliRunner().invoke(main, [*command, "--out", out], env={"NO_COLOR": "1"})
    assert result.exit_code == 2, result.output
    assert f"error[{code}]" in result.output and f" --> {out}:1:1" in result.output
    assert snapshot(work.parent) == before


def test_the_watcher_reports_a_refused_output_and_keeps_going(work: Path) -> None:
    from mcpdsl.builder.watch import Watcher

    lines: list[str] = []
    rebuild = Watcher("proj/src", "foreign", echo=lines.append).rebuild()
    assert not rebuild.wrote and "output refused (E0804)" in rebuild.message
    assert (work / "foreign" / "notes.txt").read_text() == "mine\n"
    forced = Watcher("proj/src", "foreign", echo=lines.append, force=True).rebuild()
    assert forced.wrote and marker(work / "foreign") == BUILD_FORMAT


def test_an_empty_out_is_refused(work: Path) -> None:
    status, output = build("")
    assert status == 2 and "error[E0803]: the output path is empty" in output


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes every directory")
def test_a_directory_without_permission_is_e0805(work: Path) -> None:
    locked = work / "locked"
    (locked / "inner").mkdir(parents=True)
    locked.chmod(0o500)
    try:
        status, output = build("locked/inner")
    finally:
        locked.chmod(0o700)
    assert status == 2 and "error[E0805]" in output


def test_a_directory_that_changes_after_the_check_is_put_back(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between `prepare` and the swap the empty directory fills up: it is refused, intact."""
    import mcpdsl.outdir as outdir

    plan = prepare("empty", sources=("proj/src",))
    (work / "empty" / "precious.txt").write_text("arrived late\n")
    with pytest.raises(OutputError) as caught:
        write_atomically(plan, list(compiled_once()), sources=("proj/src",))
    assert caught.value.diagnostic.code == "E0804"  # the re-check before the swap
    monkeypatch.setattr(outdir, "check", lambda *a, **k: None)  # a race past that check
    with pytest.raises(OutputError) as caught:
        write_atomically(plan, list(compiled_once()), sources=("proj/src",))
    assert caught.value.diagnostic.code == "E0805"  # caught after the rename, put back
    assert (work / "empty" / "precious.txt").read_text() == "arrived late\n"
    assert not list(work.glob(".empty.*"))


def test_unresolvable_paths_are_e0805_not_a_traceback(work: Path) -> None:
    with pytest.raises(OutputError) as caught:
        prepare("bad\0name")
    assert caught.value.diagnostic.code == "E0805"


def test_a_leftover_named_like_staging_is_still_an_old_directory(work: Path) -> None:
    """Leftovers are told apart by their prefix, not by a word anywhere in the name."""
    staging_out = work / "staging"
    assert build("staging")[0] == 0
    foreign = work / ".staging.old-x"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("k\n")
    status, output = build("staging")
    assert status == 0, output
    assert (foreign / "keep.txt").exists() and marker(staging_out) == BUILD_FORMAT


@pytest.mark.parametrize(
    "content",
    [b"[" * 100_000, b"\xff\xfe", b"null", b'{"format": 1}', b'{"format": "mcpdsl-build/9"}'],
    ids=["deep", "not-utf8", "null", "number", "future"],
)
def test_hostile_manifests_are_not_ours(work: Path, content: bytes) -> None:
    (work / "foreign" / "manifest.json").write_bytes(content)
    assert marker(work / "foreign") is None
    assert "error[E0804]" in build("foreign")[1]


def test_rendered_refusals_golden(work: Path, snapshot: Any) -> None:
    """Every E08xx message as a user sees it (the golden for codes found outside `check`)."""
    (work / "linked-manifest" / "manifest.json").symlink_to("../fake-manifest/manifest.json")
    shown = {out: build(out)[1] for out in [".", "proj", "to-src", "fifo", "foreign", "file.txt/x"]}
    shown["(force) proj/src/pkg"] = build("proj/src/pkg", "--force")[1]
    assert shown == snapshot


@contextlib.contextmanager
def bind_mount(source: Path, target: Path) -> Iterator[None]:
    """`source` seen again at `target`; skips where mounting is not allowed."""
    target.mkdir()
    done = subprocess.run(
        ["mount", "--bind", str(source), str(target)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip("bind mounts are not available here")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root")
def test_a_bind_mount_of_the_sources_is_the_sources(work: Path) -> None:
    """realpath keeps a bind mount apart from its source; device and inode do not."""
    with bind_mount(work / "proj", work / "mirror"):
        before = snapshot(work / "proj")
        status, output = build("mirror", "--force")
        assert status == 2 and "error[E0802]" in output
        assert "a parent of the policy sources" in output
        status, output = build("mirror/src", "--force")
        assert status == 2 and "it is the policy sources" in output
        status, output = build("mirror/src/pkg", "--force")
        assert status == 2 and "inside the policy sources" in output
        assert snapshot(work / "proj") == before
