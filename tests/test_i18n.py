"""Language negotiation, language in the URL, and the link to the other language."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
from flask_babel import force_locale


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


@pytest.mark.parametrize(
    ("lang", "day", "expected"),
    [
        ("fr", date(2026, 12, 1), "1er décembre 2026"),
        ("fr", date(2026, 12, 11), "11 décembre 2026"),
        ("fr", date(2026, 12, 21), "21 décembre 2026"),
        ("en", date(2026, 12, 1), "December 1, 2026"),
    ],
)
def test_the_first_of_the_month_is_written_1er_in_french(app, lang, day, expected):
    from lorchestre.templating import local_date, local_datetime

    with app.test_request_context(f"/{lang}/"), force_locale(lang):
        assert local_date(day, "long") == expected
        moment = datetime(day.year, day.month, day.day, 9, 1, tzinfo=UTC)
        assert local_datetime(moment, "long").startswith(expected.split(" 2026")[0])
