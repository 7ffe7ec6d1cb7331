"""Every table of the application, in SQLAlchemy 2.0 typed style."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

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
