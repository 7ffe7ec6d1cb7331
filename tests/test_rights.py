"""Rights desk: the request, the one-time link, access, rectify, erase, object, register."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from babel.messages.extract import DEFAULT_KEYWORDS, extract
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer, base64_decode
from werkzeug.test import TestResponse

from lorchestre.database import DatabaseUnavailable, write_transaction
from lorchestre.extensions import db, limiter
from lorchestre.marketing.services import (
    MarketingNotAllowed,
    queue_marketing_email,
    unsubscribe_token,
)
from lorchestre.models import (
    ConsentRecord,
    Lead,
    MarketingConsentEvent,
    OutboxMessage,
    RightsRequest,
)
from lorchestre.outbox import send_due
from lorchestre.retention import erase_lead, run_retention
from lorchestre.rights import services
from lorchestre.rights.services import (
    ADDRESS_LIMIT,
    NO_DATA,
    AlreadyExtended,
    ExtensionTooLate,
    InvalidReason,
    RequestClosed,
    RequestNotFound,
    add_months,
    due_date,
    extend_request,
    list_requests,
    mark_done,
    refuse_request,
    register_request,
)
from lorchestre.tokens import (
    SALT_CONSENT_COOKIE,
    SALT_RIGHTS_DOWNLOAD,
    SALT_RIGHTS_REQUEST,
    SALT_UNSUBSCRIBE,
    serializer,
)

from .conftest import ROOT, csrf_from
from .contact_helpers import post_contact

T0 = datetime(2027, 3, 10, 9, 0, tzinfo=UTC)
LINK = re.compile(r"http://127\.0\.0\.1:5000(/(?:fr|en)/my-data/confirm/\S+)")
CSRF_VALUE = re.compile(r'(name="csrf_token" (?:type="hidden" )?value=")[^"]+(")')
CAMILLE = {
    "name": "Camille Martin",
    "email": "camille@example.fr",
    "phone": "+33 1 23 45 67 89",
    "company": "Maison Martin",
    "message": "Bonjour, je cherche un parfum boisé pour l’hiver.",
}
DOMINIQUE = {
    "name": "Dominique Zorn",
    "email": "dominique@example.org",
    "phone": "06 11 22 33 44",
    "company": "Zorn & Fils",
    "message": "Avez-vous un coffret de miniatures ?",
}


# --- helpers --------------------------------------------------------------------


def ask(
    client: FlaskClient,
    lang: str = "en",
    *,
    email: str = CAMILLE["email"],
    kind: str | None = "access",
    consent_id: str = "",
    headers: dict | None = None,
) -> TestResponse:
    """GET the desk for a CSRF token, then POST a request."""
    page = client.get(f"/{lang}/my-data", headers=headers or {})
    data = {
        "csrf_token": csrf_from(page.data),
        "email": email,
        "consent_id": consent_id,
    }
    if kind is not None:
        data["kind"] = kind
    return client.post(f"/{lang}/my-data", data=data, headers=headers or {})


def link_mails(app: Flask) -> list[OutboxMessage]:
    with app.app_context():
        mails = db.session.scalars(
            sa.select(OutboxMessage)
            .where(OutboxMessage.kind == "rights_link")
            .order_by(OutboxMessage.id)
        ).all()
        for mail in mails:
            db.session.expunge(mail)
        return mails


def last_link(app: Flask) -> str:
    """The path of the link in the latest confirmation e-mail."""
    return LINK.search(link_mails(app)[-1].body).group(1)


def request_link(app: Flask, client: FlaskClient, kind: str, **fields) -> str:
    assert ask(client, kind=kind, **fields).status_code == 303
    return last_link(app)


def confirm(client: FlaskClient, path: str, **fields) -> TestResponse:
    """Open the link (GET, for the CSRF token), then confirm it (POST)."""
    page = client.get(path)
    token = csrf_from(page.data) if page.status_code == 200 else csrf_token(client)
    return client.post(path, data={"csrf_token": token, **fields})


def csrf_token(client: FlaskClient) -> str:
    return csrf_from(client.get("/en/my-data").data)


def download(client: FlaskClient, report_page: TestResponse) -> TestResponse:
    grant = re.search(r'name="grant" value="([^"]+)"', report_page.text).group(1)
    return client.post(
        "/en/my-data/download",
        data={"csrf_token": csrf_token(client), "grant": grant},
    )


def seed(client: FlaskClient, person: dict, lang: str = "en", **extra) -> None:
    assert post_contact(client, lang, **person, **extra).status_code == 303


def give_consent(client: FlaskClient, action: str = "accept_all") -> str:
    """Record a cookie choice for ``client`` and return its consent ID."""
    response = client.post(
        "/consent",
        data={"csrf_token": csrf_token(client), "action": action, "lang": "en"},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200
    return response.json["consent_id"]


def entries(app: Flask) -> list[RightsRequest]:
    with app.app_context():
        rows = db.session.scalars(
            sa.select(RightsRequest).order_by(RightsRequest.id)
        ).all()
        for row in rows:
            db.session.expunge(row)
        return rows


def the_lead(app: Flask, email: str = CAMILLE["email"]) -> Lead | None:
    with app.app_context():
        lead = db.session.scalars(sa.select(Lead).where(Lead.email == email)).first()
        if lead is not None:
            db.session.expunge(lead)
        return lead


def snapshot(app: Flask) -> dict[str, list[tuple]]:
    """Every row of every table, to prove that something changed nothing."""
    with app.app_context():
        return {
            table.name: sorted(
                (tuple(map(repr, row)) for row in db.session.execute(table.select())),
            )
            for table in db.metadata.sorted_tables
        }


def text_cells(app: Flask) -> list[tuple[str, str, str]]:
    """(table, column, value) for every text-like cell of every table."""
    cells = []
    with app.app_context():
        for table in db.metadata.sorted_tables:
            columns = [
                column
                for column in table.columns
                if isinstance(column.type, sa.String | sa.Text | sa.JSON)
            ]
            if not columns:
                continue
            for row in db.session.execute(sa.select(*columns)):
                for column, value in zip(columns, row, strict=True):
                    if value is not None:
                        text = value if isinstance(value, str) else json.dumps(value)
                        cells.append((table.name, column.name, text))
    return cells


def without_csrf(html: str) -> str:
    return CSRF_VALUE.sub(r"\1CSRF\2", html)


def main_text(response: TestResponse) -> str:
    html = response.text
    return html[html.index("<main") : html.index("</main>")]


# --- the request form -------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("fr", ["Mes données", "Recevoir une copie de mes données", "Effacer mes données",
                "Identifiant de consentement (facultatif)", "M’envoyer le lien"]),
        ("en", ["My data", "Receive a copy of my data", "Erase my data",
                "Consent ID (optional)", "Send me the link"]),
    ],
)  # fmt: skip
def test_desk_offers_the_four_requests_in_both_languages(client, lang, expected):
    response = client.get(f"/{lang}/my-data")
    assert response.status_code == 200
    html = response.text
    for text in expected:
        assert text in html
    for kind in services.KINDS:
        assert f'type="radio" value="{kind}"' in html or f'value="{kind}"' in html
    assert " style=" not in html and "<script>" not in html
    assert not re.search(r'type="radio"[^>]* checked', html)


def test_known_and_unknown_addresses_get_byte_identical_answers(
    app, client, time_machine
):
    time_machine.move_to(T0, tick=False)
    seed(client, CAMILLE)
    answers = []
    for email in (CAMILLE["email"], "nobody-here@example.fr"):
        limiter.reset()  # the same remaining quota in both answers' headers
        posted = ask(client, "fr", email=email)
        page = client.get(posted.headers["Location"])
        answers.append(
            [
                (r.status_code, sorted(r.headers.items()), without_csrf(r.text))
                for r in (posted, page)
            ]
        )
    known, unknown = answers
    assert known == unknown
    assert known[0][0] == 303 and known[1][0] == 200
    assert "Consultez votre messagerie" in known[1][2]
    # Only the known address was sent a link; both requests are in the register.
    assert len(link_mails(app)) == 1
    assert [(e.status, e.refusal_reason) for e in entries(app)] == [
        ("awaiting_confirmation", None),
        ("refused", NO_DATA),
    ]


def test_the_same_work_is_done_for_an_unknown_address(app, client, monkeypatch):
    """No early return: the e-mail is rendered for both; only queueing differs."""
    seed(client, CAMILLE)
    rendered = []
    original = services._link_mail

    def spy(entry, language):
        rendered.append(entry.kind)
        return original(entry, language)

    monkeypatch.setattr(services, "_link_mail", spy)
    ask(client, email=CAMILLE["email"])
    ask(client, email="nobody-here@example.fr")
    assert rendered == ["access", "access"]


@pytest.mark.parametrize(
    ("fields", "field_error"),
    [
        ({"email": ""}, "Veuillez indiquer votre adresse électronique."),
        (
            {"email": "not-an-address"},
            "Saisissez une adresse électronique valide",
        ),
        ({"email": "a@x.fr\r\nBcc: v@evil.example"}, "adresse électronique valide"),
        ({"kind": None}, "Veuillez choisir ce que vous souhaitez faire."),
        ({"kind": "steal"}, "Veuillez choisir ce que vous souhaitez faire."),
        ({"consent_id": "' OR 1=1--"}, "Ce n’est pas un identifiant de consentement"),
    ],
)
def test_invalid_requests_are_refused_next_to_the_field(
    app, client, fields, field_error
):
    seed(client, CAMILLE)
    before = snapshot(app)
    response = ask(client, "fr", **fields)
    assert response.status_code == 200
    assert field_error in response.text
    assert "Votre demande n’a pas encore été envoyée" in response.text
    assert snapshot(app) == before


def test_post_without_csrf_is_400_and_does_nothing(app, client):
    seed(client, CAMILLE)
    before = snapshot(app)
    response = client.post(
        "/en/my-data", data={"email": CAMILLE["email"], "kind": "erase"}
    )
    assert response.status_code == 400
    assert snapshot(app) == before

    path = request_link(app, client, "erase")
    before = snapshot(app)
    assert client.post(path, data={}).status_code == 400
    assert client.post(path, data={"csrf_token": "forged"}).status_code == 400
    assert snapshot(app) == before
    assert the_lead(app) is not None


def test_per_client_rate_limit_answers_429_in_the_page_language(app_factory):
    app = app_factory(RIGHTS_RATE_LIMIT="2 per minute")
    client = app.test_client()
    assert ask(client, "fr").status_code == 303
    assert ask(client, "fr", email="other@example.fr").status_code == 303
    response = ask(client, "fr", headers={"X-Forwarded-For": "6.6.6.6"})
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert '<html lang="fr">' in response.text
    assert client.get("/fr/my-data").status_code == 200  # reading is never limited
    assert len(entries(app)) == 2


def test_per_address_limit_stops_mails_but_not_the_answer(
    app_factory, time_machine, caplog
):
    """20 requests for one victim from rotating addresses: 3 mails, then silence."""
    app = app_factory(RIGHTS_RATE_LIMIT="100 per minute")
    client = app.test_client()
    time_machine.move_to(T0, tick=False)
    seed(client, CAMILLE)
    caplog.set_level(logging.WARNING, logger=app.logger.name)
    answers = set()
    for i in range(20):
        response = ask(
            client,
            email=CAMILLE["email"].upper() if i % 2 else CAMILLE["email"],
            kind=services.KINDS[i % 4],
            headers={"X-Forwarded-For": f"10.0.0.{i}"},
        )
        answers.add((response.status_code, response.headers["Location"]))
    assert answers == {(303, "/en/my-data/sent")}
    limit = app.config["RIGHTS_ADDRESS_LIMIT"]
    assert len(link_mails(app)) == limit == 3
    statuses = [(e.status, e.refusal_reason) for e in entries(app)]
    assert statuses[:limit] == [("awaiting_confirmation", None)] * limit
    assert statuses[limit:] == [("refused", ADDRESS_LIMIT)] * (20 - limit)
    # Logged for the DPO, by keyed hash only.
    logged = [r.getMessage() for r in caplog.records if "daily limit" in r.message]
    assert len(logged) == 20 - limit
    fingerprint = entries(app)[0].address_hash
    assert all(fingerprint[:16] in m and "camille" not in m.lower() for m in logged)
    # A day later, the address may be sent a link again.
    time_machine.move_to(T0 + timedelta(days=1, seconds=1), tick=False)
    ask(client, headers={"X-Forwarded-For": "10.0.1.1"})
    assert len(link_mails(app)) == limit + 1


# --- the e-mail and its link ---------------------------------------------------


def test_link_mail_is_in_the_leads_language_on_base_url_and_carries_no_address(
    app, client
):
    seed(client, CAMILLE, "fr")
    # Asked from the English page with a forged Host: the mail still uses BASE_URL
    # and the language the person wrote to us in.
    response = ask(client, "en", email="CAMILLE@Example.FR", kind="erase",
                   headers={"Host": "evil.example"})  # fmt: skip
    assert response.status_code == 303
    [mail] = link_mails(app)
    assert mail.to_address == CAMILLE["email"]
    assert mail.subject == "Confirmez votre demande concernant vos données"
    assert "l’effacement des données que nous détenons" in mail.body
    assert "dans un délai de 24\u00a0heures" in mail.body
    assert "evil.example" not in mail.body
    path = LINK.search(mail.body).group(1)
    assert path.startswith("/fr/my-data/confirm/")
    token = path.rsplit("/", 1)[1]
    payload = json.loads(base64_decode(token.split(".")[0]))
    [entry] = entries(app)
    assert payload == {"r": entry.public_id}
    assert len(entry.public_id) >= 22  # 128 random bits
    assert "camille" not in token.lower()


def test_a_foreign_host_is_refused_when_trusted_hosts_are_set(app_factory):
    app = app_factory(TRUSTED_HOSTS=["localhost"])
    client = app.test_client()
    assert client.get("/en/my-data").status_code == 200
    response = client.get("/en/my-data", headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert "evil" not in response.text


def test_get_of_the_link_changes_nothing(app_factory):
    """Mail scanners open links: a GET never acts, whatever the request."""
    app = app_factory(RIGHTS_ADDRESS_LIMIT=4)
    client = app.test_client()
    seed(client, CAMILLE, marketing="y")
    paths = {kind: request_link(app, client, kind) for kind in services.KINDS}
    before = snapshot(app)
    for kind, path in paths.items():
        for _ in range(2):
            response = client.get(path)
            assert response.status_code == 200, kind
            assert response.headers["Cache-Control"] == "no-store"
    assert snapshot(app) == before


# --- access -------------------------------------------------------------------------


def two_people(app: Flask) -> tuple[FlaskClient, str, str]:
    """Camille (two messages, subscribed, a consent ID) and Dominique (likewise)."""
    camille, dominique = app.test_client(), app.test_client()
    second = "Et un second message, en deux lignes.\nMerci."
    seed(camille, CAMILLE, "fr", marketing="y")
    seed(camille, {**CAMILLE, "message": second}, "fr")
    seed(dominique, DOMINIQUE, "en", marketing="y")
    camille_consent = give_consent(camille, "accept_all")
    give_consent(camille, "withdraw")
    dominique_consent = give_consent(dominique, "reject_all")
    return camille, camille_consent, dominique_consent


def test_access_report_holds_everything_and_only_that_person(app, time_machine):
    time_machine.move_to(T0, tick=False)
    camille, camille_consent, dominique_consent = two_people(app)
    path = request_link(app, camille, "access", consent_id=camille_consent)
    page = confirm(camille, path)
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    response = download(camille, page)
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    assert response.headers["Cache-Control"] == "no-store"
    report = json.loads(response.data)

    details = report["contact_details"]
    assert {k: details[k] for k in ("email", "name", "phone", "company")} == {
        k: CAMILLE[k] for k in ("email", "name", "phone", "company")
    }
    assert details["status"] == "prospect" and details["language"] == "fr"
    lead = the_lead(app)
    assert (
        report["retention"]["kept_until"]
        == (
            lead.last_interaction_at.date().replace(
                year=lead.last_interaction_at.year + 3
            )
        ).isoformat()
    )
    assert [m["text"] for m in report["messages"]] == [
        CAMILLE["message"],
        "Et un second message, en deux lignes.\nMerci.",
    ]
    assert report["marketing_emails"]["subscribed"] is True
    assert [e["event"] for e in report["marketing_emails"]["history"]] == ["opt_in"]
    assert {e["kind"] for e in report["emails"]} == {
        "contact_ack",
        "contact_notification",
        "rights_link",
    }
    assert [(r["type"], r["status"]) for r in report["rights_requests"]] == [
        ("access", "done")
    ]
    cookies = report["cookie_choices"]
    assert cookies["consent_id"] == camille_consent
    assert [r["action"] for r in cookies["records"]] == ["accept_all", "withdraw"]
    with app.app_context():
        ledger = {
            row.seq: row.hash for row in db.session.scalars(sa.select(ConsentRecord))
        }
    assert all(ledger[r["seq"]] == r["hash"] for r in cookies["records"])

    # Nothing about Dominique, in the file or on the page.
    text = json.dumps(report, ensure_ascii=False) + page.text
    for value in (*DOMINIQUE.values(), dominique_consent, "dominique"):
        assert value.lower() not in text.lower()
    # The page shows the same data as the file.
    for value in (
        CAMILLE["name"],
        CAMILLE["phone"],
        CAMILLE["company"],
        camille_consent,
    ):
        assert value in page.text
    assert "Et un second message, en deux lignes.\nMerci." in page.text


def test_access_without_consent_id_has_no_cookie_history(app, client):
    seed(client, CAMILLE)
    give_consent(client)
    page = confirm(client, request_link(app, client, "access"))
    report = json.loads(download(client, page).data)
    assert report["cookie_choices"] is None
    assert "You did not give a consent ID" in page.text


def test_access_report_escapes_what_visitors_typed(app, client):
    seed(client, {**CAMILLE, "name": '"><img src=x onerror=alert(1)>',
                  "message": "<script>alert(1)</script>"})  # fmt: skip
    page = confirm(client, request_link(app, client, "access"))
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<img src=x" not in page.text


def test_a_link_acts_once_then_says_it_was_used(app, client):
    seed(client, CAMILLE)
    path = request_link(app, client, "access")
    assert confirm(client, path).status_code == 200
    for response in (client.get(path), confirm(client, path)):
        assert response.status_code == 410
        assert "This link has already been used" in response.text
        assert "Ce lien a déjà été utilisé" in response.text  # and in French below
        assert CAMILLE["name"] not in response.text


def test_download_needs_a_fresh_grant_for_an_access_request(app, client, time_machine):
    time_machine.move_to(T0, tick=False)
    seed(client, CAMILLE)
    path = request_link(app, client, "access")
    page = confirm(client, path)
    token = path.rsplit("/", 1)[1]
    with app.test_request_context():
        other_purpose = serializer(SALT_UNSUBSCRIBE).dumps(
            {"r": entries(app)[0].public_id}
        )
    for grant, status in [
        ("", 400),
        ("forged", 400),
        (token, 400),  # a link token is not a download grant
        (other_purpose, 400),
    ]:
        response = client.post(
            "/en/my-data/download",
            data={"csrf_token": csrf_token(client), "grant": grant},
        )
        assert response.status_code == status
        assert CAMILLE["email"] not in response.text
    grant = re.search(r'name="grant" value="([^"]+)"', page.text).group(1)
    assert client.post("/en/my-data/download", data={"grant": grant}).status_code == 400
    time_machine.move_to(T0 + timedelta(hours=1, seconds=1), tick=False)
    expired = download(client, page)
    assert expired.status_code == 410
    assert CAMILLE["email"] not in expired.text


# --- forged, edited, expired links ----------------------------------------------


def forged_tokens(app: Flask, token: str, public_id: str, lead: Lead) -> dict[str, str]:
    payload, stamp, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with app.test_request_context():
        return {
            "random": "eyJyIjoiMTIzIn0.aaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbb",
            "edited payload": "eyJyIjoiQUFBQUFBQUFBQUFBQUFBQUFBQUFBQSJ9."
            + stamp
            + "."
            + signature,
            "edited signature": f"{payload}.{stamp}.{flipped}",
            "no signature": payload,
            "another purpose: unsubscribe": unsubscribe_token(lead),
            "same ID, unsubscribe salt": serializer(SALT_UNSUBSCRIBE).dumps(
                {"r": public_id}
            ),
            "same ID, consent salt": serializer(SALT_CONSENT_COOKIE).dumps(
                {"r": public_id}
            ),
            "same ID, download salt": serializer(SALT_RIGHTS_DOWNLOAD).dumps(
                {"r": public_id}
            ),
            "other secret": URLSafeTimedSerializer(
                "another-secret", salt=SALT_RIGHTS_REQUEST
            ).dumps({"r": public_id}),
            "payload not a dict": serializer(SALT_RIGHTS_REQUEST).dumps(public_id),
            "huge": "a" * 5000,
        }


def test_forged_edited_and_other_purpose_tokens_show_no_data(app, client, caplog):
    seed(client, CAMILLE, marketing="y")
    path = request_link(app, client, "erase")
    token = path.rsplit("/", 1)[1]
    [entry] = entries(app)
    caplog.set_level(logging.INFO, logger=app.logger.name)
    before = snapshot(app)
    for name, forged in forged_tokens(
        app, token, entry.public_id, the_lead(app)
    ).items():
        url = f"/en/my-data/confirm/{forged}"
        for response in (
            client.get(url),
            client.post(url, data={"csrf_token": csrf_token(client)}),
        ):
            assert response.status_code == 400, name
            assert "This link does not work" in response.text, name
            assert "Ce lien ne fonctionne pas" in response.text, name
            assert CAMILLE["name"] not in response.text, name
    assert snapshot(app) == before
    logged = [r.getMessage() for r in caplog.records if "link refused" in r.message]
    assert logged and all(token not in m and "invalid" in m for m in logged)
    # The genuine link still works afterwards.
    assert confirm(client, path).status_code == 200
    assert the_lead(app) is None


def test_an_expired_link_offers_to_ask_again_and_does_nothing(
    app, client, time_machine
):
    time_machine.move_to(T0, tick=False)
    seed(client, CAMILLE, "fr")
    path = request_link(app, client, "erase")
    time_machine.move_to(T0 + timedelta(hours=24) - timedelta(seconds=1), tick=False)
    assert client.get(path).status_code == 200
    time_machine.move_to(T0 + timedelta(hours=24, seconds=1), tick=False)
    before = snapshot(app)
    for response in (client.get(path), confirm(client, path)):
        assert response.status_code == 410
        assert "Ce lien a expiré" in response.text
        assert "This link has expired" in response.text
        assert 'href="/fr/my-data">Refaire une demande</a>' in response.text
    assert snapshot(app) == before
    assert the_lead(app) is not None
    with app.app_context():
        [entry] = list_requests()
        assert entry.status == "expired"
        assert entry.completed_at == entry.link_expires_at == T0 + timedelta(hours=24)


def test_a_link_whose_data_was_erased_meanwhile_says_so(app, client):
    seed(client, CAMILLE)
    path = request_link(app, client, "access")
    with app.app_context(), write_transaction():
        erase_lead(db.session.scalars(sa.select(Lead)).one())
    for response in (client.get(path), confirm(client, path)):
        assert response.status_code == 410
        assert "We no longer hold this data" in response.text


# --- one confirmation, once ----------------------------------------------------


@pytest.mark.parametrize("kind", ["access", "erase", "object"])
def test_two_concurrent_confirmations_act_once(app, monkeypatch, kind):
    """Two browsers POST the same link at the same instant: one acts, one is told."""
    first, second = app.test_client(), app.test_client()
    seed(first, CAMILLE, marketing="y")
    path = request_link(app, first, kind)
    tokens = [csrf_from(c.get(path).data) for c in (first, second)]
    # Widen the race: whoever claims the link holds its transaction a while.
    action = services._ACTIONS[kind]

    def slow(*args, **kwargs):
        threading.Event().wait(0.3)
        return action(*args, **kwargs)

    monkeypatch.setitem(services._ACTIONS, kind, slow)
    barrier = threading.Barrier(2)
    results: list[int] = []

    def post(client: FlaskClient, token: str) -> None:
        barrier.wait()
        results.append(client.post(path, data={"csrf_token": token}).status_code)

    threads = [
        threading.Thread(target=post, args=pair)
        for pair in zip((first, second), tokens, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [200, 410]
    [entry] = entries(app)
    assert entry.status == "done" and entry.used_at is not None
    with app.app_context():
        opt_outs = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(MarketingConsentEvent)
            .where(MarketingConsentEvent.event == "opt_out")
        )
    assert opt_outs == (1 if kind == "object" else 0)


# --- rectify ---------------------------------------------------------------------


def test_rectify_shows_current_details_validates_then_saves_once(app, client):
    seed(client, CAMILLE, "fr")
    path = request_link(app, client, "rectify")
    page = client.get(path)
    for value in ('value="Camille Martin"', 'value="Maison Martin"'):
        assert value in page.text
    token = csrf_from(page.data)

    # Validated like the contact form; an error keeps the link usable.
    bad = client.post(
        path,
        data={"csrf_token": token, "name": "", "phone": "=cmd|' /C calc'!A0",
              "company": "x" * 121},
    )  # fmt: skip
    assert bad.status_code == 200
    assert "Veuillez indiquer votre nom." in bad.text
    assert "Saisissez un numéro de téléphone" in bad.text
    assert "Vos coordonnées ne sont pas encore enregistrées" in bad.text
    assert the_lead(app).name == CAMILLE["name"]
    assert entries(app)[0].used_at is None

    done = client.post(
        path,
        data={"csrf_token": token, "name": "Camille Martin-Dupré",
              "phone": "+33 6 00 00 00 00", "company": ""},
    )  # fmt: skip
    assert done.status_code == 200
    assert "Vos coordonnées ont été corrigées" in done.text
    lead = the_lead(app)
    assert (lead.name, lead.phone, lead.company) == (
        "Camille Martin-Dupré",
        "+33 6 00 00 00 00",
        None,
    )
    again = client.post(path, data={"csrf_token": token, "name": "Someone Else"})
    assert again.status_code == 410
    assert the_lead(app).name == "Camille Martin-Dupré"


def test_rectify_refuses_control_characters_and_never_shows_nul_back(app, client):
    seed(client, CAMILLE)
    path = request_link(app, client, "rectify")
    token = csrf_from(client.get(path).data)
    for value in ("\x00", "Camille\x00", "Camille\u202eenilleM", "Camille\r\nBcc: x"):
        response = client.post(path, data={"csrf_token": token, "name": value})
        assert response.status_code == 200
        assert "\x00" not in response.text
        assert "Please remove the line breaks or invisible characters" in response.text
    assert the_lead(app).name == CAMILLE["name"]
    assert entries(app)[0].used_at is None


def test_rectifying_does_not_restart_the_retention_period(app, client, time_machine):
    time_machine.move_to(T0, tick=False)
    seed(client, CAMILLE)
    time_machine.move_to(T0 + timedelta(days=30), tick=False)
    path = request_link(app, client, "rectify")
    confirm(client, path, name="Camille M.")
    assert the_lead(app).last_interaction_at == T0


# --- erase -------------------------------------------------------------------------


def test_erasure_leaves_no_trace_and_the_ledger_still_verifies(app, runner, caplog):
    camille, camille_consent, _ = two_people(app)
    with app.app_context():
        send_due()  # the house's copy of Camille's message has been delivered
    path = request_link(app, camille, "erase", consent_id=camille_consent)
    with app.app_context():
        ledger_before = db.session.scalar(
            sa.select(sa.func.count()).select_from(ConsentRecord)
        )
        delivered = list(
            db.session.scalars(
                sa.select(OutboxMessage.message_id)
                .join(Lead)
                .where(
                    Lead.email == CAMILLE["email"],
                    OutboxMessage.kind == "contact_notification",
                )
            )
        )
    caplog.set_level(logging.INFO, logger=app.logger.name)
    page = confirm(camille, path)
    assert page.status_code == 200
    assert "Vos données ont été effacées" in page.text
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "erased 1 lead, 2 messages, 1 marketing-consent events, 5 e-mails" in logged

    needles = [CAMILLE[k].lower() for k in ("email", "name", "phone", "company")]
    needles += ["camille", "parfum boisé", "second message"]
    found = [
        (table, column)
        for table, column, value in text_cells(app)
        if any(needle in value.lower() for needle in needles)
    ]
    assert found == []
    assert the_lead(app) is None
    # Dominique keeps everything.
    dominique = the_lead(app, DOMINIQUE["email"])
    assert dominique is not None and dominique.marketing_opt_in
    # The register keeps the request, without the address or the consent ID.
    [entry] = [e for e in entries(app) if e.kind == "erase"]
    assert (entry.status, entry.lead_id, entry.consent_id) == ("done", None, None)
    # The ledger is untouched and still verifies.
    with app.app_context():
        assert (
            db.session.scalar(sa.select(sa.func.count()).select_from(ConsentRecord))
            == ledger_before
        )
    result = runner.invoke(args=["consent", "verify"])
    assert result.exit_code == 0, result.output
    # The house is asked to delete its delivered copy, by Message-ID only.
    with app.app_context():
        [notice] = db.session.scalars(
            sa.select(OutboxMessage).where(
                OutboxMessage.kind == "rights_erasure_notice"
            )
        ).all()
        assert notice.lead_id is None
        assert notice.to_address == app.config["HOUSE_NOTIFICATION_ADDRESS"]
        assert delivered and all(mid in notice.body for mid in delivered)


def test_erasure_page_says_what_is_kept_and_until_when(app, client, time_machine):
    time_machine.move_to(T0, tick=False)
    seed(client, CAMILLE, "fr")
    with app.app_context(), write_transaction():
        db.session.scalars(sa.select(Lead)).one().status = "client"
    path = request_link(app, client, "erase")
    confirm_page = client.get(path)
    assert "Ce que nous conservons, et jusqu’à quand" in confirm_page.text
    assert "Nous la conservons 5\u00a0ans." in confirm_page.text
    done = confirm(client, path)
    text = main_text(done)
    assert "Vos données ont été effacées" in text
    assert "Nous la conservons jusqu’au 10 mars 2032." in text
    assert "article L123-22" in text  # a client: invoices are kept 10 years


def test_erasure_of_a_prospect_does_not_mention_invoices(app, client):
    seed(client, CAMILLE)
    done = confirm(client, request_link(app, client, "erase"))
    assert "L123-22" not in done.text


def test_retention_deletes_register_entries_after_five_years(app, client, time_machine):
    time_machine.move_to(T0, tick=False)
    seed(client, CAMILLE)
    confirm(client, request_link(app, client, "erase"))
    with app.app_context():
        time_machine.move_to(T0 + timedelta(days=5 * 365), tick=False)
        assert run_retention().register_entries_deleted == 0
        time_machine.move_to(T0 + timedelta(days=5 * 366), tick=False)
        assert run_retention(dry_run=True).register_entries_deleted == 1
        assert run_retention().register_entries_deleted == 1
    assert entries(app) == []


# --- object ------------------------------------------------------------------------


def test_objection_stops_marketing_at_once(app, client):
    seed(client, CAMILLE, marketing="y")
    with app.app_context(), write_transaction():
        lead = db.session.scalars(sa.select(Lead)).one()
        queue_marketing_email(lead, subject="Nouveau parfum", body="Découvrez Ambre.")
    page = confirm(client, request_link(app, client, "object"))
    assert page.status_code == 200
    assert "We have stopped sending you our news by e-mail" in page.text
    with app.app_context():
        lead = db.session.scalars(sa.select(Lead)).one()
        assert lead.marketing_opt_in is False
        events = db.session.scalars(
            sa.select(MarketingConsentEvent).order_by(MarketingConsentEvent.id)
        ).all()
        assert [(e.event, e.channel) for e in events] == [
            ("opt_in", "contact_form"),
            ("opt_out", "rights_desk"),
        ]
        kinds = set(db.session.scalars(sa.select(OutboxMessage.kind)))
        assert "marketing" not in kinds  # the queued campaign mail is dropped
        with pytest.raises(MarketingNotAllowed), write_transaction():
            queue_marketing_email(lead, subject="Encore", body="Non.")


def test_objection_without_subscription_is_recorded_as_done(app, client):
    seed(client, CAMILLE)
    path = request_link(app, client, "object")
    assert "You are not subscribed to our news by e-mail" in client.get(path).text
    page = confirm(client, path)
    assert "You were not subscribed to our news by e-mail" in page.text
    assert entries(app)[0].status == "done"


# --- the register --------------------------------------------------------------------


def test_the_register_never_holds_the_address(app, client):
    seed(client, CAMILLE)
    ask(client, email="Camille@Example.fr")
    ask(client, email="camille@example.fr", kind="erase")
    ask(client, email="stranger@example.com")
    rows = entries(app)
    assert rows[0].address_hash == rows[1].address_hash != rows[2].address_hash
    assert re.fullmatch(r"[0-9a-f]{64}", rows[0].address_hash)
    assert rows[0].address_hash != hashlib.sha256(b"camille@example.fr").hexdigest()
    register = [v for t, _c, v in text_cells(app) if t == "rights_request"]
    assert not any(
        needle in value.lower()
        for value in register
        for needle in ("camille", "stranger", "example")
    )


def test_due_dates_are_calendar_months_in_paris_time():
    # 31 January: one month later is the last day of February.
    assert add_months(datetime(2027, 1, 31, 9, tzinfo=UTC), 1) == datetime(
        2027, 2, 28, 9, tzinfo=UTC
    )
    # 00:30 on 1 March in Paris is still 28 February in UTC: due on 1 April.
    received = datetime(2027, 2, 28, 23, 30, tzinfo=UTC)
    assert due_date(received) == datetime(2027, 3, 31, 22, 30, tzinfo=UTC)
    # Extended: three months after receipt (1 + 2), not two after the due date.
    assert due_date(datetime(2027, 1, 31, 9, tzinfo=UTC), extended=True) == datetime(
        2027,
        4,
        30,
        8,
        tzinfo=UTC,  # summer time in Paris by then
    )


def test_register_received_date_due_date_and_extension_once(app, time_machine):
    time_machine.move_to(T0, tick=False)
    with app.test_request_context():
        entry = register_request(
            kind="access", email="Camille@Example.fr", language="fr"
        )
        assert (entry.channel, entry.status) == ("staff", "received")
        assert entry.received_at == T0
        assert entry.due_at == datetime(2027, 4, 10, 8, 0, tzinfo=UTC)
        with pytest.raises(InvalidReason):
            extend_request(entry.id, "   ")
        with pytest.raises(InvalidReason):
            extend_request(entry.id, "line\r\nbreak")
        extended = extend_request(entry.id, "Archives on paper to search")
        assert extended.due_at == datetime(2027, 6, 10, 8, 0, tzinfo=UTC)
        assert extended.extension_reason == "Archives on paper to search"
        assert extended.extended_at == T0
        with pytest.raises(AlreadyExtended):
            extend_request(entry.id, "Once more")
        with pytest.raises(RequestNotFound):
            extend_request(999_999, "No such request")

        late = register_request(kind="erase", email="x@example.fr", language="en")
        time_machine.move_to(T0 + timedelta(days=32), tick=False)
        with pytest.raises(ExtensionTooLate):
            extend_request(late.id, "Too late to ask")

        done = mark_done(entry.id)
        assert (done.status, done.completed_at) == ("done", T0 + timedelta(days=32))
        with pytest.raises(RequestClosed):
            mark_done(entry.id)
        with pytest.raises(RequestClosed):
            extend_request(entry.id, "Closed already")
        refused = refuse_request(late.id, "Manifestly excessive (art. 12(5))")
        assert (refused.status, refused.refusal_reason) == (
            "refused",
            "Manifestly excessive (art. 12(5))",
        )


def test_list_requests_filters_and_marks_stale_links_expired(app, client, time_machine):
    time_machine.move_to(T0, tick=False)
    seed(client, CAMILLE)
    ask(client, kind="access")
    ask(client, kind="erase")
    ask(client, email="nobody@example.fr", kind="object")
    with app.app_context():
        assert [e.kind for e in list_requests()] == ["object", "erase", "access"]
        assert [e.kind for e in list_requests(open_only=True)] == ["erase", "access"]
        assert [e.kind for e in list_requests(status="refused")] == ["object"]
        assert [e.kind for e in list_requests(kind="erase")] == ["erase"]
        assert len(list_requests(limit=1)) == 1
        time_machine.move_to(T0 + timedelta(days=2), tick=False)
        assert [e.status for e in list_requests(open_only=True)] == []
        assert {e.status for e in list_requests(kind="access")} == {"expired"}


def test_database_unavailable_is_a_bilingual_503(app, client, monkeypatch):
    def unavailable(**_kwargs):
        raise DatabaseUnavailable("database is locked")

    monkeypatch.setattr(services, "submit_request", unavailable)
    response = ask(client, "fr")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert '<html lang="fr">' in response.text
    assert 'lang="en"' in response.text  # the English message below


# --- translations -------------------------------------------------------------


OWN_FILES = [
    "lorchestre/rights/forms.py",
    "lorchestre/rights/services.py",
    "templates/rights/desk.html",
    "templates/rights/sent.html",
    "templates/rights/confirm.html",
    "templates/rights/_kept.html",
    "templates/rights/report.html",
    "templates/rights/done.html",
    "templates/rights/link_invalid.html",
    "templates/rights/link_expired.html",
    "templates/rights/link_used.html",
    "templates/rights/link_gone.html",
    "templates/mail/rights_link.txt",
    "templates/mail/rights_erasure_notice.txt",
]


def test_rights_strings_have_french_with_french_typography():
    with (ROOT / "translations/fr/LC_MESSAGES/messages.po").open("rb") as handle:
        catalog = read_po(handle)
    msgids = set()
    for path in OWN_FILES:
        method = "python" if path.endswith(".py") else "jinja2"
        with (ROOT / path).open("rb") as handle:
            for _line, msgid, _comments, _context in extract(
                method,
                handle,
                keywords={**DEFAULT_KEYWORDS, "_l": None},
                options={"trimmed": "true"},
            ):
                msgids.add(msgid)
    assert len(msgids) > 100
    for msgid in msgids:
        key = msgid[0] if isinstance(msgid, tuple) else msgid
        message = catalog.get(key)
        assert message is not None, f"run `flask translate update`: {msgid!r}"
        strings = (
            message.string if isinstance(message.string, tuple) else (message.string,)
        )
        assert all(strings), f"no French for {msgid!r}"
        assert "fuzzy" not in message.flags, msgid
        for string in strings:
            text = re.sub(r"<[^>]+>|https?://\S+|%\(\w+\)\w", "", string)
            assert "'" not in text, string  # typographic apostrophes only
            assert not re.search(r"[^\u00a0\u202f][:;?!](\s|$)", text), string
            assert not re.search(r" [;?!]|\u00a0[;?!]", text), string  # U+202F there
            assert not re.search(r"«[^\u00a0]|[^\u00a0]»", text), string
