"""The declarations file: four fixed categories, bilingual texts, nothing optional on by default."""

from __future__ import annotations

import tomllib

import pytest

from lorchestre.consent.declarations import (
    CATEGORY_KEYS,
    DECLARATIONS_FILE,
    DeclarationError,
    load_categories,
    parse_declarations,
)


def raw() -> dict:
    with DECLARATIONS_FILE.open("rb") as handle:
        return tomllib.load(handle)


def test_shipped_declarations_are_valid():
    categories = load_categories()
    assert tuple(c.key for c in categories) == CATEGORY_KEYS
    assert [c.key for c in categories if c.required] == ["necessary"]
    necessary = categories[0].cookie_names
    assert "lorchestre_session" in necessary and "lorchestre_consent" in necessary
    for category in categories[1:]:
        assert category.services and all(s.example for s in category.services)


def test_an_optional_category_cannot_be_made_required():
    data = raw()
    data["category"][1]["required"] = True
    with pytest.raises(DeclarationError):
        parse_declarations(data)


@pytest.mark.parametrize("mutation", ["drop", "rename", "reorder"])
def test_categories_are_fixed(mutation):
    data = raw()
    if mutation == "drop":
        data["category"].pop()
    elif mutation == "rename":
        data["category"][2]["key"] = "marketing"
    else:
        data["category"].reverse()
    with pytest.raises(DeclarationError):
        parse_declarations(data)


def test_every_text_is_bilingual():
    data = raw()
    data["category"][3]["service"][0]["purpose"] = {"en": "only English"}
    with pytest.raises(DeclarationError):
        parse_declarations(data)
