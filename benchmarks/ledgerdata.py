"""A million-row ledger for the benchmarks, chained by the app's own record builder.

``synthetic_choices`` yields the entries ``ledger.append_many`` takes; ``bulk_append``
appends them with it (the function every consent goes through) in large batches inside
one write transaction, so the result is the chain the request path would have produced
for the same inputs, only faster to build.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterable, Iterator
from datetime import datetime

from flask import Flask

from lorchestre.consent import ledger
from lorchestre.consent.declarations import OPTIONAL_KEYS
from lorchestre.consent.services import ACTIONS, _ensure_banner_text, choices_for
from lorchestre.database import write_transaction
from lorchestre.policy import CURRENT_POLICY


def banner_digests(app: Flask) -> dict[str, str]:
    """Store the real banner wording of each language; return locale → SHA-256."""
    out = {}
    with app.test_request_context("/"):
        with write_transaction():
            for locale in ("fr", "en"):
                out[locale] = _ensure_banner_text(locale)
    return out


def synthetic_choices(
    count: int,
    start: datetime,
    end: datetime,
    banners: dict[str, str],
    seed: int = 7,
) -> Iterator[dict]:
    """``count`` plausible visitors' choices over [start, end), as append_many() entries."""
    rng = random.Random(seed)
    step = (end - start) / count
    ids: list[str] = []
    for i in range(count):
        action = rng.choices(ACTIONS, weights=(5, 3, 2, 1))[0]
        if ids and rng.random() < 0.2:  # some visitors come back and change their mind
            consent_id = rng.choice(ids)
        else:
            consent_id = base64.urlsafe_b64encode(rng.randbytes(24)).decode()
            if len(ids) < 50_000:
                ids.append(consent_id)
        locale = rng.choice(("fr", "en"))
        yield {
            "consent_id": consent_id,
            "recorded_at": start + step * i,
            "action": action,
            "choices": choices_for(
                action, {k: rng.random() < 0.5 for k in OPTIONAL_KEYS}
            ),
            "policy_version": CURRENT_POLICY.version,
            "banner_sha256": banners[locale],
            "locale": locale,
            "channel": rng.choice(("form", "js")),
            "gpc": rng.random() < 0.1,
        }


def bulk_append(inputs: Iterable[dict], batch: int = 20_000) -> int:
    """Append every input to the chain in one transaction, in batches; returns how many."""
    with write_transaction(lock=ledger.LEDGER_LOCK):
        return ledger.append_in_batches(inputs, batch)
