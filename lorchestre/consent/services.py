"""Consent: reading the visitor's cookie, recording choices, the banner wording and gating."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from html.parser import HTMLParser

import sqlalchemy as sa
from flask import current_app, g, render_template, request
from flask_babel import force_locale
from itsdangerous import BadData
from werkzeug.wrappers import Response

from ..database import utcnow, write_transaction
from ..extensions import db
from ..models import BannerText, ConsentRecord
from ..policy import CURRENT_POLICY
from ..tokens import SALT_CONSENT_COOKIE, serializer
from . import ledger
from .declarations import OPTIONAL_KEYS, load_categories
from .groupcommit import group_commit

COOKIE_NAME = "lorchestre_consent"
COOKIE_MAX_AGE = 182 * 24 * 60 * 60
COOKIE_MAX_LENGTH = 512  # a genuine value is ~170 characters; anything longer is forged
ACTIONS = ("accept_all", "reject_all", "custom", "withdraw")
REFUSALS = ("reject_all", "withdraw")
_CONSENT_ID = re.compile(r"[A-Za-z0-9_-]{22,43}")


@dataclass(frozen=True)
class ConsentState:
    """A valid choice held by the visitor's cookie."""

    consent_id: str
    policy_version: str
    choices: dict[str, bool]
    recorded_at: int  # seconds since the epoch


@dataclass
class RecordedChoice:
    """What the ledger stored for one POST /consent."""

    consent_id: str
    choices: dict[str, bool]
    recorded_at: datetime
    record: dict = field(repr=False)


def valid_consent_id(value: str) -> bool:
    """Whether ``value`` has the shape of a consent ID (random, URL-safe)."""
    return bool(_CONSENT_ID.fullmatch(value))


def new_consent_id() -> str:
    """A random, opaque consent ID: 192 bits, URL-safe."""
    return secrets.token_urlsafe(24)


def choices_for(
    action: str, selected: dict[str, bool] | None = None
) -> dict[str, bool]:
    """The optional-category choices an action stands for."""
    if action == "accept_all":
        return dict.fromkeys(OPTIONAL_KEYS, True)
    if action == "custom":
        return {k: bool((selected or {}).get(k)) for k in OPTIONAL_KEYS}
    return dict.fromkeys(OPTIONAL_KEYS, False)


def decode_cookie(value: str | None) -> ConsentState | None:
    """The visitor's valid choice, or None for anything missing, forged, stale or odd."""
    if not value or len(value) > COOKIE_MAX_LENGTH:
        return None
    try:
        data = serializer(SALT_CONSENT_COOKIE).loads(value, max_age=COOKIE_MAX_AGE)
    except (BadData, UnicodeError, ValueError, TypeError):
        return None
    if not isinstance(data, dict):
        return None
    consent_id, version, flags, when = (data.get(k) for k in ("id", "v", "c", "t"))
    if (
        not isinstance(consent_id, str)
        or not _CONSENT_ID.fullmatch(consent_id)
        or version != CURRENT_POLICY.version
        or not isinstance(flags, str)
        or len(flags) != len(OPTIONAL_KEYS)
        or set(flags) - {"0", "1"}
        or not isinstance(when, int)
    ):
        return None
    choices = {k: f == "1" for k, f in zip(OPTIONAL_KEYS, flags, strict=True)}
    return ConsentState(consent_id, version, choices, when)


def encode_cookie(
    consent_id: str, choices: dict[str, bool], recorded_at: datetime
) -> str:
    """The signed cookie value for a recorded choice."""
    flags = "".join("1" if choices[k] else "0" for k in OPTIONAL_KEYS)
    payload = {
        "id": consent_id,
        "v": CURRENT_POLICY.version,
        "c": flags,
        "t": int(recorded_at.timestamp()),
    }
    return serializer(SALT_CONSENT_COOKIE).dumps(payload)


def current_consent() -> ConsentState | None:
    """This request's valid choice, decoded once per request."""
    if "consent_state" not in g:
        g.consent_state = decode_cookie(request.cookies.get(COOKIE_NAME))
    return g.consent_state


def consented(category_key: str) -> bool:
    """Whether tags of this category may be sent: only after an explicit yes."""
    if category_key == "necessary":
        return True
    state = current_consent()
    return bool(state and state.choices.get(category_key))


def gpc_signal() -> bool:
    """Whether the browser sent the Global Privacy Control signal."""
    return request.headers.get("Sec-GPC", "").strip() == "1"


class _TextExtractor(HTMLParser):
    """Collects the visible text of an HTML fragment."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def banner_text(locale: str) -> str:
    """The exact visible text of the banner in ``locale``, whitespace-normalised."""
    cache = current_app.extensions.setdefault("lorchestre_banner_texts", {})
    key = (locale, CURRENT_POLICY.version)
    if key not in cache:
        with force_locale(locale):
            html = render_template(
                "_partials/cookie_banner.html",
                banner_canonical=True,
                banner_lang=locale,
            )
        extractor = _TextExtractor()
        extractor.feed(html)
        cache[key] = " ".join(" ".join(extractor.parts).split())
    return cache[key]


def banner_sha256(locale: str) -> str:
    """SHA-256 hex of the banner text in ``locale``."""
    return hashlib.sha256(banner_text(locale).encode("utf-8")).hexdigest()


def _stored_banner_texts() -> set[str]:
    """Banner hashes this process has seen committed (texts are never deleted)."""
    return current_app.extensions.setdefault("lorchestre_banner_stored", set())


def _ensure_banner_text(locale: str) -> str:
    """Store this wording once, keyed by its hash; return the hash."""
    digest = banner_sha256(locale)
    if digest in _stored_banner_texts():
        return digest  # saves a SELECT inside the ledger lock on every append
    if db.session.get(BannerText, digest) is None:
        db.session.add(
            BannerText(
                sha256=digest,
                policy_version=CURRENT_POLICY.version,
                locale=locale,
                text=banner_text(locale),
            )
        )
    return digest


def record_choice(
    *,
    action: str,
    choices: dict[str, bool],
    locale: str,
    channel: str,
    gpc: bool,
    consent_id: str | None,
) -> RecordedChoice:
    """Commit one choice to the ledger; raises DatabaseUnavailable if it cannot.

    Concurrent choices of this process are committed together (groupcommit.py); this
    returns only once this choice's own record is committed.
    """
    consent_id = consent_id or new_consent_id()
    banner_text(locale)  # render (and cache) the wording before taking the lock
    work = {
        "consent_id": consent_id,
        "action": action,
        "choices": choices,
        "locale": locale,
        "channel": channel,
        "gpc": gpc,
    }
    config = current_app.config
    timeout_ms = max(
        int(config["SQLITE_BUSY_TIMEOUT_MS"]), int(config["POSTGRES_LOCK_TIMEOUT_MS"])
    )
    record, now = group_commit().submit(work, _write_choices, timeout_ms / 1000)
    return RecordedChoice(consent_id, record["choices"], now, record)


def _write_choices(batch: list[dict]) -> list[tuple[dict, datetime]]:
    """Append each choice, in order, in one write transaction; (record, time) each."""
    entries, digests = [], set()
    with write_transaction(lock=ledger.LEDGER_LOCK):
        for work in batch:
            digest = _ensure_banner_text(work["locale"])
            digests.add(digest)
            entries.append(
                {
                    "consent_id": work["consent_id"],
                    "recorded_at": utcnow(),
                    "action": work["action"],
                    "choices": work["choices"],
                    "policy_version": CURRENT_POLICY.version,
                    "banner_sha256": digest,
                    "locale": work["locale"],
                    "channel": work["channel"],
                    "gpc": work["gpc"],
                }
            )
        records = ledger.append_many(entries)
    _stored_banner_texts().update(digests)  # committed: no need to look again
    return [(r, e["recorded_at"]) for r, e in zip(records, entries, strict=True)]


def history(consent_id: str, limit: int = 100) -> list[ConsentRecord]:
    """The dated choices of one consent ID, newest first."""
    return list(
        db.session.scalars(
            sa.select(ConsentRecord)
            .where(ConsentRecord.consent_id == consent_id)
            .order_by(ConsentRecord.seq.desc())
            .limit(limit)
        )
    )


def set_consent_cookie(response: Response, recorded: RecordedChoice) -> None:
    """Give the visitor the signed cookie for a choice the ledger already holds."""
    response.set_cookie(
        COOKIE_NAME,
        encode_cookie(recorded.consent_id, recorded.choices, recorded.recorded_at),
        max_age=COOKIE_MAX_AGE,
        path="/",
        secure=current_app.config["COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
    )


def expire_refused_cookies(response: Response, choices: dict[str, bool]) -> None:
    """Expire, server-side, every cookie of each category that is not consented."""
    for category in load_categories():
        if category.required or choices.get(category.key):
            continue
        for name in category.cookie_names:
            response.delete_cookie(name, path="/")
