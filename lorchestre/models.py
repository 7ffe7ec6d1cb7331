"""Every table of the application, in SQLAlchemy 2.0 typed style."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .database import UTCDateTime, utcnow
from .extensions import db


class BannerText(db.Model):
    """One distinct banner wording, per language and policy version, keyed by its SHA-256."""

    __tablename__ = "banner_text"

    sha256: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    policy_version: Mapped[str] = mapped_column(sa.String(32))
    locale: Mapped[str] = mapped_column(sa.String(2))
    text: Mapped[str] = mapped_column(sa.Text)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConsentRecord(db.Model):
    """One append-only entry of the consent ledger (spec §5); never updated."""

    __tablename__ = "consent_record"
    __table_args__ = (
        sa.Index("ix_consent_record_consent_id_seq", "consent_id", "seq"),
        sa.Index("ix_consent_record_recorded_at", "recorded_at"),
    )

    seq: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=False,
    )
    consent_id: Mapped[str] = mapped_column(sa.String(43))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(sa.String(16))
    analytics: Mapped[bool] = mapped_column(sa.Boolean)
    advertising: Mapped[bool] = mapped_column(sa.Boolean)
    personalization: Mapped[bool] = mapped_column(sa.Boolean)
    policy_version: Mapped[str] = mapped_column(sa.String(32))
    banner_sha256: Mapped[str] = mapped_column(sa.String(64))
    locale: Mapped[str] = mapped_column(sa.String(2))
    channel: Mapped[str] = mapped_column(sa.String(4))
    gpc: Mapped[bool] = mapped_column(sa.Boolean)
    prev_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    hash: Mapped[str] = mapped_column(sa.String(64), unique=True)


class LedgerCheckpoint(db.Model):
    """Where a retention purge cut the ledger: the last purged record, so the rest verifies."""

    __tablename__ = "ledger_checkpoint"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_purged_seq: Mapped[int] = mapped_column(sa.BigInteger)
    last_purged_hash: Mapped[str] = mapped_column(sa.String(64))
    purged_count: Mapped[int] = mapped_column(sa.BigInteger)


class Lead(db.Model):
    """A person who wrote to the house: one per e-mail address (spec §6)."""

    __tablename__ = "lead"
    __table_args__ = (
        sa.CheckConstraint("status IN ('prospect', 'client')", name="status"),
        sa.Index("ix_lead_status_last_interaction_at", "status", "last_interaction_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Random, for links in e-mails: a signed token carries this, never the address.
    public_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    # The address as last typed (normalised), used to write back...
    email: Mapped[str] = mapped_column(sa.String(320))
    # ...and its case-folded form, which is what makes two submissions the same lead.
    email_key: Mapped[str] = mapped_column(sa.String(320), unique=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="prospect")
    language: Mapped[str] = mapped_column(sa.String(2))
    name: Mapped[str] = mapped_column(sa.String(200))
    phone: Mapped[str | None] = mapped_column(sa.String(64))
    company: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_interaction_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    marketing_opt_in: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    marketing_opt_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    marketing_wording_version: Mapped[str | None] = mapped_column(sa.String(32))
    marketing_opt_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ContactMessage(db.Model):
    """One message sent through the contact form, attached to its lead."""

    __tablename__ = "contact_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(
        sa.ForeignKey("lead.id", ondelete="CASCADE"), index=True
    )
    body: Mapped[str] = mapped_column(sa.Text)
    language: Mapped[str] = mapped_column(sa.String(2))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    lead: Mapped[Lead] = relationship()


class MarketingConsentEvent(db.Model):
    """One opt-in or opt-out of marketing e-mails: the history the rights desk shows."""

    __tablename__ = "marketing_consent_event"
    __table_args__ = (
        sa.CheckConstraint("event IN ('opt_in', 'opt_out')", name="event"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(
        sa.ForeignKey("lead.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(sa.String(8))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # contact_form, unsubscribe_link, one_click (RFC 8058), rights_desk...
    channel: Mapped[str] = mapped_column(sa.String(32))
    language: Mapped[str] = mapped_column(sa.String(2))
    wording_version: Mapped[str | None] = mapped_column(sa.String(32))

    lead: Mapped[Lead] = relationship()


class OutboxMessage(db.Model):
    """An e-mail waiting for, or done with, delivery by `flask outbox send`."""

    __tablename__ = "outbox_message"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'sent', 'failed')", name="status"
        ),
        sa.Index(
            "ix_outbox_message_status_next_attempt_at", "status", "next_attempt_at"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Erasing a lead erases the mails about them too (they hold the same data).
    lead_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("lead.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(sa.String(32))
    to_address: Mapped[str] = mapped_column(sa.String(320))
    reply_to: Mapped[str | None] = mapped_column(sa.String(320))
    subject: Mapped[str] = mapped_column(sa.String(255))
    body: Mapped[str] = mapped_column(sa.Text)
    headers: Mapped[dict | None] = mapped_column(sa.JSON)
    # Fixed when queued, so a retried message keeps its identity.
    message_id: Mapped[str] = mapped_column(sa.String(255), unique=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(sa.String(32))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(sa.String(500))

    lead: Mapped[Lead | None] = relationship()


class RetentionRun(db.Model):
    """One run of `flask retention run`, with its counts, kept for the DPO."""

    __tablename__ = "retention_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    dry_run: Mapped[bool] = mapped_column(sa.Boolean)
    cutoff: Mapped[datetime] = mapped_column(UTCDateTime)
    prospects_erased: Mapped[int] = mapped_column(sa.Integer)
    messages_deleted: Mapped[int] = mapped_column(sa.Integer)
    consent_events_deleted: Mapped[int] = mapped_column(sa.Integer)
    outbox_deleted: Mapped[int] = mapped_column(sa.Integer)
    outbox_expired: Mapped[int] = mapped_column(sa.Integer)
    clients_kept: Mapped[int] = mapped_column(sa.Integer)
    # Closed rights requests past their proof period; empty for runs before it existed.
    rights_requests_deleted: Mapped[int | None] = mapped_column(sa.Integer)


class StaffUser(UserMixin, db.Model):
    """A member of staff who may sign in to /staff/ (roles: marketing, dpo, admin)."""

    __tablename__ = "staff_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(16))
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    # Part of every session cookie; bumping it revokes every session of this account.
    session_version: Mapped[int] = mapped_column(sa.Integer, default=1)
    totp_secret: Mapped[str | None] = mapped_column(sa.String(64))
    # Last accepted TOTP time step, so a code cannot be replayed within its window.
    totp_last_step: Mapped[int | None] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def is_active(self) -> bool:
        """Flask-Login: a disabled account cannot sign in or keep a session."""
        return bool(self.active)

    def get_id(self) -> str:
        """Flask-Login: the session holds the account and its session version."""
        return f"{self.id}:{self.session_version}"


class StaffAuditEvent(db.Model):
    """Who did what, when, in the staff area: append-only, never updated."""

    __tablename__ = "staff_audit_event"

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff_user.id"), index=True
    )
    # The account's address when the event happened ("cli" for the command line).
    actor: Mapped[str] = mapped_column(sa.String(254))
    action: Mapped[str] = mapped_column(sa.String(48))
    target: Mapped[str] = mapped_column(sa.String(255), default="")
    detail: Mapped[dict | None] = mapped_column(sa.JSON)


class ConsentDailyCount(db.Model):
    """Daily rollup of the ledger for the staff statistics: counts only, no consent ID."""

    __tablename__ = "consent_daily_count"

    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    action: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    locale: Mapped[str] = mapped_column(sa.String(2), primary_key=True)
    gpc: Mapped[bool] = mapped_column(sa.Boolean, primary_key=True)
    analytics: Mapped[bool] = mapped_column(sa.Boolean, primary_key=True)
    advertising: Mapped[bool] = mapped_column(sa.Boolean, primary_key=True)
    personalization: Mapped[bool] = mapped_column(sa.Boolean, primary_key=True)
    count: Mapped[int] = mapped_column(sa.BigInteger)


class ConsentRollupMark(db.Model):
    """How far the daily rollup goes: every UTC day before ``rolled_until`` is counted."""

    __tablename__ = "consent_rollup_mark"

    id: Mapped[int] = mapped_column(primary_key=True)
    rolled_until: Mapped[date] = mapped_column(sa.Date)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RightsRequest(db.Model):
    """One data-subject request (GDPR arts. 15-21): the register the DPO answers from.

    The register never holds the e-mail address: ``address_hash`` is a keyed hash of
    it, enough to limit and audit requests per address, useless to read it back.
    """

    __tablename__ = "rights_request"
    __table_args__ = (
        sa.CheckConstraint(
            "kind IN ('access', 'rectify', 'erase', 'object')", name="kind"
        ),
        sa.CheckConstraint(
            "status IN ('received', 'awaiting_confirmation', 'done', 'expired', "
            "'refused')",
            name="status",
        ),
        sa.CheckConstraint("channel IN ('desk', 'staff')", name="channel"),
        sa.Index(
            "ix_rights_request_address_hash_received_at", "address_hash", "received_at"
        ),
        sa.Index("ix_rights_request_status_due_at", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Random, carried by the signed link in the confirmation e-mail.
    public_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(8))
    status: Mapped[str] = mapped_column(sa.String(24))
    # desk: the self-service page; staff: entered by the DPO (a letter, an e-mail).
    channel: Mapped[str] = mapped_column(sa.String(8))
    language: Mapped[str] = mapped_column(sa.String(2))
    address_hash: Mapped[str] = mapped_column(sa.String(64))
    # Who the request is about while they are in the CRM; erasure empties it.
    lead_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("lead.id", ondelete="SET NULL"), index=True
    )
    # A consent ID the visitor chose to give, for the access report; forgotten once
    # the request is closed, so the register does not tie a browser to a person.
    consent_id: Mapped[str | None] = mapped_column(sa.String(43))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    extended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    extension_reason: Mapped[str | None] = mapped_column(sa.String(500))
    link_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    link_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set once, by the confirmation that acts: what makes the link single-use.
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the request was closed: done, refused or expired.
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refusal_reason: Mapped[str | None] = mapped_column(sa.String(500))
