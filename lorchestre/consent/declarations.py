"""Loads and checks declarations.toml: the categories, their services and cookies."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DECLARATIONS_FILE = Path(__file__).with_name("declarations.toml")
CATEGORY_KEYS = ("necessary", "analytics", "advertising", "personalization")
OPTIONAL_KEYS = CATEGORY_KEYS[1:]
LOCALES = ("fr", "en")


@dataclass(frozen=True)
class Text:
    """A text given in both languages."""

    fr: str
    en: str

    def __call__(self, locale: str) -> str:
        """The text in ``locale`` (English for anything else)."""
        return self.fr if locale == "fr" else self.en


@dataclass(frozen=True)
class Cookie:
    """One cookie a service sets."""

    name: str
    lifetime: Text
    purpose: Text


@dataclass(frozen=True)
class Service:
    """One service (a tag, a tool) that belongs to a category."""

    name: str
    provider: str
    example: bool
    purpose: Text
    destination: Text
    cookies: tuple[Cookie, ...]


@dataclass(frozen=True)
class Category:
    """A consent category and what it covers."""

    key: str
    required: bool
    label: Text
    description: Text
    services: tuple[Service, ...]

    @property
    def cookie_names(self) -> tuple[str, ...]:
        """Names of every cookie this category's services set."""
        return tuple(c.name for s in self.services for c in s.cookies)


class DeclarationError(ValueError):
    """declarations.toml does not describe the four fixed categories correctly."""


def _text(raw: object, where: str) -> Text:
    if (
        not isinstance(raw, dict)
        or set(raw) != set(LOCALES)
        or not all(isinstance(v, str) and v.strip() for v in raw.values())
    ):
        raise DeclarationError(
            f"{where}: expected {{ fr = '…', en = '…' }}, both non-empty"
        )
    return Text(fr=raw["fr"], en=raw["en"])


def parse_declarations(data: dict) -> tuple[Category, ...]:
    """Validate parsed TOML and build the categories, in the fixed order."""
    categories = []
    for raw in data.get("category", []):
        key = raw.get("key")
        services = tuple(
            Service(
                name=s["name"],
                provider=s["provider"],
                example=bool(s.get("example", False)),
                purpose=_text(s.get("purpose"), f"{key}/{s['name']}.purpose"),
                destination=_text(
                    s.get("destination"), f"{key}/{s['name']}.destination"
                ),
                cookies=tuple(
                    Cookie(
                        name=c["name"],
                        lifetime=_text(c.get("lifetime"), f"{c['name']}.lifetime"),
                        purpose=_text(c.get("purpose"), f"{c['name']}.purpose"),
                    )
                    for c in s.get("cookie", [])
                ),
            )
            for s in raw.get("service", [])
        )
        categories.append(
            Category(
                key=key,
                required=bool(raw.get("required", False)),
                label=_text(raw.get("label"), f"{key}.label"),
                description=_text(raw.get("description"), f"{key}.description"),
                services=services,
            )
        )
    if tuple(c.key for c in categories) != CATEGORY_KEYS:
        raise DeclarationError(
            f"categories must be exactly {CATEGORY_KEYS}, in that order"
        )
    # Only "necessary" may be on without a choice: no setting can pre-enable the others.
    if [c.key for c in categories if c.required] != ["necessary"]:
        raise DeclarationError("only 'necessary' may be required")
    return tuple(categories)


@cache
def load_categories() -> tuple[Category, ...]:
    """The declared categories, parsed once per process."""
    with DECLARATIONS_FILE.open("rb") as handle:
        return parse_declarations(tomllib.load(handle))
