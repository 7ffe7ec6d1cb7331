"""Retention: prospects erased 3 years after their last interaction; lead erasure."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from .database import utcnow, write_transaction
from .extensions import db
from .models import (
    ContactMessage,
    Lead,
    MarketingConsentEvent,
    OutboxMessage,
    RetentionRun,
    RightsRequest,
)
from .policy import PROSPECT_RETENTION_YEARS, RIGHTS_REGISTER_YEARS

RETENTION_LOCK = "retention"
BATCH_SIZE = 200


@dataclass
class ErasureCounts:
    """Rows removed by erasing one or more leads."""

    leads: int = 0
    messages: int = 0
    consent_events: int = 0
    outbox_messages: int = 0

    def __iadd__(self, other: ErasureCounts) -> ErasureCounts:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self


def erase_lead(lead: Lead) -> ErasureCounts:
    """Delete a lead and everything held about them: messages, consent history, e-mails.

    The caller owns the transaction (``with write_transaction(): erase_lead(lead)``),
    so the rights desk can mark its request done in the same commit. Nothing personal
    remains afterwards; only the counts returned here may be logged.
    """
    lead_id = lead.id
    counts = ErasureCounts()
    counts.messages = _delete(
        sa.delete(ContactMessage).where(ContactMessage.lead_id == lead_id)
    )
    counts.consent_events = _delete(
        sa.delete(MarketingConsentEvent).where(MarketingConsentEvent.lead_id == lead_id)
    )
    counts.outbox_messages = _delete(
        sa.delete(OutboxMessage).where(OutboxMessage.lead_id == lead_id)
    )
    counts.leads = _delete(sa.delete(Lead).where(Lead.id == lead_id))
    return counts


def _delete(statement: sa.Delete) -> int:
    return db.session.execute(
        statement, execution_options={"synchronize_session": "fetch"}
    ).rowcount


def subtract_years(moment: datetime, years: int) -> datetime:
    """The same instant ``years`` calendar years earlier; 29 February becomes 28."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February of a leap year, in a year without one
        return moment.replace(year=moment.year - years, day=28)


def kept_until(lead: Lead) -> datetime | None:
    """Until when a prospect is kept (the run after it erases them); None for a client.

    The mirror of retention_cutoff(): 3 calendar years after the last interaction,
    29 February becoming 28 February. A client is kept while the contract runs.
    """
    if lead.status != "prospect":
        return None
    return subtract_years(lead.last_interaction_at, -PROSPECT_RETENTION_YEARS)


def retention_cutoff(now: datetime) -> datetime:
    """Prospects whose last interaction is strictly before this instant are due.

    A last interaction exactly 3 years ago is still kept. One on 29 February is kept
    through 28 February three years later and is due from 1 March, as a French time
    limit in years ends on the last day of the month when the day does not exist.
    """
    return subtract_years(now, PROSPECT_RETENTION_YEARS)


def _due_prospects(cutoff: datetime) -> sa.Select:
    return sa.select(Lead).where(
        Lead.status == "prospect", Lead.last_interaction_at < cutoff
    )


@dataclass
class RetentionReport:
    """What a run did, or would do with --dry-run."""

    dry_run: bool
    started_at: datetime
    cutoff: datetime
    erased: ErasureCounts
    clients_kept: int
    outbox_keep_days: int
    outbox_expired: int
    register_entries_deleted: int = 0


def run_retention(*, dry_run: bool = False) -> RetentionReport:
    """Erase the prospects due, expire old delivered mails, record the run for the DPO.

    Idempotent: a second run right after the first finds nothing to do. Each batch is
    re-selected under the write lock, so a prospect who writes in again during the run
    is not erased.
    """
    started_at = utcnow()
    cutoff = retention_cutoff(started_at)
    keep_days = current_app.config["OUTBOX_KEEP_DAYS"]
    outbox_cutoff = started_at - timedelta(days=keep_days)
    register_cutoff = subtract_years(started_at, RIGHTS_REGISTER_YEARS)
    if dry_run:
        erased = _count_due(cutoff)
        expired = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(OutboxMessage)
            .where(_expired_mail(outbox_cutoff))
        )
        register_deleted = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(RightsRequest)
            .where(_expired_register_entry(register_cutoff))
        )
    else:
        erased = ErasureCounts()
        while True:
            with write_transaction(lock=RETENTION_LOCK):
                batch = db.session.scalars(
                    _due_prospects(cutoff)
                    .order_by(Lead.id)
                    .limit(BATCH_SIZE)
                    .with_for_update()
                ).all()
                for lead in batch:
                    erased += erase_lead(lead)
            if len(batch) < BATCH_SIZE:
                break
        with write_transaction(lock=RETENTION_LOCK):
            expired = _delete(
                sa.delete(OutboxMessage).where(_expired_mail(outbox_cutoff))
            )
            register_deleted = _delete(
                sa.delete(RightsRequest).where(_expired_register_entry(register_cutoff))
            )
    clients_kept = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(Lead)
        .where(Lead.status == "client", Lead.last_interaction_at < cutoff)
    )
    report = RetentionReport(
        dry_run,
        started_at,
        cutoff,
        erased,
        clients_kept,
        keep_days,
        expired,
        register_deleted,
    )
    _record_run(report)
    return report


def _expired_mail(outbox_cutoff: datetime) -> sa.ColumnElement[bool]:
    """Mails delivered, or given up on, long ago: their copy is no longer needed."""
    return sa.or_(
        sa.and_(OutboxMessage.status == "sent", OutboxMessage.sent_at < outbox_cutoff),
        sa.and_(
            OutboxMessage.status == "failed", OutboxMessage.created_at < outbox_cutoff
        ),
    )


def _expired_register_entry(cutoff: datetime) -> sa.ColumnElement[bool]:
    """Rights requests closed long enough ago that the proof of an answer has lapsed."""
    return sa.and_(
        RightsRequest.status.in_(("done", "refused", "expired")),
        RightsRequest.completed_at < cutoff,
    )


def _count_due(cutoff: datetime) -> ErasureCounts:
    """What erasing the due prospects would remove, without removing it."""
    due_ids = _due_prospects(cutoff).with_only_columns(Lead.id).scalar_subquery()

    def count(model: type[db.Model]) -> int:
        return db.session.scalar(
            sa.select(sa.func.count())
            .select_from(model)
            .where(model.lead_id.in_(due_ids))
        )

    return ErasureCounts(
        leads=db.session.scalar(
            sa.select(sa.func.count()).select_from(_due_prospects(cutoff).subquery())
        ),
        messages=count(ContactMessage),
        consent_events=count(MarketingConsentEvent),
        outbox_messages=count(OutboxMessage),
    )


def _record_run(report: RetentionReport) -> None:
    """Keep the counts of this run (never who) for the DPO."""
    with write_transaction():
        db.session.add(
            RetentionRun(
                started_at=report.started_at,
                finished_at=utcnow(),
                dry_run=report.dry_run,
                cutoff=report.cutoff,
                prospects_erased=report.erased.leads,
                messages_deleted=report.erased.messages,
                consent_events_deleted=report.erased.consent_events,
                outbox_deleted=report.erased.outbox_messages,
                outbox_expired=report.outbox_expired,
                clients_kept=report.clients_kept,
                rights_requests_deleted=report.register_entries_deleted,
            )
        )
