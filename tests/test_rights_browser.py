"""The whole rights-desk flow in Chromium, in French, as a visitor would go through it."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa

from lorchestre.extensions import db
from lorchestre.models import Lead, OutboxMessage, RightsRequest

LINK = re.compile(r"http://127\.0\.0\.1:5000(/fr/my-data/confirm/\S+)")
EMAIL = "camille.dupre@example.fr"


def latest_link(app) -> str:
    """The path of the link in the newest confirmation e-mail of the outbox."""
    with app.app_context():
        body = db.session.scalars(
            sa.select(OutboxMessage.body)
            .where(OutboxMessage.kind == "rights_link")
            .order_by(OutboxMessage.id.desc())
        ).first()
    return LINK.search(body).group(1)


def ask(
    page, live_server: str, kind_label: str, consent_id: str = "", shot=None
) -> None:
    """Fill the desk's form in as a visitor does, through its labels, and send it."""
    page.goto(f"{live_server}/fr/my-data")
    page.get_by_label("Votre adresse électronique").fill(EMAIL)
    page.get_by_label(kind_label).check()
    if consent_id:
        page.get_by_label("Identifiant de consentement (facultatif)").fill(consent_id)
    if shot:
        shot("0-formulaire")
    page.get_by_role("button", name="M’envoyer le lien").click()
    page.wait_for_url(f"{live_server}/fr/my-data/sent")


@pytest.mark.browser
def test_contact_then_access_download_and_erase_in_french(
    app, live_server, new_page, screenshot_dir, tmp_path
):
    page = new_page()
    shot = lambda name: page.screenshot(  # noqa: E731
        path=screenshot_dir / f"{name}.png", full_page=True
    )

    # A visitor writes to the house, answering the cookie banner first.
    page.goto(f"{live_server}/fr/contact")
    page.get_by_role("button", name="Tout refuser").click()
    page.wait_for_url(f"{live_server}/fr/contact")
    page.get_by_label("Votre nom").fill("Camille Dupré")
    page.get_by_label("Votre adresse électronique").fill(EMAIL)
    page.get_by_label("Téléphone (facultatif)").fill("01 23 45 67 89")
    page.get_by_label("Votre message").fill("Bonjour,\nun conseil pour un cadeau ?")
    page.locator("form.contact-form button[type=submit]").click()
    page.wait_for_url(f"{live_server}/fr/contact/thanks")

    # They find their consent ID, then ask for a copy of their data.
    page.goto(f"{live_server}/fr/cookies")
    consent_id = page.locator("code.consent-id").inner_text()
    ask(page, live_server, "Recevoir une copie de mes données", consent_id, shot)
    assert page.locator("h1").inner_text() == "Consultez votre messagerie"
    shot("1-demande-envoyee")

    # The link from the outbox opens a confirmation page; nothing happens yet.
    page.goto(live_server + latest_link(app))
    assert page.locator("h1").inner_text() == "La copie de vos données"
    shot("2-confirmation-acces")
    page.get_by_role("button", name="Afficher mes données").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Vos données"
    main = page.locator("main").inner_text()
    for text in ("Camille Dupré", EMAIL, "01 23 45 67 89", "un conseil pour un cadeau",
                 consent_id, "Tout refuser"):  # fmt: skip
        assert text in main
    shot("3-rapport")

    with page.expect_download() as info:
        page.get_by_role("button", name="Télécharger mes données (JSON)").click()
    download = info.value
    assert re.fullmatch(
        r"lorchestre-parfum-my-data-\d{4}-\d{2}-\d{2}\.json",
        download.suggested_filename,
    )
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    report = json.loads(target.read_text(encoding="utf-8"))
    assert report["contact_details"]["email"] == EMAIL
    assert report["messages"][0]["text"] == "Bonjour,\nun conseil pour un cadeau ?"
    assert [r["action"] for r in report["cookie_choices"]["records"]] == ["reject_all"]

    # Then they ask for erasure, and confirm it.
    ask(page, live_server, "Effacer mes données")
    erase_link = live_server + latest_link(app)
    page.goto(erase_link)
    assert page.locator("h1").inner_text() == "Effacer vos données"
    assert (
        "Ce que nous conservons, et jusqu’à quand" in page.locator("main").inner_text()
    )
    shot("4-confirmation-effacement")
    page.get_by_role("button", name="Effacer mes données").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Vos données ont été effacées"
    assert "Nous la conservons jusqu’au" in page.locator("main").inner_text()
    shot("5-effacement-fait")

    # The link works once.
    page.goto(erase_link)
    assert page.locator("h1").inner_text() == "Ce lien a déjà été utilisé"
    shot("6-lien-deja-utilise")

    assert [e for e in page.console_errors if "Content Security Policy" in e] == []
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 0
        statuses = db.session.scalars(
            sa.select(RightsRequest.status).order_by(RightsRequest.id)
        ).all()
    assert statuses == ["done", "done"]
