"""Retention (spec §6, bad-inputs 34): prospects erased 3 years after last contact."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from flask import Flask

from lorchestre.contact.services import find_lead
from lorchestre.database import write_transaction
from lorchestre.extensions import db
from lorchestre.marketing.services import record_opt_in
from lorchestre.models import (
    ContactMessage,
    Lead,
    MarketingConsentEvent,
    OutboxMessage,
    RetentionRun,
)
from lorchestre.outbox import enqueue
from lorchestre.retention import erase_lead, retention_cutoff

from .contact_helpers import post_contact

NOW = datetime(2029, 6, 15, 12, 0, tzinfo=UTC)
TABLES = (Lead, ContactMessage, MarketingConsentEvent, OutboxMessage)


def add_lead(
    app: Flask,
    email: str,
    last_interaction: datetime,
    *,
    status: str = "prospect",
    opted_in: bool = True,
) -> int:
    """A lead with a message, an opt-in and an acknowledgement, last seen then."""
    with app.app_context(), write_transaction():
        lead = Lead(
            public_id=secrets.token_urlsafe(16),
            email=email,
            email_key=email,
            status=status,
            language="fr",
            name="Camille",
            created_at=last_interaction,
            last_interaction_at=last_interaction,
            marketing_opt_in=False,
        )
        db.session.add(lead)
        db.session.add(ContactMessage(lead=lead, body="Bonjour", language="fr"))
        if opted_in:
            record_opt_in(lead, channel="contact_form", language="fr")
        enqueue(kind="contact_ack", to=email, subject="Merci", body="Merci", lead=lead)
        db.session.flush()
        return lead.id


def lead_ids(app: Flask) -> set[int]:
    with app.app_context():
        return set(db.session.scalars(sa.select(Lead.id)))


def snapshot(app: Flask) -> dict[str, list[tuple]]:
    """Every row of the CRM tables, to compare before and after a run."""
    with app.app_context():
        return {
            model.__tablename__: sorted(
                tuple(row) for row in db.session.execute(sa.select(model.__table__))
            )
            for model in TABLES
        }


def run(app: Flask, *args: str):
    result = app.test_cli_runner().invoke(args=["retention", "run", *args])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize(
    ("now", "last_interaction", "erased"),
    [
        # exactly 3 years: still kept; one microsecond or one day more: erased
        (NOW, datetime(2026, 6, 15, 12, 0, tzinfo=UTC), False),
        (NOW, datetime(2026, 6, 15, 11, 59, 59, 999999, tzinfo=UTC), True),
        (NOW, datetime(2026, 6, 14, 12, 0, tzinfo=UTC), True),
        (NOW, datetime(2026, 6, 16, 12, 0, tzinfo=UTC), False),
        # 29 February: kept through 28 February three years on, due from 1 March
        (
            datetime(2027, 2, 28, 23, 59, 59, tzinfo=UTC),
            datetime(2024, 2, 29, 12, 0, tzinfo=UTC),
            False,
        ),
        (
            datetime(2027, 3, 1, 0, 0, tzinfo=UTC),
            datetime(2024, 2, 29, 12, 0, tzinfo=UTC),
            True,
        ),
        # run on 29 February: the cutoff is 28 February three years before
        (
            datetime(2028, 2, 29, 12, 0, tzinfo=UTC),
            datetime(2025, 2, 28, 12, 0, tzinfo=UTC),
            False,
        ),
        (
            datetime(2028, 2, 29, 12, 0, tzinfo=UTC),
            datetime(2025, 2, 27, 12, 0, tzinfo=UTC),
            True,
        ),
        # Paris changes clocks at 01:00 UTC that day; UTC arithmetic does not care
        (
            datetime(2029, 3, 25, 1, 30, tzinfo=UTC),
            datetime(2026, 3, 25, 1, 30, tzinfo=UTC),
            False,
        ),
        (
            datetime(2029, 10, 28, 1, 30, tzinfo=UTC),
            datetime(2026, 10, 28, 1, 29, 59, tzinfo=UTC),
            True,
        ),
    ],
)
def test_retention_boundaries(app, time_machine, now, last_interaction, erased):
    lead_id = add_lead(app, "camille@example.fr", last_interaction)
    time_machine.move_to(now, tick=False)
    result = run(app)
    assert f"prospects were erased: {int(erased)}" in result.output
    assert (lead_id in lead_ids(app)) is not erased


def test_cutoff_is_three_calendar_years_before():
    assert retention_cutoff(NOW) == datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
    leap = datetime(2028, 2, 29, 8, 0, tzinfo=UTC)
    assert retention_cutoff(leap) == datetime(2025, 2, 28, 8, 0, tzinfo=UTC)


def test_a_due_prospect_loses_everything_and_nobody_else_anything(app, time_machine):
    old = NOW - timedelta(days=3 * 366)
    due = add_lead(app, "due@example.fr", old)
    recent = add_lead(app, "recent@example.fr", NOW - timedelta(days=30))
    client = add_lead(app, "client@example.fr", old, status="client")
    with app.app_context(), write_transaction():  # an acknowledgement already sent
        db.session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.lead_id == due)
            .values(status="sent", sent_at=NOW - timedelta(days=1))
        )
    time_machine.move_to(NOW, tick=False)
    result = run(app)

    assert lead_ids(app) == {recent, client}
    with app.app_context():
        for model in (ContactMessage, MarketingConsentEvent, OutboxMessage):
            owners = set(db.session.scalars(sa.select(model.lead_id)))
            assert owners == {recent, client}, model.__tablename__
        runs = db.session.scalars(sa.select(RetentionRun)).all()
    assert "prospects were erased: 1" in result.output
    assert "1 messages, 1 marketing-consent events and 1 e-mails" in result.output
    assert "clients kept past that date (contract running): 1" in result.output
    assert "run recorded for the DPO" in result.output
    [record] = runs
    assert (record.dry_run, record.started_at, record.cutoff) == (
        False,
        NOW,
        datetime(2026, 6, 15, 12, 0, tzinfo=UTC),
    )
    assert (
        record.prospects_erased,
        record.messages_deleted,
        record.consent_events_deleted,
        record.outbox_deleted,
        record.clients_kept,
    ) == (1, 1, 1, 1, 1)


def test_dry_run_says_what_it_would_do_and_changes_nothing(app, time_machine):
    add_lead(app, "due@example.fr", NOW - timedelta(days=4 * 365))
    add_lead(app, "recent@example.fr", NOW - timedelta(days=10))
    time_machine.move_to(NOW, tick=False)
    before = snapshot(app)
    result = run(app, "--dry-run")
    assert "(dry run: nothing changed)" in result.output
    assert "prospects would be erased: 1" in result.output
    assert "1 messages, 1 marketing-consent events and 1 e-mails" in result.output
    assert snapshot(app) == before
    with app.app_context():
        record = db.session.scalars(sa.select(RetentionRun)).one()
    assert record.dry_run is True and record.prospects_erased == 1


def test_a_second_run_changes_nothing(app, time_machine):
    for n in range(3):
        add_lead(app, f"due{n}@example.fr", NOW - timedelta(days=4 * 365 + n))
    add_lead(app, "recent@example.fr", NOW - timedelta(days=10))
    add_lead(app, "client@example.fr", NOW - timedelta(days=5000), status="client")
    time_machine.move_to(NOW, tick=False)
    assert "prospects were erased: 3" in run(app).output
    after_first = snapshot(app)
    second = run(app)
    assert "prospects were erased: 0" in second.output
    assert "0 messages, 0 marketing-consent events and 0 e-mails" in second.output
    assert snapshot(app) == after_first
    with app.app_context():
        runs = db.session.scalars(
            sa.select(RetentionRun).order_by(RetentionRun.id)
        ).all()
    assert [r.prospects_erased for r in runs] == [3, 0]


def test_old_delivered_mails_expire_but_queued_ones_stay(app, time_machine):
    lead = add_lead(app, "recent@example.fr", NOW - timedelta(days=10), opted_in=False)
    keep_days = app.config["OUTBOX_KEEP_DAYS"]
    cases = {
        "sent-old": ("sent", keep_days + 1),
        "sent-recent": ("sent", keep_days - 1),
        "failed-old": ("failed", keep_days + 1),
        "pending-old": ("pending", keep_days + 10),
    }
    with app.app_context(), write_transaction():
        db.session.execute(sa.delete(OutboxMessage))
        for kind, (status, age) in cases.items():
            when = NOW - timedelta(days=age)
            row = enqueue(kind=kind, to="x@example.fr", subject="s", body="b")
            row.lead_id, row.status, row.created_at = lead, status, when
            row.sent_at = when if status == "sent" else None
    time_machine.move_to(NOW, tick=False)
    result = run(app)
    assert f"past {keep_days} days were deleted: 2" in result.output
    with app.app_context():
        kinds = set(db.session.scalars(sa.select(OutboxMessage.kind)))
    assert kinds == {"sent-recent", "pending-old"}


def test_a_prospect_who_writes_again_starts_a_new_three_years(
    app, client, time_machine
):
    time_machine.move_to(NOW - timedelta(days=3 * 365 + 30), tick=False)
    post_contact(client)
    time_machine.move_to(NOW - timedelta(days=60), tick=False)
    post_contact(client, message="Me revoici")
    time_machine.move_to(NOW, tick=False)
    assert "prospects were erased: 0" in run(app).output
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 1


def test_erase_lead_is_what_the_rights_desk_calls(app, client):
    post_contact(client, marketing="y")
    post_contact(client, email="other@example.fr")
    with app.app_context():
        lead = find_lead("Camille@Example.fr")
        with write_transaction():
            counts = erase_lead(lead)
        assert find_lead("camille@example.fr") is None
        assert find_lead("other@example.fr") is not None
        remaining = {
            model.__tablename__: db.session.scalar(
                sa.select(sa.func.count()).select_from(model)
            )
            for model in TABLES
        }
    assert (
        counts.leads,
        counts.messages,
        counts.consent_events,
        counts.outbox_messages,
    ) == (1, 1, 1, 2)
    assert remaining == {
        "lead": 1,
        "contact_message": 1,
        "marketing_consent_event": 0,
        "outbox_message": 2,
    }
