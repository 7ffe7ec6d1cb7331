"""The e-mail outbox: exactly-once delivery, retries with back-off, back ends."""

from __future__ import annotations

import email
import smtplib
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_mailman.backends.locmem import EmailBackend as LocmemBackend

from lorchestre import create_app
from lorchestre.database import write_transaction
from lorchestre.extensions import db
from lorchestre.models import OutboxMessage
from lorchestre.outbox import (
    EML_BACKEND,
    default_backend,
    enqueue,
    retry_delay,
    send_due,
)

from .conftest import make_app
from .contact_helpers import post_contact
from .smtp_stub import SMTPStub, running_smtp_stub

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def smtp_server() -> Iterator[SMTPStub]:
    with running_smtp_stub() as server:
        yield server


def _drop(app: Flask) -> None:
    with app.app_context():
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


@pytest.fixture
def smtp_app(tmp_path: Path, smtp_server: SMTPStub) -> Iterator[Flask]:
    """An app that sends over real SMTP to the stub server."""
    app = make_app(
        tmp_path,
        MAIL_BACKEND="smtp",
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=smtp_server.port,
        MAIL_USE_TLS=False,
        MAIL_TIMEOUT=5,
    )
    yield app
    _drop(app)


def outbox_rows(app: Flask) -> dict[str, OutboxMessage]:
    """The outbox rows by kind."""
    with app.app_context():
        rows = db.session.scalars(sa.select(OutboxMessage)).all()
        db.session.expunge_all()
    return {row.kind: row for row in rows}


def send(app: Flask):
    """Run `flask outbox send`."""
    return app.test_cli_runner().invoke(args=["outbox", "send"])


def test_mail_goes_out_exactly_once_when_the_first_smtp_attempt_fails(
    smtp_app, smtp_server, time_machine
):
    time_machine.move_to(T0, tick=False)
    post_contact(smtp_app.test_client(), "fr")
    smtp_server.drop_connections = 1  # the server is restarting

    first = send(smtp_app)
    assert first.exit_code == 1
    assert "0 sent, 1 to retry later, 0 given up; 2 waiting" in first.output
    assert "SMTPServerDisconnected" in first.output
    assert smtp_server.received == []
    rows = outbox_rows(smtp_app)
    ack, notification = rows["contact_ack"], rows["contact_notification"]
    assert (ack.status, ack.attempts, ack.claim_token) == ("pending", 1, None)
    assert ack.next_attempt_at == T0 + timedelta(seconds=60)
    # The batch stopped at the unreachable server: the other mail was not tried.
    assert notification.attempts == 0

    # Still within the back-off: only the untried message goes.
    second = send(smtp_app)
    assert second.exit_code == 0, second.output
    assert "1 sent, 0 to retry later, 0 given up; 1 waiting" in second.output

    time_machine.move_to(T0 + timedelta(seconds=61), tick=False)
    third = send(smtp_app)
    assert "1 sent, 0 to retry later, 0 given up; 0 waiting" in third.output
    fourth = send(smtp_app)
    assert "0 sent, 0 to retry later, 0 given up; 0 waiting" in fourth.output

    received = sorted(smtp_server.received, key=lambda m: m["Message-ID"])
    rows = outbox_rows(smtp_app)
    assert [m["Message-ID"] for m in received] == sorted(
        row.message_id for row in rows.values()
    )
    assert {row.status for row in rows.values()} == {"sent"}
    assert rows["contact_ack"].attempts == 2 and rows["contact_ack"].sent_at == T0 + (
        timedelta(seconds=61)
    )
    ack_mail = next(m for m in received if m["To"] == "camille@example.fr")
    subject = make_header(decode_header(ack_mail["Subject"]))
    assert str(subject) == "Nous avons bien reçu votre message"


class FlakyBackend(LocmemBackend):
    """Locmem, except that chosen calls fail, and it checks what the runner holds."""

    failures: list[Exception] = []
    during_send = None
    transaction_open: list[bool] = []

    def send_messages(self, messages):
        FlakyBackend.transaction_open.append(db.session().in_transaction())
        if FlakyBackend.failures:
            raise FlakyBackend.failures.pop(0)
        hook, FlakyBackend.during_send = FlakyBackend.during_send, None
        if hook:
            hook()
        return super().send_messages(messages)


@pytest.fixture
def flaky_app(tmp_path: Path) -> Iterator[Flask]:
    FlakyBackend.failures = []
    FlakyBackend.during_send = None
    FlakyBackend.transaction_open = []
    app = make_app(tmp_path, MAIL_BACKEND=FlakyBackend, OUTBOX_MAX_ATTEMPTS=3)
    app.extensions["mailman"].outbox = []
    yield app
    _drop(app)


def delivered(app: Flask) -> list:
    return app.extensions["mailman"].outbox


def test_no_transaction_is_open_while_talking_to_the_mail_server(flaky_app):
    post_contact(flaky_app.test_client())
    other_runner: list = []

    def concurrent_runner() -> None:
        # Another `outbox send` starting mid-send: it can write (no lock is held),
        # and it takes the other message, never the one in flight.
        def run() -> None:
            with flaky_app.app_context():
                other_runner.append(send_due())

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(timeout=30)

    FlakyBackend.during_send = concurrent_runner
    with flaky_app.app_context():
        report = send_due()
    assert report.sent == 1 and other_runner[0].sent == 1
    assert FlakyBackend.transaction_open == [False, False]
    assert len(delivered(flaky_app)) == 2
    assert {m.to[0] for m in delivered(flaky_app)} == {
        "camille@example.fr",
        flaky_app.config["HOUSE_NOTIFICATION_ADDRESS"],
    }
    assert {row.status for row in outbox_rows(flaky_app).values()} == {"sent"}


def test_a_failed_send_is_retried_once_and_never_duplicated(flaky_app, time_machine):
    time_machine.move_to(T0, tick=False)
    post_contact(flaky_app.test_client())
    FlakyBackend.failures = [smtplib.SMTPDataError(451, b"try again later")]
    with flaky_app.app_context():
        first = send_due()
        # A 4xx answer is about this message only: the batch goes on.
        assert (first.sent, first.retrying) == (1, 1)
        assert send_due().attempted == 0
        time_machine.move_to(T0 + timedelta(seconds=60), tick=False)
        assert send_due().sent == 1
        assert send_due().attempted == 0
    assert len(delivered(flaky_app)) == 2
    assert {row.attempts for row in outbox_rows(flaky_app).values()} == {1, 2}


def test_back_off_doubles_then_gives_up(flaky_app, time_machine):
    time_machine.move_to(T0, tick=False)
    with flaky_app.app_context(), write_transaction():
        enqueue(kind="test", to="a@example.fr", subject="Hi", body="Body")
    FlakyBackend.failures = [ConnectionRefusedError(111, "refused")] * 3
    with flaky_app.app_context():
        send_due()
        row = outbox_rows(flaky_app)["test"]
        assert row.next_attempt_at == T0 + timedelta(seconds=60)
        time_machine.move_to(row.next_attempt_at, tick=False)
        send_due()
        row = outbox_rows(flaky_app)["test"]
        assert row.next_attempt_at == T0 + timedelta(seconds=60 + 120)
        time_machine.move_to(row.next_attempt_at, tick=False)
        report = send_due()
    row = outbox_rows(flaky_app)["test"]
    assert report.failed == 1
    assert (row.status, row.attempts) == ("failed", 3)
    assert "ConnectionRefusedError" in row.last_error
    assert delivered(flaky_app) == []


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (
            smtplib.SMTPRecipientsRefused({"a@example.fr": (550, b"no such user")}),
            "failed",
        ),
        (
            smtplib.SMTPRecipientsRefused({"a@example.fr": (452, b"mailbox full")}),
            "pending",
        ),
        (smtplib.SMTPSenderRefused(553, b"not allowed", "contact@"), "failed"),
        (smtplib.SMTPDataError(421, b"closing"), "pending"),
        (TimeoutError("timed out"), "pending"),
    ],
)
def test_5xx_answers_are_final_and_the_rest_retried(flaky_app, error, status):
    with flaky_app.app_context(), write_transaction():
        enqueue(kind="test", to="a@example.fr", subject="Hi", body="Body")
    FlakyBackend.failures = [error]
    with flaky_app.app_context():
        report = send_due()
    assert "a@example.fr" not in " ".join(report.errors)  # logged without the address
    row = outbox_rows(flaky_app)["test"]
    assert row.status == status
    assert row.last_error.startswith(type(error).__name__)


@pytest.mark.parametrize(
    "fields",
    [
        {"to": "a@example.fr\r\nBcc: victim@evil.example"},
        {"to": "a@example.fr", "subject": "Hello\r\nBcc: victim@evil.example"},
        {"to": "a@example.fr", "reply_to": "b@example.fr\nBcc: victim@evil.example"},
    ],
)
def test_header_injection_that_got_through_is_refused_by_the_mail_layer(
    flaky_app, fields
):
    with flaky_app.app_context(), write_transaction():
        enqueue(kind="test", **{"subject": "Hi", "body": "Body", **fields})
    result = send(flaky_app)
    assert result.exit_code == 1
    assert "message 1: BadHeaderError" in result.output
    assert "evil" not in result.output  # the attacker's text stays out of the logs
    row = outbox_rows(flaky_app)["test"]
    assert (row.status, row.attempts) == ("failed", 1)
    assert delivered(flaky_app) == []
    assert "0 sent" in send(flaky_app).output  # not retried


def test_a_claim_abandoned_by_a_dead_runner_is_taken_again(flaky_app, time_machine):
    time_machine.move_to(T0, tick=False)
    with flaky_app.app_context(), write_transaction():
        for kind in ("stale", "fresh"):
            enqueue(kind=kind, to="a@example.fr", subject=kind, body="Body")
    with flaky_app.app_context(), write_transaction():
        for kind, minutes in (("stale", 16), ("fresh", 1)):
            db.session.execute(
                sa.update(OutboxMessage)
                .where(OutboxMessage.kind == kind)
                .values(
                    status="sending",
                    claim_token="dead-runner",
                    claimed_at=T0 - timedelta(minutes=minutes),
                    attempts=1,
                )
            )
    with flaky_app.app_context():
        assert send_due().sent == 1
    rows = outbox_rows(flaky_app)
    assert (rows["stale"].status, rows["stale"].attempts) == ("sent", 2)
    assert rows["fresh"].status == "sending"  # its runner may still be talking


def test_retry_delay_is_capped(app):
    with app.app_context():
        delays = [retry_delay(n).total_seconds() for n in range(1, 12)]
    assert delays[:4] == [60, 120, 240, 480]
    assert max(delays) == app.config["OUTBOX_RETRY_MAX_SECONDS"] == 6 * 3600


def test_development_back_end_writes_one_private_eml_file_per_message(tmp_path):
    outbox_dir = tmp_path / "outbox"
    app = make_app(tmp_path, MAIL_BACKEND=EML_BACKEND, MAIL_FILE_PATH=str(outbox_dir))
    try:
        post_contact(app.test_client(), "en")
        result = send(app)
    finally:
        _drop(app)
    assert result.exit_code == 0, result.output
    assert f"written as .eml files in {outbox_dir}" in result.output
    files = sorted(outbox_dir.glob("*.eml"))
    assert len(files) == 2
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
    subjects = {email.message_from_bytes(f.read_bytes())["Subject"] for f in files}
    assert "We have received your message" in subjects


def test_the_back_end_follows_the_settings():
    assert default_backend({"TESTING": True, "MAIL_SERVER": "smtp.example"}) == "locmem"
    assert default_backend({"MAIL_SERVER": "smtp.example"}) == "smtp"
    assert default_backend({"MAIL_SERVER": None}) == EML_BACKEND
    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    assert app.config["MAIL_BACKEND"] == EML_BACKEND
    assert app.config["MAIL_FILE_PATH"] == str(Path(app.instance_path) / "outbox")


def test_outbox_status_counts_each_state(flaky_app):
    post_contact(flaky_app.test_client())
    result = flaky_app.test_cli_runner().invoke(args=["outbox", "status"])
    assert result.output.strip() == "pending: 2, sending: 0, sent: 0, failed: 0"
