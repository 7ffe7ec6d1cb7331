"""The DPO's leads list: literal search, pagination, one lead's file, the CSV rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask_sqlalchemy.pagination import Pagination

from ..extensions import db
from ..models import ContactMessage, Lead, MarketingConsentEvent
from ..policy import PROSPECT_RETENTION_YEARS
from ..textinput import normalise

PAGE_SIZE = 25
MAX_QUERY_LENGTH = 200
LIKE_ESCAPE = "\\"
CSV_HEADER = [
    "public_id",
    "name",
    "email",
    "company",
    "status",
    "language",
    "created_at",
    "last_interaction_at",
    "retention_due",
    "marketing_opt_in",
]


def clean_query(raw: str | None) -> str:
    """The search text as typed, trimmed and capped; never fails on odd input."""
    if not raw:
        return ""
    # Controls and lone surrogates dropped: whatever arrives gives a page, never a 500.
    text = "".join(ch for ch in normalise(raw) if ch.isprintable())
    return text.strip()[:MAX_QUERY_LENGTH]


def like_pattern(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, with %, _ and \\ taken literally."""
    escaped = (
        text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )
    return f"%{escaped.lower()}%"


def leads_query(query: str = "") -> sa.Select:
    """Leads matching ``query`` in name, e-mail or company (case-insensitive), newest
    interaction first; the text is bound as a parameter, never spliced into SQL."""
    statement = sa.select(Lead).order_by(
        Lead.last_interaction_at.desc(), Lead.id.desc()
    )
    if query:
        pattern = like_pattern(query)
        statement = statement.where(
            sa.or_(
                *(
                    sa.func.lower(column).like(pattern, escape=LIKE_ESCAPE)
                    for column in (Lead.name, Lead.email, Lead.company)
                )
            )
        )
    return statement


def leads_page(query: str, page: int) -> Pagination:
    """One page of the list (25 leads); a page past the end is empty, not an error."""
    return db.paginate(
        leads_query(query),
        page=max(1, page),
        per_page=PAGE_SIZE,
        max_per_page=PAGE_SIZE,
        error_out=False,
        count=True,
    )


def retention_due(lead: Lead) -> datetime:
    """When the prospect's data is due for erasure: last interaction + 3 years
    (29 February becomes 28, as in retention.py)."""
    moment = lead.last_interaction_at
    years = moment.year + PROSPECT_RETENTION_YEARS
    try:
        return moment.replace(year=years)
    except ValueError:
        return moment.replace(year=years, day=28)


def get_lead(public_id: str) -> Lead | None:
    """A lead by its public id, or None."""
    if len(public_id) > 64:
        return None
    return db.session.scalars(
        sa.select(Lead).where(Lead.public_id == public_id)
    ).first()


def lead_messages(lead: Lead) -> list[ContactMessage]:
    """The lead's messages, oldest first."""
    return list(
        db.session.scalars(
            sa.select(ContactMessage)
            .where(ContactMessage.lead_id == lead.id)
            .order_by(ContactMessage.created_at, ContactMessage.id)
        )
    )


def consent_history(lead: Lead) -> list[MarketingConsentEvent]:
    """The lead's marketing opt-ins and opt-outs, oldest first."""
    return list(
        db.session.scalars(
            sa.select(MarketingConsentEvent)
            .where(MarketingConsentEvent.lead_id == lead.id)
            .order_by(MarketingConsentEvent.occurred_at, MarketingConsentEvent.id)
        )
    )


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


def csv_rows(query: str) -> Iterator[list[Any]]:
    """Every lead matching ``query``, as CSV rows (cells neutralised by csv_lines)."""
    for lead in db.session.scalars(leads_query(query).execution_options(yield_per=500)):
        yield [
            lead.public_id,
            lead.name,
            lead.email,
            lead.company or "",
            lead.status,
            lead.language,
            _iso(lead.created_at),
            _iso(lead.last_interaction_at),
            retention_due(lead).date().isoformat(),
            lead.marketing_opt_in,
        ]
