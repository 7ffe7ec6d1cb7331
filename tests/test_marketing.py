"""Marketing e-mails: opt-in only, one-click unsubscribe by signed link (L.34-5)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from itsdangerous import base64_decode

from lorchestre.database import write_transaction
from lorchestre.extensions import db
from lorchestre.marketing.services import (
    MarketingNotAllowed,
    consent_history,
    queue_marketing_email,
    unsubscribe_token,
)
from lorchestre.models import Lead, MarketingConsentEvent, OutboxMessage
from lorchestre.outbox import send_due
from lorchestre.retention import erase_lead
from lorchestre.tokens import SALT_CONSENT_COOKIE, SALT_UNSUBSCRIBE, serializer

from .contact_helpers import post_contact

T0 = datetime(2027, 4, 1, 8, 0, tzinfo=UTC)


def the_lead(app: Flask) -> Lead:
    with app.app_context():
        lead = db.session.scalars(sa.select(Lead)).one()
        db.session.expunge(lead)
        return lead


def token_for(app: Flask) -> str:
    with app.app_context():
        return unsubscribe_token(db.session.scalars(sa.select(Lead)).one())


def events(app: Flask) -> list[tuple[str, str]]:
    with app.app_context():
        lead = db.session.scalars(sa.select(Lead)).one()
        return [(e.event, e.channel) for e in consent_history(lead)]


def queue_campaign(app: Flask) -> None:
    with app.app_context(), write_transaction():
        lead = db.session.scalars(sa.select(Lead)).one()
        queue_marketing_email(lead, subject="Nouveau parfum", body="Découvrez Ambre.")


@pytest.fixture
def subscriber(app, client, time_machine):
    """A French visitor who ticked the marketing box at T0."""
    time_machine.move_to(T0, tick=False)
    post_contact(client, "fr", marketing="y")
    return app


def test_a_marketing_mail_carries_list_unsubscribe_and_the_link(subscriber):
    app = subscriber
    queue_campaign(app)
    app.extensions["mailman"].outbox = []
    with app.app_context():
        send_due()
        [mail] = [
            m for m in app.extensions["mailman"].outbox if m.subject == "Nouveau parfum"
        ]
        message = mail.message()
    link = f"http://127.0.0.1:5000/fr/unsubscribe/{token_for(app)}"
    assert message["List-Unsubscribe"] == f"<{link}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.body.startswith("Découvrez Ambre.")
    assert "Vous recevez ce courriel de L’ORCHESTRE PARFUM" in mail.body
    assert link in mail.body


def test_the_link_names_the_lead_by_an_opaque_id_only(subscriber):
    token = token_for(subscriber)
    payload = json.loads(base64_decode(token.split(".")[0]))
    assert payload == {"l": the_lead(subscriber).public_id}
    assert "@" not in token and "camille" not in token.lower()


def test_a_get_never_unsubscribes(subscriber):
    # Mail scanners open links: only the POST from the page's button counts.
    response = subscriber.test_client().get(f"/fr/unsubscribe/{token_for(subscriber)}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert '<form method="post"' in html and "Se désinscrire" in html
    assert the_lead(subscriber).marketing_opt_in is True
    assert events(subscriber) == [("opt_in", "contact_form")]


def test_the_button_unsubscribes_at_once_without_a_session(subscriber, time_machine):
    app = subscriber
    queue_campaign(app)
    time_machine.move_to(T0 + timedelta(days=3), tick=False)
    # A fresh browser: no session, no CSRF token; the signed link is enough.
    response = app.test_client().post(f"/fr/unsubscribe/{token_for(app)}")
    assert response.status_code == 200
    assert "Votre désinscription est enregistrée" in response.get_data(as_text=True)
    lead = the_lead(app)
    assert lead.marketing_opt_in is False
    assert lead.marketing_opt_out_at == T0 + timedelta(days=3)
    assert lead.last_interaction_at == T0  # unsubscribing does not extend retention
    assert events(app) == [("opt_in", "contact_form"), ("opt_out", "unsubscribe_link")]
    with app.app_context():
        kinds = set(db.session.scalars(sa.select(OutboxMessage.kind)))
    assert kinds == {"contact_ack", "contact_notification"}  # the campaign mail is gone


def test_rfc8058_one_click_post_is_honoured(subscriber):
    response = subscriber.test_client().post(
        f"/en/unsubscribe/{token_for(subscriber)}",
        data={"List-Unsubscribe": "One-Click"},
    )
    assert response.status_code == 200
    assert the_lead(subscriber).marketing_opt_in is False
    assert events(subscriber)[-1] == ("opt_out", "one_click")


def test_unsubscribing_twice_records_it_once(subscriber):
    client, path = subscriber.test_client(), f"/fr/unsubscribe/{token_for(subscriber)}"
    assert client.post(path).status_code == 200
    assert client.post(path).status_code == 200
    assert [e for e in events(subscriber) if e[0] == "opt_out"] == [
        ("opt_out", "unsubscribe_link")
    ]


def _with_signature_flipped(token: str) -> str:
    head, signature = token.rsplit(".", 1)
    return f"{head}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"


def forged_tokens(app: Flask) -> list[str]:
    genuine = token_for(app)
    with app.app_context():
        lead = db.session.scalars(sa.select(Lead)).one()
        other_purpose = serializer(SALT_CONSENT_COOKIE).dumps({"l": lead.public_id})
        not_a_dict = serializer(SALT_UNSUBSCRIBE).dumps(["l", lead.public_id])
    payload, rest = genuine.split(".", 1)
    return [
        "not-a-token",
        payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + rest,
        other_purpose,
        not_a_dict,
        # Change the signature's first character: its last one may only hold padding bits.
        _with_signature_flipped(genuine),
    ]


@pytest.mark.parametrize("method", ["get", "post"])
def test_forged_links_change_nothing(subscriber, method):
    client = subscriber.test_client()
    for token in forged_tokens(subscriber):
        response = getattr(client, method)(f"/fr/unsubscribe/{token}")
        assert response.status_code == 400, token
        assert "Ce lien ne fonctionne pas" in response.get_data(as_text=True)
    assert the_lead(subscriber).marketing_opt_in is True
    assert events(subscriber) == [("opt_in", "contact_form")]


def test_the_link_of_an_erased_lead_answers_like_any_other(subscriber):
    token = token_for(subscriber)
    with subscriber.app_context(), write_transaction():
        erase_lead(db.session.scalars(sa.select(Lead)).one())
    response = subscriber.test_client().post(f"/fr/unsubscribe/{token}")
    assert response.status_code == 200
    assert "Votre désinscription est enregistrée" in response.get_data(as_text=True)


def test_no_marketing_mail_without_opt_in(app, client):
    post_contact(client)
    with app.app_context(), write_transaction():
        lead = db.session.scalars(sa.select(Lead)).one()
        with pytest.raises(MarketingNotAllowed):
            queue_marketing_email(lead, subject="Promo", body="...")
    with app.app_context():
        kinds = set(db.session.scalars(sa.select(OutboxMessage.kind)))
    assert "marketing" not in kinds


def test_opting_in_again_after_unsubscribing_is_a_new_dated_consent(
    subscriber, time_machine
):
    app, client = subscriber, subscriber.test_client()
    post_contact(client, "fr", marketing="y", message="Encore")  # same wording: no-op
    assert events(app) == [("opt_in", "contact_form")]
    client.post(f"/fr/unsubscribe/{token_for(app)}")
    time_machine.move_to(T0 + timedelta(days=10), tick=False)
    post_contact(client, "fr", marketing="y", message="Je change d’avis")
    lead = the_lead(app)
    assert lead.marketing_opt_in is True and lead.marketing_opt_out_at is None
    assert lead.marketing_opt_in_at == T0 + timedelta(days=10)
    assert events(app) == [
        ("opt_in", "contact_form"),
        ("opt_out", "unsubscribe_link"),
        ("opt_in", "contact_form"),
    ]
    with app.app_context():
        dates = list(db.session.scalars(sa.select(MarketingConsentEvent.occurred_at)))
    assert dates[0] == T0 and dates[-1] == T0 + timedelta(days=10)
