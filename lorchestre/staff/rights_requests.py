"""The DPO's register of rights requests: filtered pages, deadlines, counts, CSV rows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from flask_sqlalchemy.pagination import Pagination

from ..consent.ledger import format_timestamp
from ..extensions import db
from ..models import Lead, RightsRequest
from ..rights.services import KINDS, OPEN_STATUSES, PARIS, expire_stale

PAGE_SIZE = 25
# Open requests due within this many days are flagged, so none becomes overdue unseen.
DUE_SOON_DAYS = 7
VIEWS = ("open", "overdue", "closed", "all")
CSV_HEADER = [
    "number",
    "kind",
    "channel",
    "language",
    "status",
    "received_at",
    "due_at",
    "extended_at",
    "extension_reason",
    "link_sent_at",
    "completed_at",
    "refusal_reason",
    "in_crm",
]


def clean_view(raw: str | None) -> str:
    """One of VIEWS; anything else is the default, open requests."""
    return raw if raw in VIEWS else "open"


def clean_kind(raw: str | None) -> str | None:
    """One of the request types, or None for every type."""
    return raw if raw in KINDS else None


def paris_day(moment: datetime) -> date:
    """The calendar day of ``moment`` in Paris, where the legal time limits run."""
    return moment.astimezone(PARIS).date()


def is_open(entry: RightsRequest) -> bool:
    """Still waiting for an answer (received, or its link not yet confirmed)."""
    return entry.status in OPEN_STATUSES


def days_left(entry: RightsRequest, now: datetime) -> int | None:
    """Whole Paris days until an open request is due (negative once overdue); None if closed."""
    if not is_open(entry):
        return None
    return (paris_day(entry.due_at) - paris_day(now)).days


def deadline_state(entry: RightsRequest, now: datetime) -> str:
    """``overdue``, ``soon``, ``open`` or ``closed``: how urgent the request is."""
    if not is_open(entry):
        return "closed"
    if entry.due_at < now:
        return "overdue"
    if entry.due_at < now + timedelta(days=DUE_SOON_DAYS):
        return "soon"
    return "open"


def register_query(view: str, kind: str | None, now: datetime) -> sa.Select:
    """Requests of one view and type: open and overdue ones by deadline, others newest first."""
    statement = sa.select(RightsRequest)
    if view in ("open", "overdue"):
        statement = statement.where(RightsRequest.status.in_(OPEN_STATUSES))
        if view == "overdue":
            statement = statement.where(RightsRequest.due_at < now)
        statement = statement.order_by(RightsRequest.due_at, RightsRequest.id)
    else:
        if view == "closed":
            statement = statement.where(RightsRequest.status.not_in(OPEN_STATUSES))
        statement = statement.order_by(
            RightsRequest.received_at.desc(), RightsRequest.id.desc()
        )
    if kind is not None:
        statement = statement.where(RightsRequest.kind == kind)
    return statement


def register_page(view: str, kind: str | None, page: int, now: datetime) -> Pagination:
    """One page of the register; links that ran out unused are marked expired first."""
    expire_stale(now)
    return db.paginate(
        register_query(view, kind, now),
        page=max(1, page),
        per_page=PAGE_SIZE,
        max_per_page=PAGE_SIZE,
        error_out=False,
        count=True,
    )


@dataclass(frozen=True)
class Summary:
    """What the DPO must see first: how many requests wait, and how many are late."""

    open: int
    due_soon: int
    overdue: int


def summary(now: datetime) -> Summary:
    """Counts of open, soon-due and overdue requests (two indexed counts)."""
    waiting = sa.select(sa.func.count()).where(RightsRequest.status.in_(OPEN_STATUSES))
    counts = db.session.execute(
        sa.select(
            waiting.scalar_subquery(),
            waiting.where(
                RightsRequest.due_at >= now,
                RightsRequest.due_at < now + timedelta(days=DUE_SOON_DAYS),
            ).scalar_subquery(),
            waiting.where(RightsRequest.due_at < now).scalar_subquery(),
        )
    ).one()
    return Summary(*counts)


def get_request(request_id: int) -> RightsRequest | None:
    """A register entry by its number, or None."""
    return db.session.get(RightsRequest, request_id)


def lead_public_id(entry: RightsRequest) -> str | None:
    """The public ID of the lead a request is about, while it is still in the CRM."""
    if entry.lead_id is None:
        return None
    return db.session.scalar(sa.select(Lead.public_id).where(Lead.id == entry.lead_id))


def _stamp(moment: datetime | None) -> str:
    return format_timestamp(moment) if moment else ""


def csv_rows(view: str, kind: str | None, now: datetime) -> Iterator[list[object]]:
    """The register for a view as CSV rows: dates and reasons, never an address."""
    expire_stale(now)
    for entry in db.session.scalars(
        register_query(view, kind, now).execution_options(yield_per=500)
    ):
        yield [
            entry.id,
            entry.kind,
            entry.channel,
            entry.language,
            entry.status,
            _stamp(entry.received_at),
            _stamp(entry.due_at),
            _stamp(entry.extended_at),
            entry.extension_reason or "",
            _stamp(entry.link_sent_at),
            _stamp(entry.completed_at),
            entry.refusal_reason or "",
            "true" if entry.lead_id is not None else "false",
        ]
