"""Flask commands: translations, the consent ledger."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from babel.messages.frontend import CommandLineInterface
from flask import Flask
from flask.cli import AppGroup

from .config import PROJECT_ROOT, TRANSLATIONS_DIR

translate = AppGroup("translate", help="Extract, update and compile the translations.")
consent = AppGroup("consent", help="Export, verify and bundle the consent ledger.")

POT_FILE = TRANSLATIONS_DIR / "messages.pot"
BABEL_CFG = TRANSLATIONS_DIR / "babel.cfg"


def _pybabel(*args: str) -> None:
    """Run a pybabel sub-command in-process, failing loudly."""
    CommandLineInterface().run(["pybabel", "-q", *args])


@translate.command("extract")
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), default=POT_FILE
)
def translate_extract(output: Path = POT_FILE) -> None:
    """Extract messages from the code and templates into messages.pot."""
    _pybabel(
        # Babel skips "_*" folders by default, which would miss templates/_partials.
        "extract", "-F", str(BABEL_CFG), "-k", "_l", "--ignore-dirs", ".* __pycache__",
        "--no-location", "--sort-output",
        "--project", "lorchestre", "-o", str(output),
        str(PROJECT_ROOT),
    )  # fmt: skip


@translate.command("update")
def translate_update() -> None:
    """Extract, then merge new messages into every catalogue."""
    translate_extract.callback(POT_FILE)
    _pybabel(
        "update",
        "-i",
        str(POT_FILE),
        "-d",
        str(TRANSLATIONS_DIR),
        "--no-fuzzy-matching",
    )


@translate.command("compile")
def translate_compile() -> None:
    """Compile the catalogues into .mo files (build output, not committed)."""
    _pybabel("compile", "-d", str(TRANSLATIONS_DIR), "--statistics")


def _parse_day(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from exc


@consent.command("verify")
def consent_verify() -> None:
    """Recompute every hash; exit 0 if the ledger is intact, 1 naming the first bad seq."""
    from .consent.ledger import verify_chain

    result = verify_chain()
    if result.ok:
        click.echo(f"ok: {result.count} records, head hash {result.head_hash}")
        return
    click.echo(
        f"BROKEN at seq {result.first_bad_seq}: {result.reason} "
        f"({result.count} records verified before it)",
        err=True,
    )
    sys.exit(1)


@consent.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@click.option("--since", help="First day included (YYYY-MM-DD, UTC).")
@click.option("--until", help="First day excluded (YYYY-MM-DD, UTC).")
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), help="File to write."
)
def consent_export(
    fmt: str, since: str | None, until: str | None, output: Path | None
) -> None:
    """Stream the ledger in seq order as JSONL or CSV."""
    from .consent.exports import write_export

    start, end = _parse_day(since), _parse_day(until)
    if output is None:
        write_export(sys.stdout, fmt, start, end)
        return
    with output.open("w", encoding="utf-8", newline="") as handle:
        count = write_export(handle, fmt, start, end)
    click.echo(f"{count} records written to {output}", err=True)


@consent.command("audit-bundle")
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), required=True
)
def consent_audit_bundle(output: Path) -> None:
    """Write the zip an auditor can verify without our code."""
    from .consent.exports import write_audit_bundle

    manifest = write_audit_bundle(output)
    click.echo(
        f"{output}: {manifest['row_count']} records, head {manifest['head_hash']}, "
        f"verification {'ok' if manifest['verification']['ok'] else 'FAILED'}"
    )


@consent.command("purge")
@click.option("--older-than-days", type=click.IntRange(min=1), required=True)
@click.option(
    "--dry-run", is_flag=True, help="Say what would be purged; change nothing."
)
def consent_purge(older_than_days: int, dry_run: bool) -> None:
    """Delete ledger records older than N days, leaving a checkpoint so the rest verifies."""
    from datetime import timedelta

    from .consent.ledger import purge_before
    from .database import utcnow

    count, last_seq = purge_before(utcnow() - timedelta(days=older_than_days), dry_run)
    verb = "would purge" if dry_run else "purged"
    click.echo(
        f"{verb} {count} records" + (f" (up to seq {last_seq})" if last_seq else "")
    )


def init_app(app: Flask) -> None:
    """Attach the command groups to ``flask``."""
    app.cli.add_command(translate)
    app.cli.add_command(consent)
