"""Helpers for the staff tests: cheap Argon2, accounts, sign-in, a fast valid ledger."""

from __future__ import annotations

import base64
import random
import re
from datetime import datetime

from flask import Flask
from flask.testing import FlaskClient

from lorchestre.consent.declarations import OPTIONAL_KEYS
from lorchestre.consent.ledger import (
    LEDGER_LOCK,
    append_in_batches,
)
from lorchestre.consent.services import ACTIONS, choices_for
from lorchestre.database import write_transaction
from lorchestre.policy import CURRENT_POLICY

# Argon2id still, at a cost that keeps a test run short; production keeps the defaults.
FAST_ARGON2 = {"time_cost": 1, "memory_cost": 8192, "parallelism": 1}
PASSWORD = "correct horse battery staple"
ROLES = ("marketing", "dpo", "admin")
EMAILS = {role: f"{role}@lorchestreparfum.com" for role in ROLES}
CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_of(html: bytes | str) -> str:
    """The first CSRF token in a page."""
    text = html.decode() if isinstance(html, bytes) else html
    match = CSRF_INPUT.search(text)
    assert match, "no csrf_token in the page"
    return match.group(1)


def new_client(app: Flask, lang: str = "en") -> FlaskClient:
    """A test client whose browser prefers ``lang`` (staff pages follow the browser)."""
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = lang
    return client


def create_staff(app: Flask, email: str, role: str, password: str = PASSWORD) -> int:
    """Create an account through the service; returns its id."""
    from lorchestre.staff.services import create_account

    with app.app_context():
        return create_account(email, password, role).id


def sign_in(
    client: FlaskClient, email: str, password: str = PASSWORD, next_path: str = ""
):
    """Post the sign-in form the way a browser does; returns the response."""
    query = f"?next={next_path}" if next_path else ""
    token = csrf_of(client.get(f"/staff/login{query}").data)
    return client.post(
        f"/staff/login{query}",
        data={"csrf_token": token, "email": email, "password": password},
    )


def signed_in(app: Flask, role: str, lang: str = "en") -> FlaskClient:
    """A new client signed in with the account of ``role`` (created as EMAILS[role])."""
    client = new_client(app, lang)
    response = sign_in(client, EMAILS[role])
    assert response.status_code == 303, response.text
    return client


def seed_ledger(
    count: int,
    start: datetime,
    end: datetime,
    *,
    seed: int = 7,
    batch: int = 10_000,
) -> None:
    """Append ``count`` records spread over [start, end), hash-chained by the app's own
    append path, in batches (call inside an app context)."""
    rng = random.Random(seed)
    step = (end - start) / count

    def entries():
        for i in range(count):
            action = rng.choices(ACTIONS, weights=(5, 3, 2, 1))[0]
            choices = choices_for(
                action, {k: rng.random() < 0.5 for k in OPTIONAL_KEYS}
            )
            yield {
                "consent_id": base64.urlsafe_b64encode(rng.randbytes(24)).decode(),
                "recorded_at": start + step * i,
                "action": action,
                "choices": choices,
                "policy_version": CURRENT_POLICY.version,
                "banner_sha256": "ab" * 32,
                "locale": rng.choice(("fr", "en")),
                "channel": rng.choice(("form", "js")),
                "gpc": rng.random() < 0.1,
            }

    with write_transaction(lock=LEDGER_LOCK):
        append_in_batches(entries(), batch)
