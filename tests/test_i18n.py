"""Language negotiation, language in the URL, and the link to the other language."""

from __future__ import annotations

import re

import pytest


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("en-GB", "/en/"),
        ("en-GB,en;q=0.9", "/en/"),
        ("fr-FR", "/fr/"),
        ("de-DE", "/fr/"),
        (None, "/fr/"),
        (";;;,,,", "/fr/"),
        ("fr;q=abc", "/fr/"),
        ("en;q=abc, de", "/fr/"),
        ("\x00\xff garbage", "/fr/"),
        ("de-DE, en;q=0.5", "/en/"),
    ],
)
def test_root_redirects_by_accept_language(client, header, expected):
    headers = {"Accept-Language": header} if header is not None else {}
    response = client.get("/", headers=headers)
    assert response.status_code in (302, 303)
    assert response.headers["Location"] == expected


@pytest.mark.parametrize("url", ["/de/privacy", "/xx/", "/de/", "/%2e%2e/", "/fr/nope"])
def test_unknown_language_or_page_is_404_without_reflection(client, url):
    response = client.get(url)
    assert response.status_code == 404
    assert b"xx" not in response.data.replace(b"xxx", b"")
    assert "Page introuvable" in response.text and "Page not found" in response.text


@pytest.mark.parametrize("lang", ["fr", "en"])
@pytest.mark.parametrize(
    "page", ["", "privacy", "legal", "cookies", "contact", "my-data"]
)
def test_html_lang_and_switch_link(client, lang, page):
    response = client.get(f"/{lang}/{page}")
    assert response.status_code == 200
    assert f'<html lang="{lang}">' in response.text
    other = "en" if lang == "fr" else "fr"
    assert re.search(rf'href="/{other}/{page}"[^>]*hreflang="{other}"', response.text)


def test_french_pages_are_french(client):
    assert "Politique de confidentialité" in client.get("/fr/privacy").text
    assert "Privacy policy" in client.get("/en/privacy").text
    assert "Gérer mes cookies" in client.get("/fr/").text
