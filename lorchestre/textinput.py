"""Text hygiene for form input: NFC, control and invisible characters, e-mails."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

# Bidi embeddings, overrides and isolates: they reorder what staff read in the CRM
# ("Trojan Source"), so they are refused everywhere, even in a free-text message.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Kept in a message: tab and newline (CR is folded into LF before checking).
MESSAGE_WHITESPACE = frozenset("\t\n")


def normalise(value: str | None) -> str:
    """NFC form with surrounding whitespace removed; None becomes ""."""
    if value is None:
        return ""
    return unicodedata.normalize("NFC", value).strip()


def normalise_multiline(value: str | None) -> str:
    """Like normalise(), with CRLF and lone CR folded into LF (browsers send both)."""
    if value is None:
        return ""
    return normalise(value.replace("\r\n", "\n").replace("\r", "\n"))


def has_forbidden_characters(value: str, *, multiline: bool = False) -> bool:
    """Whether ``value`` holds control, format (zero-width, bidi) or line separators.

    One-line fields refuse every character of Unicode categories Cc, Cf, Zl and Zp
    (CR, LF, NUL, ESC, U+200B, U+FEFF, U+202E...). A multi-line message keeps tab,
    newline and the joiners that emoji and some scripts need, but refuses the other
    controls and every bidi override. PostgreSQL cannot store NUL at all, so refusing
    here also keeps SQLite and PostgreSQL identical.
    """
    for char in value:
        if char in BIDI_CONTROLS:
            return True
        category = unicodedata.category(char)
        if multiline:
            if category == "Cc" and char not in MESSAGE_WHITESPACE:
                return True
            if category in ("Zl", "Zp") or char == "\ufeff":
                return True
        elif category in ("Cc", "Cf", "Zl", "Zp"):
            return True
    return False


@dataclass(frozen=True)
class EmailAddress:
    """A valid address: normalised for sending, and the key identifying its owner."""

    normalized: str
    key: str


class InvalidEmail(ValueError):
    """The text is not a deliverable-looking e-mail address."""


def parse_email(value: str) -> EmailAddress:
    """Validate and normalise an address with email-validator (no DNS lookup).

    ``normalized`` is email-validator's form: NFC local part, lower-cased IDNA-checked
    domain. ``key`` also lower-cases the local part: virtually every mailbox provider
    ignores its case, and two leads for "Marie@" and "marie@" would let an unsubscribe
    miss one of them. Homoglyphs (Cyrillic "о", fullwidth letters) stay distinct.
    """
    if has_forbidden_characters(value):
        raise InvalidEmail("control or invisible character")
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from exc
    local, _, domain = result.normalized.rpartition("@")
    return EmailAddress(result.normalized, f"{local.lower()}@{domain.lower()}")
