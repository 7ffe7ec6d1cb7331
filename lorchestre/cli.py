"""Flask commands: translations, the ledger, the e-mail outbox, retention, staff."""

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
outbox = AppGroup("outbox", help="Deliver the queued e-mails.")
retention = AppGroup("retention", help="Apply the data-retention rules.")

staff = AppGroup("staff", help="Create, list, disable and reset staff accounts.")

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
        # The catalogue's own line width: a narrower one rewraps every entry.
        "--width",
        "88",
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
@click.option(
    "--anchor",
    "anchor_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File of anchors from `consent anchor`: also catches a truncated tail "
    "(repeatable).",
)
def consent_verify(anchor_files: tuple[Path, ...] = ()) -> None:
    """Recompute every hash; exit 0 if the ledger is intact, 1 naming the first bad seq."""
    from .consent.anchor import AnchorFileError, check_anchors, read_anchors
    from .consent.ledger import verify_chain

    try:  # a bad anchor file is reported before the (long) pass over the ledger
        anchors = read_anchors(anchor_files)
    except AnchorFileError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    result = verify_chain()
    if not result.ok:
        click.echo(
            f"BROKEN at seq {result.first_bad_seq}: {result.reason} "
            f"({result.count} records verified before it)",
            err=True,
        )
        sys.exit(1)
    if anchor_files:
        checked = check_anchors(anchors)
        if not checked.ok:
            first = checked.problems[0]
            click.echo(f"BROKEN at seq {first.first_bad_seq}: {first.reason}", err=True)
            for problem in checked.problems[1:]:
                click.echo(f"  also: {problem.reason}", err=True)
            sys.exit(1)
    click.echo(f"ok: {result.count} records, head hash {result.head_hash}")
    if anchor_files:
        click.echo(
            f"anchors: {checked.checked} matched, "
            f"{checked.purged} purged by retention (not checked)"
        )


@consent.command("anchor")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default="-",
    show_default=True,
    help="Anchor file to append to; '-' prints the line (to mail or copy away).",
)
def consent_anchor(output: Path) -> None:
    """Verify the chain, then append its head (seq, hash, times) to an anchor file."""
    from .consent.anchor import append_anchor, current_head
    from .consent.ledger import verify_chain
    from .database import utcnow

    result = verify_chain()
    if not result.ok:  # anchoring a broken chain would vouch for it
        click.echo(
            f"BROKEN at seq {result.first_bad_seq}: {result.reason}; nothing anchored",
            err=True,
        )
        sys.exit(1)
    anchor = current_head(utcnow())
    if anchor is None:
        click.echo("the ledger is empty: nothing to anchor", err=True)
        return
    if str(output) == "-":
        click.echo(anchor.to_line())
    else:
        append_anchor(output, anchor)
        click.echo(f"anchored seq {anchor.seq}, hash {anchor.hash} in {output}")


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


@outbox.command("send")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Most messages to attempt in this run.",
)
def outbox_send(limit: int) -> None:
    """Deliver the due messages; exit 1 if an attempt failed (it is retried later)."""
    from flask import current_app

    from .outbox import EML_BACKEND, send_due, status_counts

    config = current_app.config
    to_files = config["MAIL_BACKEND"] == EML_BACKEND
    if to_files and config["ENV_NAME"] == "production":
        click.echo("warning: no LORCHESTRE_MAIL_SERVER: writing files", err=True)
    report = send_due(limit=limit)
    click.echo(
        f"outbox: {report.sent} sent, {report.retrying} to retry later, "
        f"{report.failed} given up; {status_counts()['pending']} waiting"
    )
    if report.sent and to_files:
        click.echo(f"written as .eml files in {config['MAIL_FILE_PATH']}")
    for error in report.errors:
        click.echo(f"  {error}", err=True)
    if report.retrying or report.failed:
        sys.exit(1)


@outbox.command("status")
def outbox_status() -> None:
    """Count the messages in each state."""
    from .outbox import status_counts

    counts = status_counts()
    click.echo(", ".join(f"{status}: {count}" for status, count in counts.items()))


@retention.command("run")
@click.option("--dry-run", is_flag=True, help="Only say what would be erased.")
def retention_run(dry_run: bool) -> None:
    """Erase prospects past the retention period and expire delivered e-mails."""
    from .retention import run_retention

    report = run_retention(dry_run=dry_run)
    erased, verb = report.erased, "would be" if dry_run else "were"
    note = " (dry run: nothing changed)" if dry_run else ""
    click.echo(f"retention run at {report.started_at:%Y-%m-%d %H:%M:%S} UTC{note}")
    click.echo(
        "rule: prospects whose last interaction is before "
        f"{report.cutoff:%Y-%m-%d %H:%M:%S} UTC are erased"
    )
    click.echo(f"prospects {verb} erased: {erased.leads}")
    click.echo(
        f"  with them, {erased.messages} messages, {erased.consent_events} "
        f"marketing-consent events and {erased.outbox_messages} e-mails"
    )
    click.echo(f"clients kept past that date (contract running): {report.clients_kept}")
    click.echo(
        f"delivered or abandoned e-mails past {report.outbox_keep_days} days "
        f"{verb} deleted: {report.outbox_expired}"
    )
    click.echo(
        "closed rights requests past their proof period "
        f"{verb} deleted from the register: {report.register_entries_deleted}"
    )
    click.echo("run recorded for the DPO")


def _read_password(from_stdin: bool) -> str:
    """The new password: first line of standard input, or typed twice at a hidden prompt."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _staff_call(action, *args, **kwargs):
    """Run an account service; print its refusal in English and exit 1."""
    from flask_babel import force_locale

    from .database import DatabaseUnavailable
    from .staff.services import AccountError

    with force_locale("en"):
        try:
            return action(*args, **kwargs)
        except AccountError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except DatabaseUnavailable as exc:
            # Most often a database not created yet: say what to do, not a traceback.
            click.echo(
                f"error: the database cannot be written ({str(exc).splitlines()[0]}); "
                "create or migrate it first with `flask --app lorchestre db upgrade` "
                "(./scripts/serve.sh does it)",
                err=True,
            )
            sys.exit(1)


@staff.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(["marketing", "dpo", "admin"]), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def staff_create(email: str, role: str, password_stdin: bool) -> None:
    """Create a staff account (marketing: statistics; dpo: + exports; admin: + accounts)."""
    from .staff.services import create_account

    user = _staff_call(create_account, email, _read_password(password_stdin), role)
    click.echo(f"created {user.email} ({user.role})")


@staff.command("disable")
@click.argument("email")
def staff_disable(email: str) -> None:
    """Disable an account; its sessions end at once."""
    from .staff.services import find_account, set_active

    user = _staff_call(find_account, email)
    _staff_call(set_active, user.id, False)
    click.echo(f"disabled {user.email}")


@staff.command("enable")
@click.argument("email")
def staff_enable(email: str) -> None:
    """Enable a disabled account again."""
    from .staff.services import find_account, set_active

    user = _staff_call(find_account, email)
    _staff_call(set_active, user.id, True)
    click.echo(f"enabled {user.email}")


@staff.command("reset-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--clear-totp", is_flag=True, help="Also remove the two-step sign-in.")
def staff_reset_password(email: str, password_stdin: bool, clear_totp: bool) -> None:
    """Set a new password; every session of the account ends."""
    from .staff.services import find_account, reset_password

    user = _staff_call(find_account, email)
    password = _read_password(password_stdin)
    _staff_call(reset_password, user.id, password, clear_totp=clear_totp)
    click.echo(f"password reset for {user.email}; its sessions have ended")


@staff.command("list")
def staff_list() -> None:
    """Every staff account: address, role, state, two-step sign-in, last sign-in."""
    from .consent.ledger import format_timestamp
    from .staff.services import list_accounts

    for user in list_accounts():
        state = "active" if user.active else "disabled"
        totp = "totp" if user.totp_secret else "-"
        last = format_timestamp(user.last_login_at) if user.last_login_at else "never"
        click.echo(f"{user.email}\t{user.role}\t{state}\t{totp}\t{last}")


def init_app(app: Flask) -> None:
    """Attach the command groups to ``flask``."""
    app.cli.add_command(translate)
    app.cli.add_command(consent)
    app.cli.add_command(outbox)
    app.cli.add_command(retention)

    app.cli.add_command(staff)
