"""The record of processing activities (GDPR Art. 30), generated from the declarations.

Cookie activities come from ``declarations.toml`` (categories, services, cookies and
lifetimes) and retention from ``policy.retention_settings()``; every retention setting
must be claimed by an activity here (a test fails otherwise), so the register cannot
silently drift from what the site does.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _

from ..consent.declarations import DECLARATIONS_FILE, Category, load_categories
from ..consent.ledger import format_timestamp
from ..consent.services import COOKIE_MAX_AGE
from ..database import utcnow
from ..policy import (
    CURRENT_POLICY,
    PROSPECT_RETENTION_YEARS,
    RIGHTS_REGISTER_YEARS,
    retention_settings,
)

CONTROLLER_NAME = "L’ORCHESTRE PARFUM"
CONTROLLER_SIRET = "83181639200011"
CONTROLLER_ADDRESS = "28 rue Sedaine, 75001 Paris, France"


@dataclass(frozen=True)
class Activity:
    """One processing activity, with the fields Art. 30(1) asks for."""

    key: str
    name: str
    purposes: list[str]
    legal_basis: str
    people: list[str]
    data: list[str]
    recipients: list[str]
    transfers: str
    retention: list[str]
    notes: list[str] = field(default_factory=list)
    # Which retention_settings() keys this activity states (for the drift check).
    retention_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Register:
    """The whole register in one language."""

    locale: str
    generated_at: str
    policy_version: str
    controller: dict[str, str]
    activities: list[Activity]
    security: list[str]
    sources: dict[str, Any]


def _no_transfer() -> str:
    return _("None: the data is stored and processed in France only.")


def _pair(name: str, text: str) -> str:
    """ "name: text", with the page language's spacing before the colon."""
    return _("%(name)s: %(text)s", name=name, text=text)


def _cookie_lines(category: Category, locale: str) -> list[str]:
    return [
        _pair(cookie.name, cookie.purpose(locale))
        for service in category.services
        for cookie in service.cookies
    ]


def _lifetime_lines(category: Category, locale: str) -> list[str]:
    return [
        _pair(cookie.name, cookie.lifetime(locale))
        for service in category.services
        for cookie in service.cookies
    ]


def _recipient_lines(category: Category, locale: str) -> list[str]:
    return [
        _pair(f"{service.provider} ({service.name})", service.destination(locale))
        for service in category.services
    ]


def _example_notes(category: Category) -> list[str]:
    return [
        _(
            "“%(name)s” is a placeholder service, to be replaced by the tool the House chooses.",
            name=service.name,
        )
        for service in category.services
        if service.example
    ]


def _consent_activity(locale: str) -> Activity:
    days = COOKIE_MAX_AGE // 86400
    return Activity(
        key="consent",
        name=_("Cookie consent and its proof"),
        purposes=[
            _("Record each visitor’s cookie choices and apply them on every page."),
            _("Prove that consent was given, refused or withdrawn (GDPR art. 7(1))."),
        ],
        legal_basis=_(
            "Legal obligation: GDPR art. 7(1) and art. 82 of the French Data Protection Act."
        ),
        people=[_("Website visitors who make a cookie choice.")],
        data=[
            _("A random consent ID (pseudonymous), also held in the visitor’s cookie."),
            _("The time, the action and the choice for each category."),
            _(
                "The policy version, the language and the SHA-256 of the banner text shown."
            ),
            _(
                "The channel (plain form or script) and the Global Privacy Control signal."
            ),
            _("No IP address, no e-mail address and no free text."),
        ],
        recipients=[
            _("The DPO (the complete ledger and its exports)."),
            _("The marketing team (aggregate statistics only)."),
            _("The CNIL, on request."),
        ],
        transfers=_no_transfer(),
        retention=[
            _(
                "Consent cookie: %(days)d days, for acceptance and refusal alike.",
                days=days,
            ),
            _(
                "Consent ledger: kept as proof of consent; a purge leaves a checkpoint so that the rest can still be verified."
            ),
        ],
        retention_keys=("consent_cookie", "consent_ledger"),
    )


def _necessary_activity(category: Category, locale: str) -> Activity:
    return Activity(
        key=category.key,
        name=_(
            "%(category)s cookies (exempt from consent)",
            category=category.label(locale),
        ),
        purposes=[service.purpose(locale) for service in category.services],
        legal_basis=_(
            "Exempt from consent under art. 82 of the French Data Protection Act: "
            "strictly necessary for the service the visitor asks for. "
            "Legitimate interest (GDPR art. 6(1)(f)) in keeping the site secure."
        ),
        people=[_("Every website visitor.")],
        data=_cookie_lines(category, locale),
        recipients=_recipient_lines(category, locale),
        transfers=_no_transfer(),
        retention=_lifetime_lines(category, locale),
        notes=[
            _(
                "Reason for the exemption: %(reason)s",
                reason=category.description(locale),
            )
        ],
    )


def _optional_activity(category: Category, locale: str) -> Activity:
    return Activity(
        key=category.key,
        name=_("%(category)s cookies", category=category.label(locale)),
        purposes=[category.description(locale)]
        + [service.purpose(locale) for service in category.services],
        legal_basis=_(
            "Consent: GDPR art. 6(1)(a) and art. 82 of the French Data Protection Act; "
            "as easy to refuse or withdraw as to give."
        ),
        people=[_("Website visitors who accepted this category.")],
        data=_cookie_lines(category, locale),
        recipients=_recipient_lines(category, locale),
        transfers=_no_transfer(),
        retention=_lifetime_lines(category, locale),
        notes=_example_notes(category),
    )


def _contact_activity() -> Activity:
    return Activity(
        key="contact",
        name=_("Contact requests, prospects and clients"),
        purposes=[
            _("Answer the enquiries sent through the contact form."),
            _("Follow up prospects and clients."),
            _("Send marketing e-mails, only to people who ticked the box for them."),
        ],
        legal_basis=_(
            "Steps taken at the person’s request before a contract (GDPR art. 6(1)(b)); "
            "consent for marketing e-mails (GDPR art. 6(1)(a), art. L.34-5 of the French "
            "Postal and Electronic Communications Code)."
        ),
        people=[_("People who write to the House: prospects and clients.")],
        data=[
            _("Name, e-mail address, telephone (optional), company (optional)."),
            _(
                "The messages sent, the marketing e-mail choice and the dates of contact."
            ),
        ],
        recipients=[_("Authorised staff of the House (sales, marketing, DPO).")],
        transfers=_no_transfer(),
        retention=[
            _(
                "Prospects: %(num)d years from the prospect’s last interaction.",
                num=PROSPECT_RETENTION_YEARS,
            ),
            _(
                "Clients: the duration of the contract, then as long as the law requires."
            ),
        ],
        retention_keys=("prospects", "clients"),
    )


def _rights_activity() -> Activity:
    return Activity(
        key="rights",
        name=_("Data-protection rights requests"),
        purposes=[
            _(
                "Handle requests for access, rectification, erasure and objection within the legal deadline."
            ),
        ],
        legal_basis=_("Legal obligation: GDPR arts. 12 to 21."),
        people=[_("People who exercise their rights.")],
        data=[
            _(
                "A fingerprint of the e-mail address computed with a secret key (never the address itself), type of request, dates received, due and completed, reason for any extension or refusal; while the request is open, the link to the person’s record and the consent ID they chose to give."
            ),
        ],
        recipients=[_("The DPO.")],
        transfers=_no_transfer(),
        retention=[
            _(
                "%(years)d years after the request is closed, as proof that it was answered (French civil code, art. 2224); erasing the person removes the link to their record.",
                years=RIGHTS_REGISTER_YEARS,
            )
        ],
        retention_keys=("rights_requests",),
    )


def _staff_activity() -> Activity:
    return Activity(
        key="staff",
        name=_("Staff accounts and access log"),
        purposes=[
            _("Restrict the staff area to the people who need it."),
            _("Trace every access to personal data and every export."),
        ],
        legal_basis=_(
            "Legitimate interest (GDPR art. 6(1)(f)) and the duty to secure data (GDPR art. 32)."
        ),
        people=[_("Members of staff with an account.")],
        data=[
            _(
                "E-mail address, role, password hash (Argon2id), second-factor secret if enabled."
            ),
            _("Sign-in times and the log of actions in the staff area."),
        ],
        recipients=[_("Administrators and the DPO.")],
        transfers=_no_transfer(),
        retention=[
            _(
                "Accounts: while the person needs access; disabled, not deleted, to keep the log readable."
            ),
            _(
                "Access log: not yet set: to be decided by the DPO (the CNIL recommends six months to one year)."
            ),
        ],
    )


def _security_measures() -> list[str]:
    return [
        _("Data hosted and processed in France only."),
        _(
            "HTTPS with HSTS; a strict Content Security Policy; no script, style or font from another site."
        ),
        _(
            "Forms protected against cross-site request forgery; rate limits on forms and sign-in."
        ),
        _(
            "Staff passwords hashed with Argon2id; sign-in throttled per account and per client; optional second factor (TOTP)."
        ),
        _(
            "Staff sessions revoked on sign-out, password change and disabling of the account."
        ),
        _(
            "Access by role: the marketing team sees aggregates only; exports and registers are for the DPO."
        ),
        _(
            "Every staff access to personal data and every export is written to an audit log."
        ),
        _(
            "The consent ledger is append-only and hash-chained, and can be verified without our software; it holds no IP address."
        ),
        _("The consent cookie is signed, HttpOnly, Secure and SameSite=Lax."),
    ]


def build_register(locale: str) -> Register:
    """The register in ``locale`` ("fr" or "en"), as of now."""
    with force_locale(locale):
        categories = load_categories()
        activities = [_consent_activity(locale)]
        activities += [
            _necessary_activity(c, locale)
            if c.required
            else _optional_activity(c, locale)
            for c in categories
        ]
        activities += [_contact_activity(), _rights_activity(), _staff_activity()]
        controller = {
            "name": CONTROLLER_NAME,
            "siret": CONTROLLER_SIRET,
            "address": CONTROLLER_ADDRESS,
            "contact": current_app.config["DPO_CONTACT"],
        }
        return Register(
            locale=locale,
            generated_at=format_timestamp(utcnow()),
            policy_version=CURRENT_POLICY.version,
            controller=controller,
            activities=activities,
            security=_security_measures(),
            sources={
                "declarations_sha256": hashlib.sha256(
                    DECLARATIONS_FILE.read_bytes()
                ).hexdigest(),
                "retention_settings": retention_settings(),
            },
        )


def register_json(register: Register) -> dict[str, Any]:
    """The register as plain data for the JSON download."""
    data = asdict(register)
    for activity in data["activities"]:
        activity["retention_keys"] = list(activity["retention_keys"])
    return data


def register_headings() -> dict[str, str]:
    """The Art. 30 headings of an activity, in the current language, by field."""
    return {
        "purposes": _("Purposes"),
        "legal_basis": _("Legal basis"),
        "people": _("Categories of people"),
        "data": _("Categories of data"),
        "recipients": _("Recipients"),
        "transfers": _("Transfers outside the EU"),
        "retention": _("Retention"),
        "notes": _("Notes"),
    }


def register_markdown(register: Register) -> str:
    """The register as a Markdown document (printable, diffable)."""
    with force_locale(register.locale):
        headings = register_headings()
        lines = [
            f"# {_('Record of processing activities (GDPR art. 30)')}",
            "",
            f"- {_pair(_('Controller'), register.controller['name'])}, Siret {register.controller['siret']}",
            f"- {_pair(_('Address'), register.controller['address'])}",
            f"- {_pair(_('Data-protection contact'), register.controller['contact'])}",
            f"- {_pair(_('Policy version'), register.policy_version)}",
            f"- {_pair(_('Generated at'), register.generated_at)}",
            "",
        ]
        for number, activity in enumerate(register.activities, start=1):
            lines += [f"## {number}. {activity.name}", ""]
            for name, heading in headings.items():
                value = getattr(activity, name)
                if not value:
                    continue
                lines.append(f"**{heading}**")
                lines.append("")
                lines += (
                    [f"- {item}" for item in value]
                    if isinstance(value, list)
                    else [value]
                )
                lines.append("")
        lines += [f"## {_('Security measures')}", ""]
        lines += [f"- {item}" for item in register.security]
        return "\n".join(lines) + "\n"
