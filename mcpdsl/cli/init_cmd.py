"""`mcpdsl init [DIR] [--package NAME]`: a small working policy tree with tests.

The starter is what a newcomer edits first, so it shows one of each of the four
kinds of rules (a service with its scaling, a zero-trust policy, tests) and
passes `check`, `test` and `build` as written.  `init` never replaces anything:
it refuses a directory that already holds `.mcp` files or any file it would
write (exit 2).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import click

from mcpdsl.cli.common import echo_error, fail
from mcpdsl.cli.exit import EXIT_USAGE

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}$")

SERVICES = """\
package {package}

# One workload: the image, its port and what one pod requests.  `mcpdsl build`
# turns it into a Deployment, a Service and a NetworkPolicy.
service api {{
  image  "ghcr.io/example/api:1.0.0"
  port   8080
  cpu    250m
  memory 256Mi
}}

service web {{
  image  "ghcr.io/example/web:1.0.0"
  port   8080
  cpu    100m
  memory 128Mi
}}

# Autoscaling: an HPA between 2 and 10 replicas aiming at 70% CPU.
scale api {{
  replicas 2..10
  target   cpu 70%
}}

scale web {{
  replicas 2..4
  target   cpu 80%
}}
"""

ACCESS = """\
package {package}

# Zero trust: nothing is allowed unless a rule says so; a deny always wins.
policy access {{
  default deny
  web-api: allow service web -> service api on GET "/v1/**"
  people:  allow user any -> service web on GET when request.auth.mfa
}}
"""

TESTS = """\
package {package}

# `mcpdsl test` runs these in the embedded engine; CI fails when one fails.
test "the web tier reads the API" {{
  request service web -> service api GET "/v1/items"
  expect allow
}}

test "the web tier cannot write to the API" {{
  request service web -> service api POST "/v1/items"
  expect deny
}}

test "people need MFA" {{
  request user alice -> service web GET "/" {{
    request.auth.mfa: false
  }}
  expect deny
}}

test "the API scales up under load" {{
  # ceil(2 x 140/70) = 4
  given scale api {{ replicas 2, cpu 140%, at "2026-01-05T12:00:00Z" }}
  expect replicas 4
}}
"""

FILES = {"services.mcp": SERVICES, "access.mcp": ACCESS, "tests.mcp": TESTS}


@click.command("init")
@click.argument("directory", required=False, default=".", type=click.Path(path_type=str))
@click.option("--package", "package", default=None, help="Package name (default: the dir name).")
def init_command(directory: str, package: str | None) -> None:
    """Create a small policy tree with tests in DIRECTORY (default: here)."""
    root = Path(directory)
    name = package or re.sub(r"[^a-z0-9-]", "-", root.resolve().name.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = "starter"
    if not _NAME.match(name):
        fail(f"`{name}` is not a package name (a-z, 0-9 and `-`)")
    if root.exists() and not root.is_dir():
        fail(f"`{directory}` exists and is not a directory")
    if root.is_dir():
        existing = sorted(p.name for p in root.glob("*.mcp"))
        if existing:
            echo_error(
                f"`{directory}` already holds a policy tree ({', '.join(existing)})",
            )
            click.echo("help: run `mcpdsl init` in a new or empty directory", err=True)
            sys.exit(EXIT_USAGE)
    root.mkdir(parents=True, exist_ok=True)
    for file, template in FILES.items():
        target = root / file
        try:
            # O_EXCL: never replace a file that appeared since the check above.
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            fail(f"`{target}` already exists; nothing was replaced")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(template.format(package=name))
        click.echo(f"created {target}")
    click.echo(f"next: mcpdsl check {directory} && mcpdsl test {directory}")
