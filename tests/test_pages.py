"""Public pages: the policy's facts in both languages, the legal notice, the home page."""

from __future__ import annotations

import html as html_module
import re

import pytest

from lorchestre.policy import CURRENT_POLICY


def _text(html: str) -> str:
    """Visible text with tags dropped and every kind of space made plain."""
    text = html_module.unescape(re.sub(r"<[^>]+>", " ", html))
    return " ".join(text.replace("\u00a0", " ").replace("\u202f", " ").split())


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_policy_states_the_facts(client, lang):
    text = _text(client.get(f"/{lang}/privacy").text)
    for fact in (
        "83181639200011",
        "831816392",
        "28 rue Sedaine",
        "75001 Paris",
        "contact@lorchestreparfum.com",
        "CNIL",
        CURRENT_POLICY.version,
    ):
        assert fact.lower() in text.lower(), fact
    assert ("3 ans" if lang == "fr" else "3 years") in text
    assert ("territoire français" if lang == "fr" else "French territory") in text


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_policy_typos_are_fixed(client, lang):
    text = client.get(f"/{lang}/privacy").text
    for typo in (
        "PARFUMhave",
        "COMMUNICATIONL",
        "PARFUM,is",
        "contract.This",
        "Consent.Any",
    ):
        assert typo not in text
    assert "agency services at the end" not in text


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_policy_points_to_the_site_for_withdrawal_and_rights(client, lang):
    text = client.get(f"/{lang}/privacy").text
    assert f'href="/{lang}/cookies"' in text
    assert f'href="/{lang}/my-data"' in text
    assert 'id="cookie-table"' in text


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_cookie_table_lists_every_declared_cookie(client, lang):
    text = client.get(f"/{lang}/privacy").text
    for name in ("lorchestre_session", "lorchestre_consent", "lorchestre_analytics",
                 "lorchestre_ads", "lorchestre_prefs"):  # fmt: skip
        assert f"<code>{name}</code>" in text


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_legal_notice(client, lang):
    response = client.get(f"/{lang}/legal")
    text = _text(response.text)
    assert "83181639200011" in text and "831816392" in text
    assert "28 rue Sedaine" in text
    assert 'class="placeholder"' in response.text  # host details the client must supply


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_every_page_links_footer_destinations(client, lang):
    html = client.get(f"/{lang}/").text
    for path in ("privacy", "cookies", "my-data", "legal"):
        assert f'href="/{lang}/{path}"' in html
    assert ("Gérer mes cookies" if lang == "fr" else "Manage cookies") in html


def test_no_asset_from_another_origin(client):
    for url in ("/fr/", "/en/privacy", "/fr/legal", "/en/cookies"):
        html = client.get(url).text
        assert not re.search(r'(?:src|href)="(?:https?:)?//', html.replace(
            'href="https://www.cnil.fr', 'href="/cnil'))  # fmt: skip
