"""The staff audit log: who did what, when; every access to personal data and every export."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask_sqlalchemy.pagination import Pagination

from ..database import write_transaction
from ..extensions import db
from ..models import StaffAuditEvent, StaffUser

CLI_ACTOR = "cli"


def add_event(
    action: str,
    *,
    actor: StaffUser | None = None,
    target: str = "",
    detail: dict[str, Any] | None = None,
) -> StaffAuditEvent:
    """Add an event to the caller's write transaction, so it commits with the action."""
    event = StaffAuditEvent(
        staff_id=actor.id if actor is not None else None,
        actor=actor.email if actor is not None else CLI_ACTOR,
        action=action,
        target=target[:255],
        detail=detail,
    )
    db.session.add(event)
    return event


def log_event(
    action: str,
    *,
    actor: StaffUser | None = None,
    target: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """Write one event in its own transaction (for reads and downloads)."""
    with write_transaction():
        add_event(action, actor=actor, target=target, detail=detail)


def events_page(page: int, per_page: int = 50) -> Pagination:
    """One page of the log, newest first."""
    query = sa.select(StaffAuditEvent).order_by(StaffAuditEvent.id.desc())
    return db.paginate(query, page=max(1, page), per_page=per_page, error_out=False)
