"""`mcpdsl diff OLD NEW [--format text|json|sarif|markdown] [--fail-on widen|narrow|any]`.

Each side is a directory (or file) or `git:REV[:DIR]`: DIR as of revision REV
of the repository around the current directory, exported with `git archive`
into a temporary directory — the work tree and the index are never touched.
Without `:DIR` a side compares the same path as the other side: the other
side's directory (relative to the repository root), its DIR when it is a git
side too, or the current directory when neither names one.

Exit codes: 0 no failing change; 1 `--fail-on` matched (e.g. a request
gains access under `--fail-on widen`); 2 usage error, an unusable side or a
side with compile errors.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
from contextlib import ExitStack
from pathlib import Path

import click

from mcpdsl.cli.common import echo_error, fail
from mcpdsl.cli.exit import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE

FAIL_ON = ("widen", "narrow", "any", "never")
GIT_TIMEOUT = 60


class SideError(Exception):
    """A side of the diff cannot be read (exit code 2)."""


def _git(args: list[str], cwd: Path) -> bytes:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, timeout=GIT_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SideError(f"cannot run git: {exc}") from exc
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise SideError(message[-1] if message else f"git {args[0]} failed")
    return done.stdout


def default_dir(other: str, top: Path) -> str:
    """The path, relative to the repository root, that a `git:REV` side without DIR means.

    `mcpdsl diff git:HEAD policies/` compares `policies/` with itself at HEAD,
    not the whole repository with `policies/`.
    """
    if other.startswith("git:"):
        _, _, sub = other[4:].partition(":")
        if sub.strip("/"):
            return sub.strip("/")
        here = Path.cwd()
    else:
        here = Path(other)
    real, root = Path(os.path.realpath(here)), Path(os.path.realpath(top))
    if real != root and root not in real.parents:
        raise SideError(
            f"`{other}` is outside the repository at `{top}`; name the directory to compare"
            " with `git:REV:DIR`"
        )
    return real.relative_to(root).as_posix() if real != root else ""


def checkout(spec: str, stack: ExitStack, other: str | None = None) -> Path:
    """A directory holding the side `spec` (exported into a temporary directory for git).

    `other` is the other side of the diff; a `git:REV` without DIR takes its path.
    """
    if not spec.startswith("git:"):
        path = Path(spec)
        if not path.exists():
            raise SideError(f"`{spec}` does not exist")
        return path
    rest = spec[4:]
    rev, _, sub = rest.partition(":")
    if not rev:
        raise SideError(f"`{spec}`: expected `git:REV` or `git:REV:DIR`")
    top = Path(_git(["rev-parse", "--show-toplevel"], Path.cwd()).decode().strip())
    try:
        commit = _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], top).decode()
    except SideError:
        raise SideError(f"`{rev}` is not a revision of the repository at `{top}`") from None
    commit = commit.strip()
    sub = sub.strip("/")
    if not sub and other is not None:
        sub = default_dir(other, top)
    args = ["archive", "--format=tar", commit]
    if sub:
        args += ["--", sub]
    data = _git(args, top)
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mcpdsl-diff-")))
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, filter="data")
            else:  # Python < 3.11.4: git archive output is trusted, members stay below `tmp`
                tar.extractall(tmp)
    except (tarfile.TarError, OSError) as exc:
        # `tarfile.FilterError` (Python >= 3.11.4) names the member: a committed symlink
        # to `/etc/passwd` or `../..`, refused as E0503 refuses it in a work tree.
        member = getattr(exc, "tarinfo", None)
        if isinstance(member, tarfile.TarInfo):
            raise SideError(
                f"`{spec}`: `{member.name}` is a link that leaves the tree; it is not read"
            ) from None
        raise SideError(f"`{spec}`: cannot export the revision: {exc}") from None
    target = tmp / sub if sub else tmp
    if not target.exists():
        raise SideError(f"`{sub}` does not exist at `{rev}`")
    return target


@click.command("diff")
@click.argument("old")
@click.argument("new")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("text", "json", "sarif", "markdown")),
    default="text",
    show_default=True,
)
@click.option(
    "--fail-on",
    type=click.Choice(FAIL_ON),
    default="never",
    show_default=True,
    help="Exit 1 when a request gains (widen) or loses (narrow) access or a route; `any`: "
    "any access, obligation or routing change.",
)
def diff_command(old: str, new: str, fmt: str, fail_on: str) -> None:
    """Semantic difference of two policy trees: access (with witnesses) and parameters.

    OLD and NEW are directories or `git:REV[:DIR]` of the current repository.
    """
    from mcpdsl._version import __version__
    from mcpdsl.analysis import WitnessCrash
    from mcpdsl.analysis.diff import diff
    from mcpdsl.analysis.report import render
    from mcpdsl.pipeline import InputError, compile_tree

    projects = []
    with ExitStack() as stack:
        for spec, other in ((old, new), (new, old)):
            try:
                root = checkout(spec, stack, other)
                compilation = compile_tree(root)
            except SideError as exc:
                fail(str(exc))
            except InputError as exc:
                fail(f"{spec}: {exc.diagnostic.message}")
            if compilation.project is None:
                from mcpdsl.diagnostics.render import render_human

                click.echo(render_human(compilation.diagnostics, compilation.sources), err=True)
                fail(f"`{spec}` has errors; fix them before diffing")
            projects.append(compilation.project)
    try:
        result = diff(projects[0], projects[1])
    except WitnessCrash as exc:  # a bug in mcpdsl, not a difference: nothing was judged
        echo_error(f"internal error: {exc}")
        click.echo(
            "  = help: this is a bug in mcpdsl, not in the policy; please report it", err=True
        )
        sys.exit(EXIT_USAGE)
    click.echo(render(result, fmt, (old, new), __version__), nl=False)
    failing = {
        "widen": result.gains,
        "narrow": bool(result.narrowed) or any(r.direction == "narrowed" for r in result.routes),
        "any": bool(result.access or result.routes or result.obligations),
        "never": False,
    }[fail_on]
    sys.exit(EXIT_FINDINGS if failing else EXIT_OK)
