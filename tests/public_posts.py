"""Every public POST endpoint in one place, for the hostile-input and fuzz suites.

The generic tests in tests/test_hostile.py (no CSRF token, rotated key, foreign
Origin/Referer, missing Referer over HTTPS, oversized bodies, too many fields,
untrusted Host, control and bidi characters in every field, forged X-Forwarded-For
against the rate limit) and the fuzz pass in tests/test_fuzz.py run once per entry.
To cover a new endpoint, append a PublicPost to PUBLIC_POSTS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from flask import Flask

from lorchestre.extensions import db
from lorchestre.models import (
    BannerText,
    ConsentRecord,
    ContactMessage,
    Lead,
    OutboxMessage,
    RightsRequest,
)


def count_rows(app: Flask, *models) -> int:
    """Rows in these tables together: "nothing stored" means this does not move."""
    with app.app_context():
        return sum(
            db.session.scalar(sa.select(sa.func.count()).select_from(model))
            for model in models
        )


@dataclass(frozen=True)
class PublicPost:
    """A public form endpoint and what a well-formed submission to it looks like."""

    name: str
    path: str  # where the form posts
    form_page: str  # a page whose form carries a CSRF token for this endpoint
    fields: tuple[str, ...]  # every field the endpoint reads, besides csrf_token
    valid: Callable[[], dict[str, str]]  # a submission that succeeds
    success: frozenset[int]  # statuses of a successful submission
    rate_limit_setting: str  # config key of its per-client limit
    stored: Callable[[Flask], int]  # rows written so far
    success_cookies: tuple[str, ...] = field(default=())  # set only on success
    # False when a success answer may store nothing on purpose (honeypot, unknown
    # address): then only "nothing stored unless success" is checked.
    success_always_stores: bool = True


CONSENT = PublicPost(
    name="consent",
    path="/consent",
    form_page="/fr/",
    fields=("action", "lang", "next", "analytics", "advertising", "personalization"),
    valid=lambda: {"action": "accept_all", "lang": "fr", "next": "/fr/privacy"},
    success=frozenset({303, 200}),  # 200: the JSON answer to Accept: application/json
    rate_limit_setting="CONSENT_RATE_LIMIT",
    stored=lambda app: count_rows(app, ConsentRecord, BannerText),
    success_cookies=("lorchestre_consent",),
)

CONTACT = PublicPost(
    name="contact",
    path="/fr/contact",
    form_page="/fr/contact",
    fields=("name", "email", "phone", "company", "message", "marketing", "website"),
    valid=lambda: {
        "name": "Jeanne Test",
        "email": "jeanne@example.fr",
        "message": "Bonjour, une question sur vos parfums.",
    },
    success=frozenset({303}),
    rate_limit_setting="CONTACT_RATE_LIMIT",
    stored=lambda app: count_rows(app, Lead, ContactMessage, OutboxMessage),
    success_always_stores=False,  # a filled honeypot ("website") gets the same 303
)

RIGHTS = PublicPost(
    name="rights",
    path="/fr/my-data",
    form_page="/fr/my-data",
    fields=("email", "kind", "consent_id"),
    valid=lambda: {"email": "jeanne@example.fr", "kind": "access"},
    success=frozenset({303}),
    rate_limit_setting="RIGHTS_RATE_LIMIT",
    # Every valid request is registered, known address or not.
    stored=lambda app: count_rows(app, RightsRequest, OutboxMessage),
)

PUBLIC_POSTS: list[PublicPost] = [CONSENT, CONTACT, RIGHTS]
