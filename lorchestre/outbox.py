"""The e-mail outbox: mails queued in the database, delivered by `flask outbox send`.

A mail is queued in the same transaction as the data it is about, so a mail server
that is down never loses a lead. Delivery claims one row and commits, talks to the
mail server with no transaction open, then records the outcome in a new transaction:
a failed attempt is retried later with exponential back-off, and a row is sent by
one runner only, once. The single window for a duplicate is a runner killed between
the server's "250 OK" and the commit of "sent"; the row is then retried after
OUTBOX_CLAIM_TIMEOUT_SECONDS with the same Message-ID.
"""

from __future__ import annotations

import os
import secrets
import smtplib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app
from flask_babel import force_locale
from flask_mailman import EmailMessage
from flask_mailman.backends.base import BaseEmailBackend

from .database import utcnow, write_transaction
from .extensions import db, mail
from .models import Lead, OutboxMessage

EML_BACKEND = "lorchestre.outbox.EmlFileEmailBackend"
ERROR_MAX_LENGTH = 500


def default_backend(config: Mapping[str, Any]) -> str:
    """The mail back end the settings call for: locmem in tests, SMTP or .eml files."""
    if config.get("TESTING"):
        return "locmem"
    if config.get("MAIL_SERVER"):
        return "smtp"
    return EML_BACKEND


class EmlFileEmailBackend(BaseEmailBackend):
    """Development back end: each message becomes an .eml file any mail client opens."""

    def __init__(self, *args: Any, file_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.directory = Path(file_path or self.mailman.file_path)

    def send_messages(self, email_messages: list[EmailMessage]) -> int:
        """Write each message to its own file, readable by its owner only."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for message in email_messages:
            data = message.message().as_bytes()  # raises BadHeaderError like SMTP would
            name = f"{utcnow():%Y%m%dT%H%M%S}-{secrets.token_hex(4)}.eml"
            # The files hold personal data: never world-readable.
            fd = os.open(
                self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
            )
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        return len(email_messages)


def external_url(endpoint: str, **values: Any) -> str:
    """An absolute URL on BASE_URL, for e-mails: never built from the request's Host."""
    base = urlsplit(current_app.config["BASE_URL"])
    adapter = current_app.url_map.bind(
        base.netloc, script_name=base.path or "/", url_scheme=base.scheme
    )
    return adapter.build(endpoint, values, force_external=True)


def render_mail(template: str, language: str, **context: Any) -> str:
    """Render a plain-text mail template in ``language``, with or without a request.

    Campaigns and commands have no request, so the page context processors (which
    read the URL's language) are bypassed: a mail template gets only ``context``.
    """
    with force_locale(language):
        return current_app.jinja_env.get_template(template).render(**context)


def new_message_id(domain: str) -> str:
    """A unique Message-ID from the OS's randomness.

    email.utils.make_msgid draws on the ``random`` module, whose state any library
    (or a test harness) may reseed, which produced duplicate IDs.
    """
    return f"<{secrets.token_hex(16)}@{domain}>"


def enqueue(
    *,
    kind: str,
    to: str,
    subject: str,
    body: str,
    lead: Lead | None = None,
    reply_to: str | None = None,
    headers: dict[str, str] | None = None,
) -> OutboxMessage:
    """Queue one plain-text mail in the caller's transaction (the caller commits)."""
    sender_domain = parseaddr(current_app.config["MAIL_DEFAULT_SENDER"])[1].rpartition(
        "@"
    )[2]
    message = OutboxMessage(
        lead=lead,
        kind=kind,
        to_address=to,
        reply_to=reply_to,
        subject=subject,
        body=body,
        headers=headers or None,
        message_id=new_message_id(sender_domain or "lorchestreparfum.com"),
        status="pending",
        attempts=0,
        next_attempt_at=utcnow(),
    )
    db.session.add(message)
    return message


@dataclass(frozen=True)
class _Claim:
    """What a runner needs to send one row, copied out before its transaction ends."""

    id: int
    token: str
    attempts: int
    to: str
    reply_to: str | None
    subject: str
    body: str
    headers: dict[str, str]
    message_id: str


@dataclass
class DeliveryReport:
    """What one `outbox send` did."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        """Messages this run tried to send."""
        return self.sent + self.retrying + self.failed


def _claim_next(now: datetime) -> _Claim | None:
    """Take the next due row for this runner and commit, so no other runner takes it."""
    stale = now - timedelta(seconds=current_app.config["OUTBOX_CLAIM_TIMEOUT_SECONDS"])
    with write_transaction():
        row = db.session.scalars(
            sa.select(OutboxMessage)
            .where(
                sa.or_(
                    sa.and_(
                        OutboxMessage.status == "pending",
                        OutboxMessage.next_attempt_at <= now,
                    ),
                    # A runner died mid-send: try again (see the module docstring).
                    sa.and_(
                        OutboxMessage.status == "sending",
                        OutboxMessage.claimed_at < stale,
                    ),
                )
            )
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(1)
            # PostgreSQL: concurrent runners skip each other's row; SQLite's
            # BEGIN IMMEDIATE already serialises them.
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            return None
        row.status = "sending"
        row.claim_token = secrets.token_hex(16)
        row.claimed_at = now
        row.attempts += 1
        return _Claim(
            id=row.id,
            token=row.claim_token,
            attempts=row.attempts,
            to=row.to_address,
            reply_to=row.reply_to,
            subject=row.subject,
            body=row.body,
            headers=dict(row.headers or {}),
            message_id=row.message_id,
        )


def _finish(claim: _Claim, **values: Any) -> None:
    """Record the outcome of an attempt, only if this runner still holds the claim."""
    with write_transaction():
        db.session.execute(
            sa.update(OutboxMessage)
            .where(
                OutboxMessage.id == claim.id, OutboxMessage.claim_token == claim.token
            )
            .values(claim_token=None, **values)
        )


def retry_delay(attempts: int) -> timedelta:
    """Back-off after the given number of failed attempts: base × 2^(n-1), capped."""
    config = current_app.config
    seconds = config["OUTBOX_RETRY_BASE_SECONDS"] * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, config["OUTBOX_RETRY_MAX_SECONDS"]))


def _is_permanent(exc: Exception) -> bool:
    """Whether retrying cannot help: a malformed message or a 5xx answer."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _msg in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code >= 500
    return isinstance(exc, ValueError)  # a malformed message, incl. BadHeaderError


def _build(claim: _Claim, connection: BaseEmailBackend) -> EmailMessage:
    headers = {**claim.headers, "Message-ID": claim.message_id}
    return EmailMessage(
        subject=claim.subject,
        body=claim.body,
        to=[claim.to],
        reply_to=[claim.reply_to] if claim.reply_to else None,
        headers=headers,
        connection=connection,
    )


def send_due(limit: int = 100) -> DeliveryReport:
    """Deliver up to ``limit`` due messages; stop early if the server is unreachable."""
    report = DeliveryReport()
    connection = mail.get_connection()
    opened = False
    try:
        while report.attempted < limit:
            claim = _claim_next(utcnow())
            if claim is None:
                break
            try:
                if not opened:
                    connection.open()
                    opened = True
                if _build(claim, connection).send() != 1:
                    raise ValueError("the mail back end accepted no recipient")
            except Exception as exc:  # every failure is recorded, none loses the row
                stop = _record_failure(claim, exc, report)
                if stop:
                    break
                continue
            _finish(claim, status="sent", sent_at=utcnow(), last_error=None)
            report.sent += 1
    finally:
        if opened:
            connection.close()
    return report


def _describe(exc: Exception) -> str:
    """The error without the text that may quote an address or a header: for logs."""
    name = type(exc).__name__
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({code for code, _msg in exc.recipients.values()})
        return f"{name} {' '.join(map(str, codes))}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{name} {exc.smtp_code}"
    if isinstance(exc, ValueError):
        return name
    return f"{name}: {exc}"  # network errors: host, port, errno


def _record_failure(claim: _Claim, exc: Exception, report: DeliveryReport) -> bool:
    """Schedule a retry or give up; returns whether the batch should stop."""
    # The row keeps the full text (it is erased with the lead); logs get no address.
    error = f"{type(exc).__name__}: {exc}"[:ERROR_MAX_LENGTH]
    summary = _describe(exc)
    current_app.logger.warning(
        "outbox message %s: attempt %s failed: %s", claim.id, claim.attempts, summary
    )
    report.errors.append(f"message {claim.id}: {summary}")
    if (
        _is_permanent(exc)
        or claim.attempts >= current_app.config["OUTBOX_MAX_ATTEMPTS"]
    ):
        _finish(claim, status="failed", last_error=error)
        report.failed += 1
    else:
        _finish(
            claim,
            status="pending",
            next_attempt_at=utcnow() + retry_delay(claim.attempts),
            last_error=error,
        )
        report.retrying += 1
    # An answer about this one message lets the batch go on; anything else (no
    # connection, a dropped one, a bug) means the next message would fare no better.
    return not isinstance(
        exc, smtplib.SMTPResponseException | smtplib.SMTPRecipientsRefused | ValueError
    )


def status_counts() -> dict[str, int]:
    """How many messages are in each state."""
    rows = db.session.execute(
        sa.select(OutboxMessage.status, sa.func.count()).group_by(OutboxMessage.status)
    ).all()
    db.session.rollback()  # end the read: CLI commands must not idle in a transaction
    return {status: 0 for status in ("pending", "sending", "sent", "failed")} | dict(
        rows
    )
