"""POST /consent, the consent cookie, GPC, withdrawal and the fail-closed rules (spec §4)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from itsdangerous import URLSafeTimedSerializer

from lorchestre.consent import services
from lorchestre.database import DatabaseUnavailable
from lorchestre.extensions import db
from lorchestre.models import BannerText, ConsentRecord
from lorchestre.tokens import SALT_CONSENT_COOKIE

from .conftest import csrf_from

OPTIONAL = ("analytics", "advertising", "personalization")


def post_consent(client, token, action, **fields):
    data = {"csrf_token": token, "action": action, "lang": "fr", "next": "/fr/privacy"}
    data.update(fields)
    headers = fields.pop("headers", None) if "headers" in fields else None
    return client.post("/consent", data=data, headers=headers or {})


def ledger(app) -> list[ConsentRecord]:
    with app.app_context():
        return list(
            db.session.scalars(sa.select(ConsentRecord).order_by(ConsentRecord.seq))
        )


def consent_cookie(client):
    cookie = client.get_cookie(services.COOKIE_NAME)
    return cookie.value if cookie else None


def set_cookies(response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.getlist("Set-Cookie")}


@pytest.mark.parametrize(
    ("action", "fields", "expected"),
    [
        ("accept_all", {}, {"analytics": True, "advertising": True, "personalization": True}),
        ("reject_all", {}, {"analytics": False, "advertising": False, "personalization": False}),
        ("custom", {"analytics": "1"}, {"analytics": True, "advertising": False, "personalization": False}),
        ("custom", {"advertising": "on", "personalization": "yes"},
         {"analytics": False, "advertising": True, "personalization": True}),
        ("custom", {"analytics": ""}, {"analytics": False, "advertising": False, "personalization": False}),
    ],
)  # fmt: skip
def test_each_action_records_and_sets_cookie(
    app, client, csrf_token, action, fields, expected
):
    response = post_consent(client, csrf_token, action, **fields)
    assert response.status_code == 303
    assert response.headers["Location"] == "/fr/privacy"
    cookie = set_cookies(response)[services.COOKIE_NAME]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert f"Max-Age={182 * 24 * 3600}" in cookie
    [record] = ledger(app)
    assert record.action == action
    assert {k: getattr(record, k) for k in OPTIONAL} == expected
    assert record.channel == "form" and record.locale == "fr" and record.gpc is False
    with app.test_request_context():
        state = services.decode_cookie(consent_cookie(client))
    assert state.consent_id == record.consent_id
    assert state.choices == expected
    # every refused category has its cookies expired server-side
    for key, value in expected.items():
        names = {"analytics": "lorchestre_analytics", "advertising": "lorchestre_ads",
                 "personalization": "lorchestre_prefs"}  # fmt: skip
        if not value:
            assert "Max-Age=0" in set_cookies(response)[names[key]]
        else:
            assert names[key] not in set_cookies(response)


def test_consent_cookie_is_secure_outside_development(app_factory):
    app = app_factory(COOKIE_SECURE=True)
    client = app.test_client()
    token = csrf_from(client.get("/fr/", base_url="https://localhost").data)
    response = client.post(
        "/consent",
        data={"csrf_token": token, "action": "reject_all"},
        base_url="https://localhost",
        headers={"Referer": "https://localhost/fr/"},
    )
    assert "Secure" in set_cookies(response)[services.COOKIE_NAME]


def test_json_answer(app, client, csrf_token):
    response = client.post(
        "/consent",
        data={"csrf_token": csrf_token, "action": "accept_all", "lang": "en"},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"consent_id", "choices", "recorded_at"}
    assert body["choices"] == {"necessary": True, "analytics": True, "advertising": True,
                               "personalization": True}  # fmt: skip
    assert body["recorded_at"].endswith("Z")
    [record] = ledger(app)
    assert record.channel == "js" and record.consent_id == body["consent_id"]


def test_missing_csrf_is_400_and_records_nothing(app, client):
    response = client.post("/consent", data={"action": "accept_all"})
    assert response.status_code == 400
    assert services.COOKIE_NAME not in set_cookies(response)
    assert ledger(app) == []


def test_foreign_csrf_token_is_refused(app, client):
    other = app.test_client()
    foreign = csrf_from(other.get("/fr/").data)
    client.get("/fr/")
    response = client.post(
        "/consent", data={"csrf_token": foreign, "action": "accept_all"}
    )
    assert response.status_code == 400
    assert ledger(app) == []


@pytest.mark.parametrize(
    "fields",
    [
        {"action": "accept"},
        {"action": ""},
        {"action": "custom", "marketing": "1"},
        {"action": "custom", "Analytics": "1"},
    ],
)
def test_unknown_action_or_category_is_400(app, client, csrf_token, fields):
    response = client.post("/consent", data={"csrf_token": csrf_token, **fields})
    assert response.status_code == 400
    assert ledger(app) == []
    assert services.COOKIE_NAME not in set_cookies(response)


def test_missing_action_is_400(app, client, csrf_token):
    assert client.post("/consent", data={"csrf_token": csrf_token}).status_code == 400


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "\t//evil.example",
        "/\t/evil.example",
        "/%0a/evil.example".replace("%0a", "\n"),
        "http:evil.example",
        "",
        "fr/privacy",
        "/" + "a" * 600,
    ],
)
def test_next_never_leaves_the_site(client, csrf_token, target):
    response = post_consent(client, csrf_token, "reject_all", next=target)
    assert response.status_code == 303
    assert response.headers["Location"] == "/fr/"


def test_next_keeps_a_local_path_with_query(client, csrf_token):
    response = post_consent(
        client, csrf_token, "reject_all", next="/en/privacy?x=1#top"
    )
    assert response.headers["Location"] == "/en/privacy?x=1#top"


def test_banner_until_choice_then_gone_and_not_nagged(client, csrf_token):
    assert 'id="consent-banner"' in client.get("/fr/").text
    post_consent(client, csrf_token, "reject_all")
    for url in ("/fr/", "/en/privacy", "/fr/legal"):
        assert 'id="consent-banner"' not in client.get(url).text


def _forge(app, payload, salt=SALT_CONSENT_COOKIE, key=None):
    return URLSafeTimedSerializer(key or app.config["SECRET_KEY"], salt=salt).dumps(
        payload
    )


def _cookie_cases(app):
    good = {"id": "A" * 32, "v": services.CURRENT_POLICY.version, "c": "111", "t": 1}
    return {
        "garbage": "not-a-cookie",
        "bad base64": "!!!.***.###",
        "unsigned": "eyJpZCI6IkFBQUEifQ",
        "other key": _forge(app, good, key="another-secret"),
        "other salt": _forge(app, good, salt="lorchestre.rights-request.v1"),
        "old version": _forge(app, {**good, "v": "2000-01-01.1"}),
        "unknown category flags": _forge(app, {**good, "c": "1111"}),
        "bad flags": _forge(app, {**good, "c": "1x1"}),
        "bad id": _forge(app, {**good, "id": "<script>"}),
        "not a dict": _forge(app, ["x"]),
        "oversized": "A" * 4000,
    }


def test_invalid_cookies_mean_no_choice(app, client):
    for name, value in _cookie_cases(app).items():
        client.set_cookie(services.COOKIE_NAME, value)
        response = client.get("/fr/")
        assert response.status_code == 200, name
        assert 'id="consent-banner"' in response.text, name
        assert "analytics-example.js" not in response.text, name


def test_expired_cookie_means_no_choice(app, client, csrf_token):
    import time_machine

    post_consent(client, csrf_token, "accept_all")
    assert "analytics-example.js" in client.get("/fr/").text
    with time_machine.travel(
        services.utcnow().timestamp() + 183 * 24 * 3600, tick=False
    ):
        response = client.get("/fr/")
    assert 'id="consent-banner"' in response.text
    assert "analytics-example.js" not in response.text


def test_gating_sends_tags_only_after_consent(client, csrf_token):
    assert "analytics-example.js" not in client.get("/fr/").text
    post_consent(client, csrf_token, "custom", advertising="1")
    assert "analytics-example.js" not in client.get("/fr/").text
    post_consent(client, csrf_token, "custom", analytics="1")
    assert "analytics-example.js" in client.get("/fr/").text


def test_gpc_banner_and_recording(app, client, csrf_token):
    gpc = {"Sec-GPC": "1"}
    html = client.get("/fr/", headers=gpc).text
    assert 'id="consent-banner"' in html
    assert "Global Privacy Control" in html
    assert "checked" not in html.split('id="consent-banner"')[1]
    assert "analytics-example.js" not in html
    client.post(
        "/consent",
        data={"csrf_token": csrf_token, "action": "accept_all", "lang": "fr"},
        headers=gpc,
    )
    [record] = ledger(app)
    assert record.gpc is True and record.analytics is True


def test_gpc_well_known(client):
    response = client.get("/.well-known/gpc.json")
    assert response.get_json()["gpc"] is True


def test_withdraw_keeps_id_expires_cookies_and_shows_history(app, client, csrf_token):
    post_consent(client, csrf_token, "accept_all")
    first_id = ledger(app)[0].consent_id
    page = client.get("/fr/cookies").text
    assert first_id in page
    response = post_consent(client, csrf_token, "withdraw", next="/fr/cookies")
    cookies = set_cookies(response)
    for name in ("lorchestre_analytics", "lorchestre_ads", "lorchestre_prefs"):
        assert "Max-Age=0" in cookies[name]
    assert "Max-Age=0" not in cookies[services.COOKIE_NAME]
    records = ledger(app)
    assert [r.action for r in records] == ["accept_all", "withdraw"]
    assert {r.consent_id for r in records} == {first_id}
    assert not any(getattr(records[1], k) for k in OPTIONAL)
    page = client.get("/fr/cookies").text
    assert 'id="consent-banner"' not in page
    assert page.count("<tr>") == 3  # header + two dated entries
    assert "Retrait" in page and "Tout accepter" in page


def test_preferences_page_without_choice(client):
    page = client.get("/en/cookies").text
    assert "You have not made a choice yet" in page
    assert 'value="withdraw"' not in page


def test_banner_text_stored_once_with_its_hash(app, client, csrf_token):
    import hashlib

    post_consent(client, csrf_token, "reject_all")
    post_consent(client, csrf_token, "accept_all")
    post_consent(client, csrf_token, "accept_all", lang="en")
    with app.app_context():
        texts = list(db.session.scalars(sa.select(BannerText)))
    assert sorted(t.locale for t in texts) == ["en", "fr"]
    for text in texts:
        assert hashlib.sha256(text.text.encode()).hexdigest() == text.sha256
        assert "Tout refuser" in text.text or "Reject all" in text.text
    assert {r.banner_sha256 for r in ledger(app)} == {t.sha256 for t in texts}


def test_banner_text_is_what_the_visitor_sees(app, client):
    html = client.get("/en/").text
    with app.test_request_context("/en/"):
        text = services.banner_text("en")
    for fragment in ("Your privacy, your choice", "Accept all", "Reject all", "Customise",
                     "Audience measurement", "Targeted advertising", "Personalisation"):  # fmt: skip
        assert fragment in text and fragment in html


def test_ledger_unavailable_accept_fails_closed(app, client, csrf_token, monkeypatch):
    def unavailable(**_kwargs):
        raise DatabaseUnavailable("disk I/O error")

    monkeypatch.setattr("lorchestre.consent.views.record_choice", unavailable)
    response = post_consent(client, csrf_token, "accept_all")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert services.COOKIE_NAME not in set_cookies(response)
    assert "Max-Age=0" in set_cookies(response)["lorchestre_analytics"]
    assert "nothing optional" in response.text or "aucune catégorie" in response.text
    assert "analytics-example.js" not in client.get("/fr/").text


def test_ledger_unavailable_refusal_is_still_honoured(client, csrf_token, monkeypatch):
    def unavailable(**_kwargs):
        raise DatabaseUnavailable("database is locked")

    monkeypatch.setattr("lorchestre.consent.views.record_choice", unavailable)
    response = client.post(
        "/consent",
        data={"csrf_token": csrf_token, "action": "reject_all", "lang": "en"},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 503
    assert "Max-Age=0" in set_cookies(response)["lorchestre_ads"]
    assert "refusal has been applied" in response.get_json()["message"]["en"]


def test_locked_sqlite_database_gives_503_not_500(app_factory, tmp_path):
    """A real lock: another connection holds BEGIN IMMEDIATE past the busy timeout."""
    import sqlite3

    from .conftest import TEST_DATABASE_URL

    if TEST_DATABASE_URL:
        pytest.skip("SQLite locking")
    app = app_factory(SQLITE_BUSY_TIMEOUT_MS=100)
    client = app.test_client()
    token = csrf_from(client.get("/fr/").data)
    blocker = sqlite3.connect(tmp_path / "test.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        accept = post_consent(client, token, "accept_all")
        reject = post_consent(client, token, "reject_all")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert accept.status_code == 503 and services.COOKIE_NAME not in set_cookies(accept)
    assert (
        reject.status_code == 503
        and "Max-Age=0" in set_cookies(reject)["lorchestre_prefs"]
    )
    assert post_consent(client, token, "accept_all").status_code == 303
