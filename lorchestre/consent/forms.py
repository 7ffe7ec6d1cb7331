"""Parsing of POST /consent (spec §4) and of the same-origin ``next`` target."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from werkzeug.datastructures import MultiDict

from ..config import DEFAULT_LANGUAGE, LANGUAGES
from .declarations import CATEGORY_KEYS, OPTIONAL_KEYS
from .services import ACTIONS

ALLOWED_FIELDS = frozenset({"csrf_token", "action", "next", "lang", *CATEGORY_KEYS})
MAX_NEXT_LENGTH = 512


class InvalidSubmission(ValueError):
    """The form names an unknown action or category, or repeats a field."""


@dataclass(frozen=True)
class ConsentSubmission:
    """A well-formed consent POST."""

    action: str
    selected: dict[str, bool]
    lang: str
    next_path: str


def safe_next(target: str | None, lang: str) -> str:
    """``target`` if it is a plain same-origin path, else the home page in ``lang``."""
    fallback = f"/{lang}/"
    if not target or len(target) > MAX_NEXT_LENGTH:
        return fallback
    # Browsers treat "\" as "/" and drop tabs/newlines, so "/\evil" and "/\t/evil"
    # leave the site: refuse any of them outright rather than normalising. Our own
    # paths are printable ASCII (percent-encoded), so anything else (controls, RTL
    # overrides, zero-width characters) is refused too.
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(not 0x21 <= ord(ch) <= 0x7E for ch in target)
    ):
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return fallback
    return target


def parse_submission(form: MultiDict) -> ConsentSubmission:
    """Validate the fields of POST /consent; raises InvalidSubmission on anything unknown."""
    unknown = set(form.keys()) - ALLOWED_FIELDS
    if unknown:
        raise InvalidSubmission("unknown field")
    if any(len(form.getlist(key)) > 1 for key in form.keys()):
        raise InvalidSubmission("repeated field")
    action = form.get("action", "")
    if action not in ACTIONS:
        raise InvalidSubmission("unknown action")
    lang = form.get("lang", "")
    lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
    selected = {key: bool(form.get(key)) for key in OPTIONAL_KEYS}
    return ConsentSubmission(action, selected, lang, safe_next(form.get("next"), lang))
