"""Published versions of the privacy policy and banner wording; a new one re-asks consent."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date

from .config import TEMPLATES_DIR
from .consent.declarations import DECLARATIONS_FILE


@dataclass(frozen=True)
class PolicyVersion:
    """One published wording: its version string, publication date and content fingerprint."""

    version: str
    published: date
    fingerprint: str


# Append a new entry whenever the policy, the legal texts of the banner or the
# declarations change; tests/test_policy_version.py fails until you do.
POLICY_VERSIONS: tuple[PolicyVersion, ...] = (
    PolicyVersion(
        "2026-11-25.1",
        date(2026, 11, 25),
        "a30c2d79cf88e94b5d2db0679e07c1a9f9b897a591c99f9f6df0e471df3ce688",
    ),
)

CURRENT_POLICY = POLICY_VERSIONS[-1]

# Files whose wording is part of what the visitor consents to.
WORDING_FILES = (
    TEMPLATES_DIR / "pages" / "policy" / "en.html",
    TEMPLATES_DIR / "pages" / "policy" / "fr.html",
    TEMPLATES_DIR / "_partials" / "cookie_banner.html",
    DECLARATIONS_FILE,
)


def wording_fingerprint(banner_texts: dict[str, str]) -> str:
    """SHA-256 over the policy files, the declarations and the rendered banner texts."""
    digest = hashlib.sha256()
    for path in WORDING_FILES:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for locale in sorted(banner_texts):
        digest.update(locale.encode() + b"\0" + banner_texts[locale].encode() + b"\0")
    return digest.hexdigest()


PROSPECT_RETENTION_YEARS = 3
# A closed rights request stays in the register as proof that it was answered, for
# the limitation period of civil claims (Code civil, art. 2224); the DPO may change it.
RIGHTS_REGISTER_YEARS = 5


def retention_settings() -> dict[str, str]:
    """The retention rules in force, as stated to the DPO and in the audit bundle."""
    return {
        "prospects": f"{PROSPECT_RETENTION_YEARS} years from the prospect's last interaction",
        "clients": "duration of the contract, plus legal obligations",
        "consent_cookie": "182 days (acceptance and refusal alike)",
        "consent_ledger": "kept as proof of consent; any purge leaves a checkpoint",
        "rights_requests": f"register entries {RIGHTS_REGISTER_YEARS} years after the request was closed, without the e-mail address",
    }
