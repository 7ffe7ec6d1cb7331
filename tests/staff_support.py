"""Helpers for the staff tests: cheap Argon2, accounts, sign-in, a fast valid ledger."""

from __future__ import annotations

import base64
import random
import re
from datetime import datetime

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from lorchestre.consent.declarations import OPTIONAL_KEYS
from lorchestre.consent.ledger import (
    GENESIS_HASH,
    LEDGER_LOCK,
    compute_hash,
    format_timestamp,
)
from lorchestre.consent.services import ACTIONS, choices_for
from lorchestre.database import write_transaction
from lorchestre.extensions import db
from lorchestre.models import ConsentRecord
from lorchestre.policy import CURRENT_POLICY

# Argon2id still, at a cost that keeps a test run short; production keeps the defaults.
FAST_ARGON2 = {"time_cost": 1, "memory_cost": 8192, "parallelism": 1}
PASSWORD = "correct horse battery staple"
ROLES = ("marketing", "dpo", "admin")
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


def seed_ledger(
    count: int,
    start: datetime,
    end: datetime,
    *,
    seed: int = 7,
    batch: int = 10_000,
) -> None:
    """Append ``count`` records spread over [start, end), hash-chained exactly as the app
    does, by bulk insert (call inside an app context)."""
    rng = random.Random(seed)
    step = (end - start) / count
    table = ConsentRecord.__table__
    with write_transaction(lock=LEDGER_LOCK):
        head = db.session.execute(
            sa.select(table.c.seq, table.c.hash).order_by(table.c.seq.desc()).limit(1)
        ).first()
        seq, prev = head if head is not None else (0, GENESIS_HASH)
        rows = []
        for i in range(count):
            seq += 1
            recorded_at = start + step * i
            action = rng.choices(ACTIONS, weights=(5, 3, 2, 1))[0]
            choices = choices_for(
                action, {k: rng.random() < 0.5 for k in OPTIONAL_KEYS}
            )
            record = {
                "seq": seq,
                "consent_id": base64.urlsafe_b64encode(rng.randbytes(24)).decode(),
                "recorded_at": format_timestamp(recorded_at),
                "action": action,
                "choices": {"necessary": True, **choices},
                "policy_version": CURRENT_POLICY.version,
                "banner_sha256": "ab" * 32,
                "locale": rng.choice(("fr", "en")),
                "channel": rng.choice(("form", "js")),
                "gpc": rng.random() < 0.1,
                "prev_hash": prev,
            }
            prev = record["hash"] = compute_hash(record)
            flat = {k: v for k, v in record.items() if k != "choices"}
            rows.append(flat | choices | {"recorded_at": recorded_at})
            if len(rows) == batch:
                db.session.execute(sa.insert(table), rows)
                rows = []
        if rows:
            db.session.execute(sa.insert(table), rows)
