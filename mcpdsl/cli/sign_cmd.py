"""`mcpdsl sign BUILD --key KEY` and `mcpdsl verify BUILD --trust KEYRING`.

Exit codes: 0 signed / verified; 1 refused (the build does not match its
manifest, or verification failed; the reason is printed); 2 usage or unusable
input (missing key, wrong passphrase, malformed keyring).
"""

from __future__ import annotations

from pathlib import Path

import click

from mcpdsl.cli.common import fail
from mcpdsl.cli.exit import EXIT_FINDINGS
from mcpdsl.cli.keys_cmd import passphrase_from_env


@click.command("sign")
@click.argument("build", type=click.Path(path_type=Path))
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Key directory, or its key.json.",
)
@click.option(
    "--passphrase-env", metavar="VAR", help="Environment variable holding the key's passphrase."
)
@click.option(
    "--revision",
    type=click.IntRange(0, 2**63 - 1),
    help="Signed build revision for rollback protection (default: signing time, Unix seconds).",
)
def sign_command(
    build: Path, key_path: Path, passphrase_env: str | None, revision: int | None
) -> None:
    """Sign a build: the OPA bundle (ES256 JWT), then manifest.json (Ed25519 + ML-DSA-65)."""
    from mcpdsl.cli.common import exit_output_error
    from mcpdsl.outdir import OutputError
    from mcpdsl.trust import TrustError, TrustInputError, load_signing_key, sign_build
    from mcpdsl.trust.common import format_time

    if not build.is_dir():
        fail(f"build `{build}` is not a directory")
    passphrase = passphrase_from_env(passphrase_env)
    try:
        key = load_signing_key(key_path, passphrase)
        result = sign_build(build, key, revision=revision)
    except TrustInputError as exc:
        fail(str(exc))
    except OutputError as exc:  # the output-directory policy (E08xx), e.g. signing `.`
        exit_output_error(exc)
    except TrustError as exc:
        fail(f"refusing to sign `{build}`: {exc.reason}", EXIT_FINDINGS)
    except OSError as exc:
        fail(f"cannot write `{build}`: {exc.strerror}")
    opa = "; opa/bundle.tar.gz signed (ES256)" if result.opa_bundle_signed else ""
    click.echo(
        f"signed {build}/ with key {result.key_id} at {format_time(result.signed_at)}"
        f" ({result.artifacts} artifacts{opa}; revision {result.revision})"
    )


@click.command("verify")
@click.argument("build", type=click.Path(path_type=Path))
@click.option(
    "--trust",
    "trust",
    required=True,
    type=click.Path(path_type=Path),
    help="Keyring (or one public.json).",
)
@click.option(
    "--not-before",
    metavar="ISO",
    help="Refuse builds signed before this time (rollback protection).",
)
@click.option(
    "--min-revision",
    type=click.IntRange(0, 2**63 - 1),
    help="Refuse builds whose signed revision is lower (rollback protection).",
)
def verify_command(
    build: Path, trust: Path, not_before: str | None, min_revision: int | None
) -> None:
    """Verify a signed build: every artifact hash, both signatures, key validity, revocation."""
    from mcpdsl.trust import Keyring, TrustError, TrustInputError, verify_build
    from mcpdsl.trust.common import format_time, parse_time

    if not build.is_dir():
        fail(f"build `{build}` is not a directory")
    try:
        minimum = None if not_before is None else parse_time(not_before, "--not-before")
        keyring = Keyring.load(trust)
        verified = verify_build(build, keyring, not_before=minimum, min_revision=min_revision)
    except TrustInputError as exc:
        fail(str(exc))
    except TrustError as exc:
        click.echo(f"refused: {exc.reason}", err=True)
        raise SystemExit(EXIT_FINDINGS) from None
    opa = (
        f"; opa bundle: {len(verified.opa_bundle_files)} files signed"
        if verified.opa_bundle_files
        else ""
    )
    revision = "" if verified.revision is None else f", revision {verified.revision}"
    click.echo(
        f"verified {build}/: {len(verified.files)} artifacts, signed by {verified.key_id}"
        f" at {format_time(verified.signed_at)}{revision} (ed25519 + ml-dsa-65{opa})"
    )
