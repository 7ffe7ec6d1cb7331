"""Contact submissions: lead, message, opt-in and both e-mails, committed together."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _

from ..config import DEFAULT_LANGUAGE
from ..database import utcnow, write_transaction
from ..extensions import db
from ..marketing.services import record_opt_in, unsubscribe_url
from ..models import ContactMessage, Lead
from ..outbox import enqueue, external_url, render_mail
from ..textinput import InvalidEmail, normalise, parse_email
from .forms import ContactForm

SUBJECT_MAX = 255  # OutboxMessage.subject


@dataclass(frozen=True)
class ContactSubmission:
    """A validated, normalised contact form."""

    name: str
    email: str
    phone: str | None
    company: str | None
    message: str
    marketing: bool
    language: str

    @classmethod
    def from_form(cls, form: ContactForm, language: str) -> ContactSubmission:
        """Take the cleaned values out of a validated form."""
        return cls(
            name=form.name.data,
            email=form.email.data,
            phone=form.phone.data or None,
            company=form.company.data or None,
            message=form.message.data,
            marketing=bool(form.marketing.data),
            language=language,
        )


def find_lead(email: str) -> Lead | None:
    """The lead behind an address however it is typed (case, NFC/NFD), or None."""
    try:
        key = parse_email(normalise(email)).key
    except InvalidEmail:
        return None
    return db.session.scalars(sa.select(Lead).where(Lead.email_key == key)).first()


def submit_contact(submission: ContactSubmission) -> Lead:
    """Create or update the lead, store the message and queue both e-mails, atomically.

    Raises DatabaseUnavailable when nothing could be stored.
    """
    address = parse_email(submission.email)
    # The per-address lock makes two first messages from one address one lead on
    # PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises all writers.
    with write_transaction(lock=f"lead:{address.key}"):
        lead = db.session.scalars(
            sa.select(Lead).where(Lead.email_key == address.key).with_for_update()
        ).first()
        now = utcnow()
        if lead is None:
            lead = Lead(
                public_id=secrets.token_urlsafe(16),
                email_key=address.key,
                status="prospect",
                created_at=now,
                marketing_opt_in=False,
            )
            db.session.add(lead)
        lead.email = address.normalized
        lead.name = submission.name
        lead.language = submission.language
        lead.last_interaction_at = now
        # Blank this time does not mean "erase what I gave": that is the rights desk.
        if submission.phone:
            lead.phone = submission.phone
        if submission.company:
            lead.company = submission.company
        db.session.add(
            ContactMessage(
                lead=lead,
                body=submission.message,
                language=submission.language,
                created_at=now,
            )
        )
        if submission.marketing:
            record_opt_in(lead, channel="contact_form", language=submission.language)
        _queue_acknowledgement(lead, submission)
        _queue_notification(lead, submission)
    return lead


def _queue_acknowledgement(lead: Lead, submission: ContactSubmission) -> None:
    """Tell the visitor, in their language, that their message arrived.

    The mail repeats nothing the visitor typed: anyone can enter someone else's
    address, and the form must not become a relay for their text.
    """
    with force_locale(submission.language):
        subject = _("We have received your message")
    body = render_mail(
        "mail/contact_ack.txt",
        submission.language,
        opted_in=submission.marketing,
        unsubscribe_url=unsubscribe_url(lead) if submission.marketing else None,
        rights_url=external_url("rights.desk", lang_code=submission.language),
    )
    enqueue(kind="contact_ack", to=lead.email, subject=subject, body=body, lead=lead)


def _queue_notification(lead: Lead, submission: ContactSubmission) -> None:
    """Pass the message on to the house, with Reply-To set to the visitor."""
    address = current_app.config["HOUSE_NOTIFICATION_ADDRESS"]
    if not address:  # staff read leads elsewhere; nothing to send
        return
    with force_locale(DEFAULT_LANGUAGE):
        subject = _("New contact message from %(name)s", name=submission.name)
    body = render_mail(
        "mail/contact_notification.txt",
        DEFAULT_LANGUAGE,
        lead=lead,
        submission=submission,
    )
    enqueue(
        kind="contact_notification",
        to=address,
        reply_to=lead.email,
        subject=subject[:SUBJECT_MAX],
        body=body,
        lead=lead,
    )
