"""The contact form in Chromium with JavaScript off, in French and in English."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from lorchestre.extensions import db
from lorchestre.models import Lead, OutboxMessage

TEXT = {
    "fr": {
        "name": "Votre nom",
        "email": "Votre adresse électronique",
        "message": "Votre message",
        "marketing": "Je souhaite recevoir par courriel les actualités",
        "name_error": "Veuillez indiquer votre nom.",
        "summary": "Votre message n’a pas encore été envoyé",
        "thanks": "Merci, votre message a bien été envoyé",
    },
    "en": {
        "name": "Your name",
        "email": "Your e-mail address",
        "message": "Your message",
        "marketing": "I would like to receive news from",
        "name_error": "Please enter your name.",
        "summary": "Your message has not been sent yet",
        "thanks": "Thank you, your message has been sent",
    },
}


@pytest.mark.browser
@pytest.mark.parametrize("lang", ["fr", "en"])
def test_contact_form_works_without_javascript(
    app, live_server, new_page, screenshot_dir, lang
):
    text = TEXT[lang]
    page = new_page(java_script_enabled=False)
    page.goto(f"{live_server}/{lang}/contact")
    assert page.locator("html").get_attribute("lang") == lang
    # A visitor answers the banner first (it overlays the bottom of the page).
    page.get_by_role(
        "button", name="Tout refuser" if lang == "fr" else "Reject all"
    ).click()
    page.wait_for_url(f"{live_server}/{lang}/contact")
    marketing = page.get_by_label(text["marketing"])
    assert not marketing.is_checked()

    # An empty form comes back with each error next to its field, in this language.
    page.locator("form.contact-form button[type=submit]").click()
    page.wait_for_load_state()
    assert text["summary"] in page.locator("main").inner_text()
    assert page.locator("#name-errors").inner_text() == text["name_error"]
    assert page.get_attribute("#name", "aria-describedby") == "name-errors"
    assert page.get_attribute("#name", "aria-invalid") == "true"

    # Labels are tied to their inputs: the form is filled through them.
    page.get_by_label(text["name"]).fill("Camille Dupré")
    page.get_by_label(text["email"]).fill(f"camille.{lang}@example.fr")
    page.get_by_label(text["message"]).fill("Bonjour,\nun conseil pour un cadeau ?")
    page.get_by_label(text["marketing"]).check()
    page.screenshot(path=screenshot_dir / f"contact-{lang}-form.png", full_page=True)

    page.locator("form.contact-form button[type=submit]").click()
    page.wait_for_load_state()
    assert page.url == f"{live_server}/{lang}/contact/thanks"
    assert page.locator("h1").inner_text() == text["thanks"]
    page.screenshot(path=screenshot_dir / f"contact-{lang}-thanks.png", full_page=True)

    csp = [e for e in page.console_errors if "Content Security Policy" in e]
    assert csp == []
    with app.app_context():
        lead = db.session.scalars(sa.select(Lead)).one()
        assert (lead.email, lead.language) == (f"camille.{lang}@example.fr", lang)
        assert lead.marketing_opt_in is True
        mails = db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage))
        assert mails == 2
