"""The French catalogue is complete: no empty or fuzzy entry, nothing missing."""

from __future__ import annotations

from babel.messages.pofile import read_po

from lorchestre.config import TRANSLATIONS_DIR


def _catalog(path):
    with path.open("rb") as handle:
        return read_po(handle)


def test_every_french_entry_is_translated_and_not_fuzzy():
    catalog = _catalog(TRANSLATIONS_DIR / "fr" / "LC_MESSAGES" / "messages.po")
    empty = [m.id for m in catalog if m.id and not m.string]
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert not empty, f"untranslated: {empty}"
    assert not fuzzy, f"fuzzy: {fuzzy}"


def test_catalogue_covers_every_message_in_the_code(runner, tmp_path):
    pot = tmp_path / "fresh.pot"
    result = runner.invoke(args=["translate", "extract", "--output", str(pot)])
    assert result.exit_code == 0, result.output
    template = _catalog(pot)
    french = _catalog(TRANSLATIONS_DIR / "fr" / "LC_MESSAGES" / "messages.po")
    missing = [m.id for m in template if m.id and m.id not in french]
    assert not missing, f"run `flask --app lorchestre translate update`: {missing}"


def test_french_typography_uses_non_breaking_spaces():
    catalog = _catalog(TRANSLATIONS_DIR / "fr" / "LC_MESSAGES" / "messages.po")
    bad = [m.string for m in catalog if m.id and isinstance(m.string, str)
           and any(f" {mark}" in m.string for mark in ":;?!")]  # fmt: skip
    assert not bad, f"use a non-breaking space before : ; ? ! in {bad}"
