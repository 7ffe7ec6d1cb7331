"""Marketing e-mails (CPCE L.34-5): versioned opt-in, unsubscribe, the messages."""

from __future__ import annotations

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from itsdangerous import BadData

from ..database import utcnow, write_transaction
from ..extensions import db
from ..models import Lead, MarketingConsentEvent, OutboxMessage
from ..outbox import enqueue, external_url, render_mail
from ..tokens import SALT_UNSUBSCRIBE, serializer

# The opt-in box's wording is what the visitor agrees to: change CONSENT_LABEL (or its
# French translation) and you must bump the version; tests/test_contact.py pins both.
CONSENT_WORDING_VERSION = "2026-11-25.1"
CONSENT_LABEL = _l(
    "I would like to receive news from L’ORCHESTRE PARFUM by e-mail (new fragrances, "
    "events). I can unsubscribe at any time with the link in every e-mail."
)

LIST_UNSUBSCRIBE_POST = "List-Unsubscribe=One-Click"  # RFC 8058


class MarketingNotAllowed(Exception):
    """The lead has not opted in (or has unsubscribed): no marketing e-mail may go."""


class InvalidUnsubscribeLink(Exception):
    """The link was not signed by us for unsubscribing."""


def record_opt_in(lead: Lead, *, channel: str, language: str) -> None:
    """Record consent to marketing e-mails in the caller's transaction.

    Ticking the box again with the same wording changes nothing; a new opt-in, or the
    same one under a new wording version, is dated and added to the history.
    """
    if (
        lead.marketing_opt_in
        and lead.marketing_wording_version == CONSENT_WORDING_VERSION
    ):
        return
    now = utcnow()
    lead.marketing_opt_in = True
    lead.marketing_opt_in_at = now
    lead.marketing_wording_version = CONSENT_WORDING_VERSION
    lead.marketing_opt_out_at = None
    db.session.add(
        MarketingConsentEvent(
            lead=lead,
            event="opt_in",
            occurred_at=now,
            channel=channel,
            language=language,
            wording_version=CONSENT_WORDING_VERSION,
        )
    )


def record_opt_out(lead: Lead, *, channel: str, language: str | None = None) -> bool:
    """Stop marketing e-mails at once (caller's transaction); False if already off.

    Marketing mails still waiting in the outbox are dropped too. Unsubscribing is not
    an interaction that extends retention, so ``last_interaction_at`` is left alone.
    """
    if not lead.marketing_opt_in:
        return False
    now = utcnow()
    lead.marketing_opt_in = False
    lead.marketing_opt_out_at = now
    db.session.add(
        MarketingConsentEvent(
            lead=lead,
            event="opt_out",
            occurred_at=now,
            channel=channel,
            language=language or lead.language,
        )
    )
    db.session.execute(
        sa.delete(OutboxMessage).where(
            OutboxMessage.lead_id == lead.id,
            OutboxMessage.kind == "marketing",
            OutboxMessage.status == "pending",
        )
    )
    return True


def unsubscribe_token(lead: Lead) -> str:
    """A signed, single-purpose token naming the lead by its random public ID only."""
    return serializer(SALT_UNSUBSCRIBE).dumps({"l": lead.public_id})


def unsubscribe_url(lead: Lead) -> str:
    """The one-click unsubscribe link, in the lead's language, on BASE_URL."""
    return external_url(
        "marketing.unsubscribe", lang_code=lead.language, token=unsubscribe_token(lead)
    )


def check_unsubscribe_token(token: str) -> str:
    """The public lead ID in a genuine token; raises InvalidUnsubscribeLink if not."""
    # No expiry: a newsletter read a year later must still let its reader leave.
    try:
        data = serializer(SALT_UNSUBSCRIBE).loads(token)
    except (BadData, UnicodeError, ValueError, TypeError) as exc:
        raise InvalidUnsubscribeLink from exc
    public_id = data.get("l") if isinstance(data, dict) else None
    if not isinstance(public_id, str) or not 0 < len(public_id) <= 32:
        raise InvalidUnsubscribeLink
    return public_id


def unsubscribe(public_id: str, *, channel: str, language: str) -> None:
    """Opt the lead out; a lead already erased or already out is left as it is."""
    with write_transaction():
        lead = db.session.scalars(
            sa.select(Lead).where(Lead.public_id == public_id).with_for_update()
        ).first()
        if lead is not None:
            record_opt_out(lead, channel=channel, language=language)


def queue_marketing_email(lead: Lead, *, subject: str, body: str) -> OutboxMessage:
    """Queue a marketing e-mail with the sender's identity and one-click unsubscribe.

    The caller owns the transaction. Raises MarketingNotAllowed without an opt-in.
    """
    if not lead.marketing_opt_in:
        raise MarketingNotAllowed(f"lead {lead.id} has not opted in")
    link = unsubscribe_url(lead)
    footer = render_mail(
        "mail/marketing_footer.txt", lead.language, unsubscribe_url=link
    )
    return enqueue(
        kind="marketing",
        to=lead.email,
        subject=subject,
        body=f"{body.rstrip()}\n\n{footer}",
        lead=lead,
        headers={
            "List-Unsubscribe": f"<{link}>",
            "List-Unsubscribe-Post": LIST_UNSUBSCRIBE_POST,
        },
    )


def consent_history(lead: Lead) -> list[MarketingConsentEvent]:
    """The lead's opt-ins and opt-outs, oldest first (for the rights desk)."""
    return list(
        db.session.scalars(
            sa.select(MarketingConsentEvent)
            .where(MarketingConsentEvent.lead_id == lead.id)
            .order_by(MarketingConsentEvent.occurred_at, MarketingConsentEvent.id)
        )
    )
