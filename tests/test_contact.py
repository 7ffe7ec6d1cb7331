"""The contact form (spec §6; bad-inputs 1, 5-12, 21): storage, limits, attacks."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from babel.messages.extract import DEFAULT_KEYWORDS, extract
from babel.messages.pofile import read_po
from flask import Flask
from flask_babel import force_locale

from lorchestre.contact import forms
from lorchestre.contact.services import find_lead
from lorchestre.database import DatabaseUnavailable
from lorchestre.extensions import db
from lorchestre.marketing.services import CONSENT_LABEL, CONSENT_WORDING_VERSION
from lorchestre.models import (
    ContactMessage,
    Lead,
    MarketingConsentEvent,
    OutboxMessage,
)

from .conftest import ROOT, csrf_from, make_app
from .contact_helpers import VALID, post_contact


def counts(app: Flask) -> dict[str, int]:
    """Rows in each table the form writes to."""
    with app.app_context():
        return {
            model.__tablename__: db.session.scalar(
                sa.select(sa.func.count()).select_from(model)
            )
            for model in (Lead, ContactMessage, MarketingConsentEvent, OutboxMessage)
        }


NOTHING = {"lead": 0, "contact_message": 0, "marketing_consent_event": 0}


def assert_nothing_stored(app: Flask) -> None:
    assert counts(app) == {**NOTHING, "outbox_message": 0}


def only_lead(app: Flask) -> Lead:
    with app.app_context():
        leads = db.session.scalars(sa.select(Lead)).all()
        assert len(leads) == 1
        db.session.expunge_all()
        return leads[0]


# --- the page -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        (
            "fr",
            [
                "Comment nous utilisons vos données",
                "Responsable du traitement\u00a0:",
                "28 rue Sedaine",
                "Base légale\u00a0:",
                "uniquement le personnel habilité de la Maison",
                "3\u00a0ans à compter de votre dernier contact",
                'href="/fr/my-data"',
                "CNIL",
            ],
        ),
        (
            "en",
            [
                "How we use your data",
                "Controller:",
                "28 rue Sedaine",
                "Legal basis:",
                "only the House’s authorised staff",
                "3 years after your last contact",
                'href="/en/my-data"',
                "CNIL",
            ],
        ),
    ],
)
def test_form_has_the_art13_notice_above_the_button(client, lang, expected):
    html = client.get(f"/{lang}/contact").get_data(as_text=True)
    notice = html.index('class="form-notice"')
    button = html.index('<button class="btn btn-primary" type="submit">')
    assert notice < button
    for text in expected:
        assert text in html[notice:button], text


def test_form_markup_is_accessible_and_csp_clean(client):
    html = client.get("/en/contact").get_data(as_text=True)
    main = html[html.index("<main") : html.index("</main>")]
    for field in ("name", "email", "phone", "company", "message", "marketing"):
        assert f'<label for="{field}">' in main
        assert f'id="{field}"' in main
    assert "style=" not in main
    assert "<script" not in main
    assert re.search(
        r'<input id="marketing" name="marketing" type="checkbox" value="y">', main
    )
    # The honeypot is hidden by a class (CSP forbids inline style) and from AT.
    assert '<div class="hp-field" aria-hidden="true">' in main
    assert re.search(r'<input autocomplete="off" id="website" [^>]*tabindex="-1"', main)


def test_valid_submission_stores_lead_message_and_queues_two_mails(app, client):
    response = post_contact(
        client, phone="+33 1 23 45 67 89", company="Maison Martin", marketing="y"
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/en/contact/thanks")
    assert client.get(response.headers["Location"]).status_code == 200

    lead = only_lead(app)
    assert (lead.name, lead.email, lead.email_key) == (
        "Camille Martin",
        "camille@example.fr",
        "camille@example.fr",
    )
    assert (lead.phone, lead.company) == ("+33 1 23 45 67 89", "Maison Martin")
    assert (lead.status, lead.language) == ("prospect", "en")
    assert lead.last_interaction_at == lead.created_at
    assert lead.marketing_opt_in is True
    assert lead.marketing_wording_version == CONSENT_WORDING_VERSION
    with app.app_context():
        message = db.session.scalars(sa.select(ContactMessage)).one()
        assert message.body == VALID["message"] and message.language == "en"
        mails = {m.kind: m for m in db.session.scalars(sa.select(OutboxMessage))}
    assert set(mails) == {"contact_ack", "contact_notification"}
    ack, notification = mails["contact_ack"], mails["contact_notification"]
    assert ack.to_address == "camille@example.fr"
    assert ack.subject == "We have received your message"
    assert "/en/unsubscribe/" in ack.body  # ticked: the way out comes at once
    assert VALID["message"] not in ack.body  # never a relay for the visitor's text
    assert notification.to_address == app.config["HOUSE_NOTIFICATION_ADDRESS"]
    assert notification.reply_to == "camille@example.fr"
    assert notification.subject == (
        "Nouveau message par le formulaire de contact\u00a0: Camille Martin"
    )
    assert VALID["message"] in notification.body


def test_no_house_address_means_no_notification(tmp_path):
    app = make_app(tmp_path, HOUSE_NOTIFICATION_ADDRESS="")
    try:
        assert post_contact(app.test_client()).status_code == 303
        with app.app_context():
            kinds = list(db.session.scalars(sa.select(OutboxMessage.kind)))
    finally:
        with app.app_context():
            db.session.remove()
            db.drop_all()
            db.engine.dispose()
    assert kinds == ["contact_ack"]


def test_acknowledgement_is_in_the_visitors_language(app, client):
    post_contact(client, "fr")
    with app.app_context():
        ack = db.session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.kind == "contact_ack")
        ).one()
    assert ack.subject == "Nous avons bien reçu votre message"
    assert ack.body.startswith("Bonjour,")
    assert "http://127.0.0.1:5000/fr/my-data" in ack.body
    assert "unsubscribe" not in ack.body  # not ticked: no marketing link


def test_marketing_box_is_separate_and_unticked_by_default(app, client):
    post_contact(client)
    lead = only_lead(app)
    assert lead.marketing_opt_in is False
    assert lead.marketing_opt_in_at is None and lead.marketing_wording_version is None
    assert counts(app)["marketing_consent_event"] == 0


def test_opt_in_is_dated_with_its_wording_version(app, client, time_machine):
    moment = datetime(2027, 5, 4, 10, 30, tzinfo=UTC)
    time_machine.move_to(moment, tick=False)
    post_contact(client, "fr", marketing="y")
    lead = only_lead(app)
    assert lead.marketing_opt_in_at == moment
    with app.app_context():
        event = db.session.scalars(sa.select(MarketingConsentEvent)).one()
    assert (event.event, event.channel, event.language) == (
        "opt_in",
        "contact_form",
        "fr",
    )
    assert (event.occurred_at, event.wording_version) == (
        moment,
        CONSENT_WORDING_VERSION,
    )


def test_marketing_wording_cannot_change_without_a_new_version(app):
    with app.test_request_context():
        texts = []
        for lang in ("en", "fr"):
            with force_locale(lang):
                texts.append(str(CONSENT_LABEL))
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    pinned = {
        "2026-11-25.1": (
            "41828badb49698b8bcdadc3fc7cfd8d339fdbb972d9d38700a76555757deee30"
        ),
    }
    assert pinned.get(CONSENT_WORDING_VERSION) == digest, (
        "the opt-in wording changed: bump CONSENT_WORDING_VERSION and pin the new hash "
        f"{digest}"
    )


# --- CSRF, sizes --------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_post_without_valid_csrf_is_400_and_stores_nothing(app, client, token):
    data = {**VALID, "marketing": "y"}
    if token:
        data["csrf_token"] = token
    response = client.post("/fr/contact", data=data)
    assert response.status_code == 400
    assert '<html lang="fr">' in response.get_data(as_text=True)
    assert_nothing_stored(app)


def test_columns_are_at_least_as_long_as_the_validators(app):
    columns = Lead.__table__.c
    assert columns.name.type.length >= forms.NAME_MAX
    assert columns.email.type.length >= forms.EMAIL_MAX
    assert columns.email_key.type.length >= forms.EMAIL_MAX
    assert columns.phone.type.length >= forms.PHONE_MAX
    assert columns.company.type.length >= forms.COMPANY_MAX
    assert isinstance(ContactMessage.__table__.c.body.type, sa.Text)


def long_email(length: int) -> str:
    """A syntactically valid address of exactly ``length`` characters."""
    local = "a" * 64
    need = length - len(local) - len("@") - len(".fr")  # labels and their dots
    labels = []
    while need > 0:
        take = min(63, need)
        if need - take == 1:  # would leave a lone dot
            take -= 1
        labels.append("b" * take)
        need -= take + 1
    address = f"{local}@{'.'.join(labels)}.fr"
    assert len(address) == length, len(address)
    return address


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "N" * forms.NAME_MAX),
        ("email", long_email(forms.EMAIL_MAX)),
        ("phone", "+33 " + "1-" * ((forms.PHONE_MAX - 4) // 2)),
        ("company", "C" * forms.COMPANY_MAX),
        ("message", "M" * forms.MESSAGE_MAX),
    ],
)
def test_each_field_accepts_its_maximum_length(app, client, field, value):
    response = post_contact(client, **{field: value})
    assert response.status_code == 303, response.get_data(as_text=True)
    with app.app_context():
        lead = db.session.scalars(sa.select(Lead)).one()
        stored = (
            db.session.scalars(sa.select(ContactMessage.body)).one()
            if field == "message"
            else getattr(lead, field)
        )
    assert stored == value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "N" * (forms.NAME_MAX + 1)),
        ("email", long_email(forms.EMAIL_MAX + 1)),
        ("phone", "1" * (forms.PHONE_MAX + 1)),
        ("company", "C" * (forms.COMPANY_MAX + 1)),
        ("message", "M" * (forms.MESSAGE_MAX + 1)),
        ("name", ""),
        ("email", ""),
        ("message", ""),
        ("name", "   "),
        ("message", " \r\n\t "),
    ],
)
def test_too_long_or_empty_fields_are_refused_next_to_the_field(
    app, client, field, value
):
    response = post_contact(client, "fr", **{field: value})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f'<ul class="errors" id="{field}-errors">' in html
    assert re.search(rf'aria-describedby="{field}-errors"[^>]* id="{field}"', html)
    assert 'aria-invalid="true"' in html
    assert "Votre message n’a pas encore été envoyé" in html  # the page's language
    # The other fields keep what the visitor typed.
    if field != "name":
        assert 'value="Camille Martin"' in html
    if field != "message":
        assert "je cherche un parfum boisé.</textarea>" in html
    assert_nothing_stored(app)


def test_error_messages_follow_the_page_language(client):
    fr = post_contact(client, "fr", name="").get_data(as_text=True)
    en = post_contact(client, "en", name="", email="x").get_data(as_text=True)
    assert "Veuillez indiquer votre nom." in fr
    assert "Please enter your name." in en
    assert "Please enter a valid e-mail address, such as name@example.com." in en


def test_body_over_max_content_length_is_413_and_stores_nothing(app, client):
    response = post_contact(
        client, message="x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    )
    assert response.status_code == 413
    assert_nothing_stored(app)


def test_too_many_form_parts_is_413_and_stores_nothing(app, client):
    page = client.get("/en/contact")
    data = {"csrf_token": csrf_from(page.data), **VALID}
    data.update({f"extra{i}": "x" for i in range(app.config["MAX_FORM_PARTS"] + 1)})
    response = client.post("/en/contact", data=data, content_type="multipart/form-data")
    assert response.status_code == 413
    assert_nothing_stored(app)


# --- hostile input ------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "camille@example.fr\r\nBcc: victim@evil.example"),
        ("email", "camille@example.fr\nBcc: victim@evil.example"),
        ("name", "Camille\r\nBcc: victim@evil.example"),
        ("name", "Camille\nSubject: hello"),
        ("company", "Maison\rBcc: victim@evil.example"),
        ("phone", "0123456789\r\nBcc: victim@evil.example"),
    ],
)
def test_header_injection_is_refused(app, client, field, value):
    response = post_contact(client, **{field: value})
    assert response.status_code == 200
    assert f'id="{field}-errors"' in response.get_data(as_text=True)
    assert_nothing_stored(app)


@pytest.mark.parametrize(
    "char",
    ["\x00", "\x1b", "\u202e", "\u2066", "\u200b", "\ufeff", "\u2028", "\x7f"],
    ids=["NUL", "ESC", "RLO", "LRI", "ZWSP", "BOM", "LSEP", "DEL"],
)
@pytest.mark.parametrize("field", ["name", "company", "email"])
def test_control_and_invisible_characters_are_refused_in_one_line_fields(
    app, client, char, field
):
    value = {"name": "Jo{}sé", "company": "Mai{}son", "email": "jo{}se@example.fr"}[
        field
    ]
    response = post_contact(client, **{field: value.format(char)})
    assert response.status_code == 200
    assert f'id="{field}-errors"' in response.get_data(as_text=True)
    assert_nothing_stored(app)


@pytest.mark.parametrize(
    "char",
    ["\x00", "\x1b", "\u202e", "\u2067", "\x07"],
    ids=["NUL", "ESC", "RLO", "RLI", "BEL"],
)
def test_control_characters_and_bidi_overrides_are_refused_in_the_message(
    app, client, char
):
    response = post_contact(client, message=f"Bonjour {char}le monde")
    assert response.status_code == 200
    assert 'id="message-errors"' in response.get_data(as_text=True)
    assert_nothing_stored(app)


def test_message_keeps_newlines_tabs_and_emoji_sequences(app, client):
    body = "Bonjour,\r\n\r\n\tUne question :\r\nfamille 👨\u200d👩\u200d👧 ?"
    assert post_contact(client, message=body).status_code == 303
    with app.app_context():
        stored = db.session.scalars(sa.select(ContactMessage.body)).one()
    assert stored == "Bonjour,\n\n\tUne question :\nfamille 👨\u200d👩\u200d👧 ?"


PAYLOADS = {
    "name": '"><img src=x onerror=alert(1)>',
    "company": "javascript:alert(1)",
    "message": "<script>alert('x')</script> & ' OR 1=1-- % _ \\",
}


def test_markup_payloads_are_stored_literally(app, client):
    assert post_contact(client, **PAYLOADS).status_code == 303
    lead = only_lead(app)
    assert (lead.name, lead.company) == (PAYLOADS["name"], PAYLOADS["company"])
    with app.app_context():
        assert (
            db.session.scalars(sa.select(ContactMessage.body)).one()
            == PAYLOADS["message"]
        )


def test_markup_payloads_are_rendered_escaped_when_the_form_comes_back(client):
    response = post_contact(client, email="not-an-address", **PAYLOADS)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<img src=x" not in html and "<script>alert" not in html
    assert 'value="&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"' in html
    assert (
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#39; OR 1=1--" in html
    )


def test_the_thanks_page_echoes_nothing(client):
    response = post_contact(client, **PAYLOADS)
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "alert" not in html


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", '=HYPERLINK("http://evil.example","click")'),
        ("company", "@SUM(1+1)*cmd|' /C calc'!A0"),
        ("message", "+cmd|' /C calc'!A0"),
        ("name", "-2+3"),
    ],
)
def test_csv_formula_payloads_are_stored_literally(app, client, field, value):
    assert post_contact(client, **{field: value}).status_code == 303
    with app.app_context():
        lead = db.session.scalars(sa.select(Lead)).one()
        stored = (
            db.session.scalars(sa.select(ContactMessage.body)).one()
            if field == "message"
            else getattr(lead, field)
        )
    assert stored == value  # prefixing is the CSV exporter's job (ASVS 1.2.10)


@pytest.mark.parametrize(
    "phone", ["+cmd|' /C calc'!A0", "=1+2", "-2+3", "12", "06 12 ab 34 56"]
)
def test_phone_accepts_only_phone_numbers(app, client, phone):
    response = post_contact(client, phone=phone)
    assert 'id="phone-errors"' in response.get_data(as_text=True)
    assert_nothing_stored(app)


def test_honeypot_gets_the_same_answer_and_nothing_is_stored(app, client):
    response = post_contact(client, website="http://spam.example", marketing="y")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/en/contact/thanks")
    assert_nothing_stored(app)


# --- one lead per address -----------------------------------------------------


def test_nfd_and_nfc_spellings_are_the_same_lead_stored_nfc(app, client):
    nfd_name, nfd_email = "Jose\u0301 Garci\u0301a", "jose\u0301@exemple.fr"
    assert post_contact(client, name=nfd_name, email=nfd_email).status_code == 303
    assert (
        post_contact(client, name="José García", email="JOSÉ@Exemple.FR").status_code
        == 303
    )
    lead = only_lead(app)
    assert lead.name == "José García" and lead.email_key == "josé@exemple.fr"
    assert counts(app)["contact_message"] == 2
    with app.app_context():
        assert find_lead("Jose\u0301@EXEMPLE.fr").id == lead.id


def test_homoglyph_address_is_a_different_lead(app, client):
    post_contact(client, email="jose@exemple.fr")
    post_contact(client, email="j\u043ese@exemple.fr")  # Cyrillic o
    post_contact(client, email="\uff4a\uff4f\uff53\uff45@exemple.fr")  # fullwidth
    assert counts(app)["lead"] == 3
    with app.app_context():
        assert find_lead("jose@exemple.fr").email == "jose@exemple.fr"


def test_a_known_address_updates_its_lead(app, client, time_machine):
    first = datetime(2027, 1, 10, 9, 0, tzinfo=UTC)
    time_machine.move_to(first, tick=False)
    post_contact(client, "fr", phone="01 23 45 67 89", company="Maison A")
    time_machine.move_to(first + timedelta(days=40), tick=False)
    post_contact(client, "en", name="Camille M.", company="", message="Second message")
    lead = only_lead(app)
    assert lead.created_at == first
    assert lead.last_interaction_at == first + timedelta(days=40)
    assert (lead.name, lead.language) == ("Camille M.", "en")
    assert (lead.phone, lead.company) == ("01 23 45 67 89", "Maison A")  # kept
    assert counts(app) == {
        "lead": 1,
        "contact_message": 2,
        "marketing_consent_event": 0,
        "outbox_message": 4,
    }


def test_a_client_stays_a_client(app, client):
    post_contact(client)
    with app.app_context():
        db.session.execute(sa.update(Lead).values(status="client"))
        db.session.commit()
    post_contact(client, message="Again")
    assert only_lead(app).status == "client"


# --- abuse, faults ------------------------------------------------------------


@pytest.fixture
def limited_app(tmp_path: Path):
    """An app whose contact form allows two POSTs a minute per client."""
    app = make_app(tmp_path, CONTACT_RATE_LIMIT="2 per minute")
    yield app
    with app.app_context():
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


def test_rate_limit_answers_429_in_the_visitors_language(limited_app):
    client = limited_app.test_client()
    assert post_contact(client, "fr").status_code == 303
    assert post_contact(client, "fr", email="not-an-address").status_code == 200
    response = post_contact(
        client, "fr", email="third@example.fr", headers={"X-Forwarded-For": "6.6.6.6"}
    )
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    html = response.get_data(as_text=True)
    assert '<html lang="fr">' in html and "Too many requests" in html
    # Changing X-Forwarded-For does not reset the key (no proxy is trusted).
    again = post_contact(client, "en", headers={"X-Forwarded-For": "7.7.7.7"})
    assert again.status_code == 429
    # Reading the form is never limited.
    assert client.get("/fr/contact").status_code == 200
    assert counts(limited_app)["lead"] == 1


def test_database_unavailable_is_503_with_the_input_kept(app, client, monkeypatch):
    def unavailable(_submission):
        raise DatabaseUnavailable("database is locked")

    monkeypatch.setattr("lorchestre.contact.views.submit_contact", unavailable)
    response = post_contact(client, "fr")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    html = response.get_data(as_text=True)
    assert "Nous n’avons pas pu enregistrer votre message" in html
    assert 'value="Camille Martin"' in html and "parfum boisé.</textarea>" in html


# --- translations -------------------------------------------------------------

OWN_FILES = [
    "lorchestre/contact/forms.py",
    "lorchestre/contact/services.py",
    "lorchestre/marketing/services.py",
    "templates/contact/form.html",
    "templates/contact/thanks.html",
    "templates/marketing/unsubscribe.html",
    "templates/mail/contact_ack.txt",
    "templates/mail/contact_notification.txt",
    "templates/mail/marketing_footer.txt",
]


def own_msgids() -> set[str]:
    """The messages extracted from this feature's files, as `translate extract` does."""
    ids = set()
    for path in OWN_FILES:
        method = "python" if path.endswith(".py") else "jinja2"
        with (ROOT / path).open("rb") as handle:
            for _line, msgid, _comments, _context in extract(
                method,
                handle,
                keywords={**DEFAULT_KEYWORDS, "_l": None},
                options={"trimmed": "true"},
            ):
                ids.add(msgid)
    return ids


def test_contact_strings_have_french_with_french_typography():
    with (ROOT / "translations/fr/LC_MESSAGES/messages.po").open("rb") as handle:
        catalog = read_po(handle)
    msgids = own_msgids()
    assert len(msgids) > 50
    for msgid in msgids:
        message = catalog.get(msgid)
        assert message is not None, f"run `flask translate update`: {msgid!r}"
        assert message.string, f"no French for {msgid!r}"
        assert "fuzzy" not in message.flags, msgid
        text = re.sub(r"<[^>]+>|https?://\S+|%\(\w+\)\w", "", message.string)
        # Non-breaking space before : ; ? ! and inside « », as in the policy pages.
        assert not re.search(r"[^\u00a0\u202f][:;?!](\s|$)", text), message.string
        assert not re.search(r"«[^\u00a0]|[^\u00a0]»", text), message.string
