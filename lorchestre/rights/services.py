"""Rights desk: requests confirmed by e-mail link, acting on them once, the register.

Every request is answered the same way whether or not its address is known: the same
work happens in one transaction and only a known address, under its daily limit, is
sent an e-mail. The link carries a random request ID signed for this purpose alone
(never the address); the POST that confirms it sets ``used_at`` under a guard in the
transaction that acts, so two POSTs with one link act once.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from itsdangerous import BadData, SignatureExpired

from ..config import DEFAULT_LANGUAGE
from ..consent import services as consent_services
from ..consent.ledger import format_timestamp, row_to_record
from ..contact.services import find_lead
from ..database import utcnow, write_transaction
from ..extensions import db
from ..marketing.services import consent_history, record_opt_out
from ..models import ContactMessage, Lead, OutboxMessage, RightsRequest, StaffUser
from ..outbox import enqueue, external_url, render_mail
from ..policy import RIGHTS_REGISTER_YEARS
from ..retention import erase_lead as _erase_lead
from ..retention import kept_until, subtract_years
from ..staff.audit import add_event
from ..textinput import has_forbidden_characters, normalise, parse_email
from ..tokens import SALT_RIGHTS_DOWNLOAD, SALT_RIGHTS_REQUEST, serializer

KINDS = ("access", "rectify", "erase", "object")
STATUSES = ("received", "awaiting_confirmation", "done", "expired", "refused")
OPEN_STATUSES = ("received", "awaiting_confirmation")
REASON_MAX = 500  # RightsRequest.refusal_reason and extension_reason
TOKEN_MAX = 512  # a genuine link token is ~90 characters
# Legal time limits run in French local time (a request on 1 March at 00:30 in
# Paris is due on 1 April, although it was still 28 February in UTC).
PARIS = ZoneInfo("Europe/Paris")
# Why the desk closed a request without e-mailing anyone (shown to the DPO).
NO_DATA = "no data held for this address: no e-mail sent"
ADDRESS_LIMIT = "daily limit of e-mails for this address reached: no e-mail sent"
CONTROLLER = {
    "name": "L’ORCHESTRE PARFUM",
    "address": "28 rue Sedaine, 75001 Paris, France",
    "contact": "contact@lorchestreparfum.com",
}


# --- problems a link can have ---------------------------------------------------


class LinkProblem(Exception):
    """A link that must not act; ``state`` names the page that explains why."""

    state = "invalid"


class InvalidLink(LinkProblem):
    """Not signed by us for this purpose, altered, or for no request we can act on."""

    state = "invalid"


class ExpiredLink(LinkProblem):
    """Genuine, but older than its time limit."""

    state = "expired"


class UsedLink(LinkProblem):
    """Genuine, but its request has already been carried out."""

    state = "used"


class GoneLink(LinkProblem):
    """Genuine, but the data it was about has been erased in the meantime."""

    state = "gone"


# --- problems a register change can have (for the staff area) -------------------


class RegisterError(Exception):
    """A change to the register that the rules do not allow."""


class RequestNotFound(RegisterError):
    """No request has this ID."""


class RequestClosed(RegisterError):
    """The request is done, refused or expired: it can no longer change."""


class AlreadyExtended(RegisterError):
    """The deadline of a request can be extended only once."""


class ExtensionTooLate(RegisterError):
    """An extension must be decided, and told, within the first month."""


class InvalidReason(RegisterError):
    """A reason is required: one line, at most 500 characters."""


# --- dates, hashes and tokens ----------------------------------------------------


def add_months(moment: datetime, months: int) -> datetime:
    """The same Paris date ``months`` later; the month's last day when it has no such day."""
    local = moment.astimezone(PARIS)
    index = local.month - 1 + months
    year, month = local.year + index // 12, index % 12 + 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    return local.replace(year=year, month=month, day=day).astimezone(UTC)


def due_date(received_at: datetime, *, extended: bool = False) -> datetime:
    """One month after receipt, or three once extended by two months (GDPR art. 12(3))."""
    return add_months(received_at, 3 if extended else 1)


def register_kept_until(closed_at: datetime) -> datetime:
    """Until when a closed request stays in the register as proof it was answered."""
    return subtract_years(closed_at, -RIGHTS_REGISTER_YEARS)


def address_hash(address_key: str) -> str:
    """Keyed SHA-256 of an address key: the same for one address, unreadable without the key."""
    # A plain hash of an address is reversed by hashing a list of addresses; keyed by
    # the app's secret, a copy of the register alone reveals nothing.
    secret = current_app.config["SECRET_KEY"].encode()
    key = hashlib.sha256(b"lorchestre.rights-address.v1\0" + secret).digest()
    return hmac.new(key, address_key.encode(), hashlib.sha256).hexdigest()


def link_hours() -> int:
    """How long a confirmation link works, in hours, as the e-mail and pages say."""
    return current_app.config["RIGHTS_LINK_MAX_AGE"] // 3600


def link_token(public_id: str) -> str:
    """The signed token of the confirmation link: the request's random ID, nothing else."""
    return serializer(SALT_RIGHTS_REQUEST).dumps({"r": public_id})


def _load(token: str, salt: str, max_age: int) -> dict:
    """A token's payload, or the link problem it has."""
    if not token or len(token) > TOKEN_MAX:
        raise InvalidLink
    try:
        data = serializer(salt).loads(token, max_age=max_age)
    except SignatureExpired as exc:  # genuine (the signature is checked first), but old
        raise ExpiredLink from exc
    except (BadData, UnicodeError, ValueError, TypeError) as exc:
        raise InvalidLink from exc
    public_id = data.get("r") if isinstance(data, dict) else None
    if not isinstance(public_id, str) or not 0 < len(public_id) <= 32:
        raise InvalidLink
    return data


def check_link(token: str) -> str:
    """The request ID of a genuine, unexpired link; raises InvalidLink or ExpiredLink."""
    max_age = current_app.config["RIGHTS_LINK_MAX_AGE"]
    return _load(token, SALT_RIGHTS_REQUEST, max_age)["r"]


# --- receiving a request -----------------------------------------------------------


def submit_request(
    *, email: str, kind: str, language: str, consent_id: str | None = None
) -> None:
    """Register a request and, for a known address under its limit, e-mail the link.

    Known and unknown addresses go through the same steps (lookup, count, rendering
    of the e-mail) in one transaction; only the queueing differs, so neither the
    answer nor its timing tells the visitor whether an address is in our files.
    Raises DatabaseUnavailable when nothing could be stored.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown request type {kind!r}")
    address = parse_email(email)
    fingerprint = address_hash(address.key)
    config = current_app.config
    now = utcnow()
    # Serialises requests for one address, so parallel ones cannot beat the limit.
    with write_transaction(lock=f"rights-address:{fingerprint}"):
        lead = find_lead(address.normalized)
        links_sent = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(RightsRequest)
            .where(
                RightsRequest.address_hash == fingerprint,
                RightsRequest.link_sent_at > now - timedelta(days=1),
            )
        )
        entry = RightsRequest(
            public_id=secrets.token_urlsafe(16),
            kind=kind,
            status="received",
            channel="desk",
            language=language,
            address_hash=fingerprint,
            received_at=now,
            due_at=due_date(now),
        )
        db.session.add(entry)
        mail_language = lead.language if lead else language
        subject, body = _link_mail(entry, mail_language)
        if lead is None:
            _close(entry, "refused", now, reason=NO_DATA)
        elif links_sent >= config["RIGHTS_ADDRESS_LIMIT"]:
            _close(entry, "refused", now, reason=ADDRESS_LIMIT)
            current_app.logger.warning(
                "rights desk: daily limit reached for address %s, no e-mail sent",
                fingerprint[:16],
            )
        else:
            entry.lead_id = lead.id
            entry.consent_id = consent_id
            entry.status = "awaiting_confirmation"
            entry.link_sent_at = now
            entry.link_expires_at = now + timedelta(
                seconds=config["RIGHTS_LINK_MAX_AGE"]
            )
            enqueue(
                kind="rights_link", to=lead.email, subject=subject, body=body, lead=lead
            )


def _link_mail(entry: RightsRequest, language: str) -> tuple[str, str]:
    """Subject and body of the confirmation e-mail, in the reader's language."""
    with force_locale(language):
        subject = _("Confirm your request about your data")
    link = external_url(
        "rights.confirm", lang_code=language, token=link_token(entry.public_id)
    )
    body = render_mail(
        "mail/rights_link.txt", language, kind=entry.kind, link=link, hours=link_hours()
    )
    return subject, body


def _close(
    entry: RightsRequest, status: str, now: datetime, *, reason: str | None = None
) -> None:
    """Close a request; the consent ID it carried is no longer needed, so it goes."""
    entry.status = status
    entry.completed_at = now
    entry.consent_id = None
    entry.refusal_reason = reason


# --- opening and confirming a link -------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """A request whose link may act: what its confirmation page shows."""

    kind: str
    name: str
    phone: str | None
    company: str | None
    is_client: bool
    subscribed: bool


@dataclass(frozen=True)
class LeadChanges:
    """New contact details, validated like the contact form."""

    name: str
    phone: str | None
    company: str | None


@dataclass
class Outcome:
    """What a confirmed request did, for the page that says so."""

    kind: str
    report: dict[str, Any] | None = None
    download_grant: str | None = None
    changes: LeadChanges | None = None
    was_client: bool = False
    register_kept_until: datetime | None = None
    marketing_stopped: bool = False


def _find(public_id: str) -> RightsRequest | None:
    return db.session.scalars(
        sa.select(RightsRequest).where(RightsRequest.public_id == public_id)
    ).first()


def _check_usable(entry: RightsRequest | None, now: datetime) -> None:
    """Raise the problem that stops this request's link from acting, if any."""
    if entry is None or entry.link_sent_at is None:
        raise InvalidLink
    if entry.used_at is not None or entry.status == "done":
        raise UsedLink
    if entry.status == "expired" or entry.link_expires_at <= now:
        raise ExpiredLink
    if entry.status != "awaiting_confirmation":  # refused or closed by the DPO
        raise InvalidLink
    if entry.lead_id is None:
        raise GoneLink


def open_request(public_id: str) -> Pending:
    """What a link will do once confirmed; reads only (mail scanners GET links)."""
    entry = _find(public_id)
    _check_usable(entry, utcnow())
    lead = db.session.get(Lead, entry.lead_id)
    if lead is None:
        raise GoneLink
    return Pending(
        kind=entry.kind,
        name=lead.name,
        phone=lead.phone,
        company=lead.company,
        is_client=lead.status == "client",
        subscribed=lead.marketing_opt_in,
    )


def carry_out(public_id: str, changes: LeadChanges | None = None) -> Outcome:
    """Do what a confirmed request asks, once, and close it in the same transaction."""
    now = utcnow()
    with write_transaction():
        entry = _find(public_id)
        if entry is None:
            raise InvalidLink
        # The single-use guard: of two concurrent confirmations, only one finds
        # used_at empty (PostgreSQL re-checks the condition after the other commits;
        # SQLite runs them one after the other). Any error below undoes the claim.
        claimed = db.session.execute(
            sa.update(RightsRequest)
            .where(
                RightsRequest.id == entry.id,
                RightsRequest.used_at.is_(None),
                RightsRequest.status == "awaiting_confirmation",
                RightsRequest.link_expires_at > now,
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        db.session.refresh(entry)
        if claimed != 1:
            _check_usable(entry, now)
            raise UsedLink
        lead = db.session.get(Lead, entry.lead_id) if entry.lead_id else None
        if lead is None:
            raise GoneLink
        consent_id = entry.consent_id
        _close(entry, "done", now)
        outcome = _ACTIONS[entry.kind](entry, lead, now, consent_id, changes)
    # The DPO's trace of what was done: the register entry's number, never who.
    current_app.logger.info(
        "rights desk: request %s (%s) carried out", entry.id, entry.kind
    )
    return outcome


def _access(
    entry: RightsRequest,
    lead: Lead,
    now: datetime,
    consent_id: str | None,
    _changes: LeadChanges | None,
) -> Outcome:
    grant = serializer(SALT_RIGHTS_DOWNLOAD).dumps(
        {"r": entry.public_id, "c": consent_id}
    )
    return Outcome(
        kind="access", report=build_report(lead, consent_id), download_grant=grant
    )


def _rectify(
    entry: RightsRequest,
    lead: Lead,
    now: datetime,
    _consent_id: str | None,
    changes: LeadChanges | None,
) -> Outcome:
    if changes is None:
        raise ValueError("a rectification needs the new details")
    # Correcting one's details is not a new contact: the 3 years are not restarted.
    lead.name, lead.phone, lead.company = changes.name, changes.phone, changes.company
    return Outcome(kind="rectify", changes=changes)


def _erase(
    entry: RightsRequest,
    lead: Lead,
    now: datetime,
    _consent_id: str | None,
    _changes: LeadChanges | None,
) -> Outcome:
    was_client = lead.status == "client"
    # Copies of the person's messages already delivered to the house's mailbox are
    # out of our reach: tell the house which ones to delete (GDPR art. 19).
    delivered = list(
        db.session.scalars(
            sa.select(OutboxMessage.message_id).where(
                OutboxMessage.lead_id == lead.id,
                OutboxMessage.kind == "contact_notification",
                OutboxMessage.status.in_(("sent", "sending")),
            )
        )
    )
    # Every register entry about them keeps its dates, type and status, not the link.
    db.session.execute(
        sa.update(RightsRequest)
        .where(RightsRequest.lead_id == lead.id)
        .values(lead_id=None, consent_id=None)
        .execution_options(synchronize_session="fetch")
    )
    counts = _erase_lead(lead)
    current_app.logger.info(
        "rights desk: request %s erased %s lead, %s messages, %s marketing-consent "
        "events, %s e-mails",
        entry.id,
        counts.leads,
        counts.messages,
        counts.consent_events,
        counts.outbox_messages,
    )
    if delivered:
        _ask_house_to_delete(delivered, now)
    return Outcome(
        kind="erase",
        was_client=was_client,
        register_kept_until=register_kept_until(now),
    )


def _ask_house_to_delete(message_ids: list[str], now: datetime) -> None:
    """Queue the house a list of Message-IDs to delete; it names nobody."""
    address = current_app.config["HOUSE_NOTIFICATION_ADDRESS"]
    if not address:
        return
    with force_locale(DEFAULT_LANGUAGE):
        subject = _("Erasure request: messages to delete from the mailbox")
    body = render_mail(
        "mail/rights_erasure_notice.txt",
        DEFAULT_LANGUAGE,
        message_ids=message_ids,
        erased_at=now,
    )
    enqueue(kind="rights_erasure_notice", to=address, subject=subject, body=body)


def _object(
    entry: RightsRequest,
    lead: Lead,
    now: datetime,
    _consent_id: str | None,
    _changes: LeadChanges | None,
) -> Outcome:
    stopped = record_opt_out(lead, channel="rights_desk", language=entry.language)
    return Outcome(kind="object", marketing_stopped=stopped)


_ACTIONS: dict[str, Callable[..., Outcome]] = {
    "access": _access,
    "rectify": _rectify,
    "erase": _erase,
    "object": _object,
}


# --- the access report -------------------------------------------------------------


def build_report(lead: Lead, consent_id: str | None = None) -> dict[str, Any]:
    """Everything held about one lead, and nobody else, as JSON-ready data."""
    until = kept_until(lead)
    if until is None:
        rule = _("They are kept while our contract with you runs.")
    else:
        rule = _("They are erased 3 years after your last contact with us.")
    report: dict[str, Any] = {
        "generated_at": utcnow(),
        "controller": CONTROLLER,
        "contact_details": {
            "email": lead.email,
            "name": lead.name,
            "phone": lead.phone,
            "company": lead.company,
            "language": lead.language,
            "status": lead.status,
            "first_contact_at": lead.created_at,
            "last_contact_at": lead.last_interaction_at,
        },
        "retention": {"rule": rule, "kept_until": until.date() if until else None},
        "marketing_emails": {
            "subscribed": lead.marketing_opt_in,
            "subscribed_at": lead.marketing_opt_in_at,
            "wording_version": lead.marketing_wording_version,
            "unsubscribed_at": lead.marketing_opt_out_at,
            "history": [
                {
                    "event": event.event,
                    "at": event.occurred_at,
                    "channel": event.channel,
                    "language": event.language,
                    "wording_version": event.wording_version,
                }
                for event in consent_history(lead)
            ],
        },
        "messages": [
            {
                "sent_at": message.created_at,
                "language": message.language,
                "text": message.body,
            }
            for message in db.session.scalars(
                sa.select(ContactMessage)
                .where(ContactMessage.lead_id == lead.id)
                .order_by(ContactMessage.created_at, ContactMessage.id)
            )
        ],
        "emails": [
            {
                "kind": mail.kind,
                "subject": mail.subject,
                "queued_at": mail.created_at,
                "status": mail.status,
                "sent_at": mail.sent_at,
            }
            for mail in db.session.scalars(
                sa.select(OutboxMessage)
                .where(OutboxMessage.lead_id == lead.id)
                .order_by(OutboxMessage.created_at, OutboxMessage.id)
            )
        ],
        "rights_requests": [
            {
                "type": entry.kind,
                "received_at": entry.received_at,
                "status": entry.status,
                "due_at": entry.due_at,
                "completed_at": entry.completed_at,
            }
            for entry in db.session.scalars(
                sa.select(RightsRequest)
                .where(RightsRequest.lead_id == lead.id)
                .order_by(RightsRequest.received_at, RightsRequest.id)
            )
        ],
        "cookie_choices": None,
    }
    if consent_id:
        records = reversed(consent_services.history(consent_id, limit=10_000))
        report["cookie_choices"] = {
            "consent_id": consent_id,
            # Datetimes like the rest of the report; as JSON, exactly the ledger's form.
            "records": [
                row_to_record(row) | {"recorded_at": row.recorded_at} for row in records
            ],
        }
    return report


def report_json_default(value: Any) -> str:
    """JSON for the dates in a report: UTC instants with Z, calendar dates as ISO."""
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def download_report(grant: str) -> dict[str, Any]:
    """The report again, for the download button of the page that confirmed it."""
    data = _load(
        grant, SALT_RIGHTS_DOWNLOAD, current_app.config["RIGHTS_DOWNLOAD_MAX_AGE"]
    )
    consent_id = data.get("c")
    if consent_id is not None and not (
        isinstance(consent_id, str) and consent_services.valid_consent_id(consent_id)
    ):
        raise InvalidLink
    entry = _find(data["r"])
    if entry is None or entry.kind != "access" or entry.status != "done":
        raise InvalidLink
    lead = db.session.get(Lead, entry.lead_id) if entry.lead_id else None
    if lead is None:
        raise GoneLink
    return build_report(lead, consent_id)


# --- the register, for the DPO ----------------------------------------------------


def expire_stale(now: datetime | None = None) -> int:
    """Close the requests whose link ran out unused; returns how many."""
    now = now or utcnow()
    with write_transaction():
        return db.session.execute(
            sa.update(RightsRequest)
            .where(
                RightsRequest.status == "awaiting_confirmation",
                RightsRequest.link_expires_at <= now,
            )
            .values(
                status="expired",
                completed_at=RightsRequest.link_expires_at,
                consent_id=None,
            )
            .execution_options(synchronize_session=False)
        ).rowcount


def list_requests(
    *,
    status: str | None = None,
    kind: str | None = None,
    open_only: bool = False,
    limit: int | None = None,
) -> list[RightsRequest]:
    """The register, newest first; links that ran out are marked expired first."""
    expire_stale()
    query = sa.select(RightsRequest).order_by(
        RightsRequest.received_at.desc(), RightsRequest.id.desc()
    )
    if status is not None:
        query = query.where(RightsRequest.status == status)
    if kind is not None:
        query = query.where(RightsRequest.kind == kind)
    if open_only:
        query = query.where(RightsRequest.status.in_(OPEN_STATUSES))
    if limit is not None:
        query = query.limit(limit)
    return list(db.session.scalars(query))


def register_request(
    *,
    kind: str,
    email: str,
    language: str,
    received_at: datetime | None = None,
    actor: StaffUser | None = None,
) -> RightsRequest:
    """Enter a request received by letter or e-mail; the DPO then answers it by hand."""
    if kind not in KINDS:
        raise ValueError(f"unknown request type {kind!r}")
    address = parse_email(normalise(email))
    received_at = received_at or utcnow()
    with write_transaction():
        lead = find_lead(address.normalized)
        entry = RightsRequest(
            public_id=secrets.token_urlsafe(16),
            kind=kind,
            status="received",
            channel="staff",
            language=language,
            address_hash=address_hash(address.key),
            lead_id=lead.id if lead else None,
            received_at=received_at,
            due_at=due_date(received_at),
        )
        db.session.add(entry)
        db.session.flush()  # the entry's number, for the audit event
        _audit(actor, "rights.register", entry, {"kind": kind, "known": bool(lead)})
    return entry


def _audit(
    actor: StaffUser | None, action: str, entry: RightsRequest, detail: dict
) -> None:
    """The staff audit event of a register change, in the change's own transaction."""
    if actor is not None:
        add_event(
            action, actor=actor, target=f"rights-request:{entry.id}", detail=detail
        )


def _open_entry(request_id: int) -> RightsRequest:
    """The open request with this ID, locked for the caller's transaction."""
    entry = db.session.get(RightsRequest, request_id, with_for_update=True)
    if entry is None:
        raise RequestNotFound(f"no rights request {request_id}")
    if entry.status not in OPEN_STATUSES:
        raise RequestClosed(f"rights request {request_id} is {entry.status}")
    return entry


def _clean_reason(reason: str) -> str:
    reason = normalise(reason)
    if not reason or len(reason) > REASON_MAX or has_forbidden_characters(reason):
        raise InvalidReason("give a reason on one line, of at most 500 characters")
    return reason


def extend_request(
    request_id: int, reason: str, *, actor: StaffUser | None = None
) -> RightsRequest:
    """Extend the deadline once by two months, with the reason to tell the person.

    GDPR art. 12(3): allowed for complex or numerous requests, decided within the
    first month; the DPO must tell the person, with the reason, before that month ends.
    """
    reason = _clean_reason(reason)
    now = utcnow()
    with write_transaction():
        entry = _open_entry(request_id)
        if entry.extended_at is not None:
            raise AlreadyExtended(f"rights request {request_id} was already extended")
        if now > entry.due_at:
            raise ExtensionTooLate(f"rights request {request_id} is already overdue")
        entry.extended_at = now
        entry.extension_reason = reason
        entry.due_at = due_date(entry.received_at, extended=True)
        _audit(
            actor, "rights.extend", entry, {"due_at": format_timestamp(entry.due_at)}
        )
    return entry


def mark_done(request_id: int, *, actor: StaffUser | None = None) -> RightsRequest:
    """Record that the DPO has answered an open request."""
    with write_transaction():
        entry = _open_entry(request_id)
        _close(entry, "done", utcnow())
        _audit(actor, "rights.done", entry, {"kind": entry.kind})
    return entry


def refuse_request(
    request_id: int, reason: str, *, actor: StaffUser | None = None
) -> RightsRequest:
    """Record a refusal and its reason (the person must be told it, and of the CNIL)."""
    reason = _clean_reason(reason)
    with write_transaction():
        entry = _open_entry(request_id)
        _close(entry, "refused", utcnow(), reason=reason)
        _audit(actor, "rights.refuse", entry, {"kind": entry.kind})
    return entry
