"""`mcpdsl keys new|add|revoke|list`: signing keys and the keyrings that trust them."""

from __future__ import annotations

import os
from pathlib import Path

import click

from mcpdsl.cli.common import fail


def passphrase_from_env(var: str | None) -> bytes | None:
    """The passphrase held in environment variable `var` (never on the command line)."""
    if var is None:
        return None
    value = os.environ.get(var)
    if not value:
        fail(f"environment variable `{var}` is not set or empty")
    return value.encode("utf-8")


def _time(value: str | None, what: str):  # type: ignore[no-untyped-def]
    from mcpdsl.trust.common import TrustInputError, parse_time

    if value is None:
        return None
    try:
        return parse_time(value, what)
    except TrustInputError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group("keys")
def keys_command() -> None:
    """Create signing keys and manage keyrings (rotation, revocation)."""


@keys_command.command("new")
@click.option("--id", "key_id", required=True, help="Key id (letters, digits, `.`, `_`, `-`).")
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Key directory to write."
)
@click.option("--passphrase-env", metavar="VAR", help="Encrypt the private keys with $VAR.")
@click.option("--not-before", metavar="ISO", help="Start of validity (default: now).")
@click.option("--not-after", metavar="ISO", help="End of validity (default: one year later).")
@click.option("--force", is_flag=True, help="Replace a key already in --out.")
def keys_new(
    key_id: str,
    out: Path,
    passphrase_env: str | None,
    not_before: str | None,
    not_after: str | None,
    force: bool,
) -> None:
    """Write an Ed25519 + ML-DSA-65 (+ ES256 for OPA) key and its keyring entry."""
    from mcpdsl.trust import TrustInputError, generate_key
    from mcpdsl.trust.common import format_time

    passphrase = passphrase_from_env(passphrase_env)
    try:
        key = generate_key(
            key_id,
            out,
            passphrase=passphrase,
            not_before=_time(not_before, "--not-before"),
            not_after=_time(not_after, "--not-after"),
            force=force,
        )
    except TrustInputError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write `{out}`: {exc.strerror}")
    click.echo(
        f"key {key.key_id} valid {format_time(key.not_before)} .. {format_time(key.not_after)}"
        f" ({'encrypted' if passphrase else 'NOT encrypted'}) in {out}/"
    )
    click.echo(
        f"keyring entry: {out / 'public.json'}  (mcpdsl keys add --keyring FILE {out / 'public.json'})"
    )


@keys_command.command("add")
@click.option(
    "--keyring",
    required=True,
    type=click.Path(path_type=Path),
    help="Keyring file (created if missing).",
)
@click.argument("entries", nargs=-1, required=True, type=click.Path(path_type=Path))
def keys_add(keyring: Path, entries: tuple[Path, ...]) -> None:
    """Trust the keys of ENTRIES (public.json files, or key directories)."""
    from mcpdsl.trust import KeyEntry, Keyring, TrustInputError
    from mcpdsl.trust.common import read_json

    try:
        ring = Keyring.load(keyring) if keyring.exists() else Keyring()
        for path in entries:
            file = path / "public.json" if path.is_dir() else path
            entry = KeyEntry.from_json(read_json(file, "key entry"), str(file))
            added = ring.add(entry)
            note = " (revoked)" if entry.key_id in ring.revoked else ""
            click.echo(f"{'added' if added else 'already present'}: {entry.key_id}{note}")
        ring.save(keyring)
    except TrustInputError as exc:
        fail(str(exc))


@keys_command.command("revoke")
@click.option("--keyring", required=True, type=click.Path(path_type=Path))
@click.option("--id", "key_id", required=True)
@click.option("--at", "at", metavar="ISO", help="Revocation time (default: now).")
@click.option(
    "--reason",
    type=click.Choice(["compromised", "superseded"]),
    default="compromised",
    show_default=True,
    help="compromised: refuse every signature of the key; superseded: refuse those made at or after --at.",
)
def keys_revoke(keyring: Path, key_id: str, at: str | None, reason: str) -> None:
    """Stop trusting a key."""
    from mcpdsl.trust import Keyring, TrustInputError
    from mcpdsl.trust.common import format_time

    try:
        ring = Keyring.load(keyring)
        rev = ring.revoke(key_id, _time(at, "--at"), reason)
        ring.save(keyring)
    except TrustInputError as exc:
        fail(str(exc))
    click.echo(f"revoked: {rev.key_id} at {format_time(rev.revoked_at)} ({rev.reason})")


@keys_command.command("list")
@click.option("--keyring", required=True, type=click.Path(path_type=Path))
def keys_list(keyring: Path) -> None:
    """Show the keys of a keyring and their state."""
    from mcpdsl.trust import Keyring, TrustInputError
    from mcpdsl.trust.common import format_time, utcnow

    try:
        ring = Keyring.load(keyring)
    except TrustInputError as exc:
        fail(str(exc))
    now = utcnow()
    for key_id, entry in sorted(ring.keys.items()):
        rev = ring.revoked.get(key_id)
        if rev is not None:
            state = f"revoked at {format_time(rev.revoked_at)} ({rev.reason})"
        elif now > entry.not_after:
            state = "expired"
        elif now < entry.not_before:
            state = "not yet valid"
        else:
            state = "valid"
        click.echo(
            f"{key_id}  {format_time(entry.not_before)} .. {format_time(entry.not_after)}  {state}"
        )
    if ring.min_signed_at is not None or ring.min_revision is not None:
        click.echo(_pins(ring))


def _pins(ring) -> str:  # type: ignore[no-untyped-def]
    from mcpdsl.trust.common import format_time

    parts = []
    if ring.min_signed_at is not None:
        parts.append(f"signed at or after {format_time(ring.min_signed_at)}")
    if ring.min_revision is not None:
        parts.append(f"revision {ring.min_revision} or later")
    return "builds must be " + " and ".join(parts) if parts else "no rollback minimum"


@keys_command.command("pin")
@click.option("--keyring", required=True, type=click.Path(path_type=Path))
@click.option("--not-before", metavar="ISO", help="Refuse builds signed before this time.")
@click.option(
    "--min-revision",
    type=click.IntRange(0, 2**63 - 1),
    help="Refuse builds whose signed revision is lower.",
)
@click.option("--lower", is_flag=True, help="Allow lowering a minimum (re-admits older builds).")
def keys_pin(keyring: Path, not_before: str | None, min_revision: int | None, lower: bool) -> None:
    """Set the keyring's rollback minimums: every verifier using it refuses older builds."""
    from mcpdsl.trust import Keyring, TrustInputError

    if not_before is None and min_revision is None:
        fail("give --not-before and/or --min-revision")
    try:
        ring = Keyring.load(keyring)
        ring.pin(_time(not_before, "--not-before"), min_revision, lower=lower)
        ring.save(keyring)
    except TrustInputError as exc:
        fail(str(exc))
    click.echo(f"pinned: {_pins(ring)}")
