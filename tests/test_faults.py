"""Fault injection: the database full, unreachable, restarted or locked; Redis down; SMTP down.

The SQLite "database is locked" case (bad-inputs #27) is
tests/test_consent.py::test_locked_sqlite_database_gives_503_not_500.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from lorchestre import create_app
from lorchestre.consent import services
from lorchestre.extensions import db
from lorchestre.models import (
    BannerText,
    ConsentRecord,
    ContactMessage,
    Lead,
    OutboxMessage,
)

from . import infra
from .conftest import TEST_DATABASE_URL, TEST_SECRET, csrf_from, make_app
from .contact_helpers import post_contact
from .smtp_stub import running_smtp_stub

OPTIONAL_COOKIES = ("lorchestre_analytics", "lorchestre_ads", "lorchestre_prefs")


def set_cookies(response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.getlist("Set-Cookie")}


def post(client, token, action, lang="fr", headers=None, **fields):
    data = {"csrf_token": token, "action": action, "lang": lang, "next": "/fr/"}
    return client.post("/consent", data=data | fields, headers=headers or {})


def ledger_count(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(ConsentRecord))


def assert_fail_closed(response) -> None:
    """503 + Retry-After, no consent granted, every optional cookie expired."""
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    cookies = set_cookies(response)
    consent = cookies.get(services.COOKIE_NAME)
    assert consent is None or "Max-Age=0" in consent
    for name in OPTIONAL_COOKIES:
        assert "Max-Age=0" in cookies[name]


# --- Disk full: SQLite capped at its current size ----------------------------------


def cap_database_size(app):
    """Every connection refuses to grow the file past its present page count."""
    from sqlalchemy import event

    with app.app_context():
        engine = db.engine
        pages = db.session.execute(sa.text("PRAGMA page_count")).scalar()
        db.session.rollback()

        def cap(dbapi_connection, _record):
            dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

        event.listen(engine, "connect", cap)
        engine.dispose()
    return lambda: (event.remove(engine, "connect", cap), engine.dispose())


def test_database_full_during_consent(app_factory):
    """#28: rollback, no partial rows, 503 fail-closed, and the ledger still verifies."""
    if TEST_DATABASE_URL:
        pytest.skip(
            "PRAGMA max_page_count is SQLite's; PostgreSQL disk-full is not simulated"
        )
    app = app_factory()
    client = app.test_client()
    token = csrf_from(client.get("/fr/").data)
    assert post(client, token, "accept_all", lang="en").status_code == 303
    uncap = cap_database_size(app)
    accepted = 1
    for _ in range(200):  # a few dozen appends fill the last free page
        response = post(client, token, "accept_all", lang="en")
        if response.status_code != 303:
            break
        accepted += 1
    else:
        pytest.fail("the capped database never filled up")
    assert_fail_closed(response)
    # the earlier acceptance no longer holds: nothing recorded, nothing optional
    assert "Max-Age=0" in set_cookies(response)[services.COOKIE_NAME]
    # A French banner text would be a second row in the same transaction: not kept.
    assert_fail_closed(post(client, token, "accept_all", lang="fr"))
    refusal = post(client, token, "reject_all", lang="fr")
    assert_fail_closed(refusal)
    assert ledger_count(app) == accepted
    with app.app_context():
        locales = set(db.session.scalars(sa.select(BannerText.locale)))
    assert locales == {"en"}
    runner = app.test_cli_runner()
    result = runner.invoke(args=["consent", "verify"])
    assert result.exit_code == 0 and f"{accepted} records" in result.output
    uncap()
    assert post(client, token, "reject_all", lang="fr").status_code == 303
    assert runner.invoke(args=["consent", "verify"]).exit_code == 0


def test_database_full_during_a_contact_message(app_factory):
    """#28 for the lead insert: 503 with the input kept; no lead, message or mail."""
    if TEST_DATABASE_URL:
        pytest.skip(
            "PRAGMA max_page_count is SQLite's; PostgreSQL disk-full is not simulated"
        )
    app = app_factory()
    client = app.test_client()
    assert post_contact(client, "fr").status_code == 303
    uncap = cap_database_size(app)
    long_text = "Une question sur vos parfums. " * 150  # ~4.5 KB: a page or two each
    for n in range(200):
        response = post_contact(
            client, "fr", email=f"plein{n}@example.fr", message=long_text
        )
        if response.status_code != 303:
            break
    else:
        pytest.fail("the capped database never filled up")
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert f'value="plein{n}@example.fr"' in response.text  # the input is kept
    with app.app_context():
        leads = db.session.scalar(sa.select(sa.func.count(Lead.id)))
        messages = db.session.scalar(sa.select(sa.func.count(ContactMessage.id)))
        mails = db.session.scalar(sa.select(sa.func.count(OutboxMessage.id)))
    # Each stored message is whole (its lead and both mails), the refused one absent.
    assert leads == messages == 1 + n and mails == 2 * messages
    uncap()
    assert post_contact(client, "fr", email="plein@example.fr").status_code == 303


# --- PostgreSQL restarted: every server connection killed under the app ----------


def test_postgres_restart_costs_no_request(tmp_path):
    """pg_terminate_backend on our database = what a restart does to pooled connections."""
    with infra.postgres_database("restart") as url:
        app = make_app(tmp_path, SQLALCHEMY_DATABASE_URI=url)
        client = app.test_client()
        token = csrf_from(client.get("/fr/").data)
        assert post(client, token, "accept_all").status_code == 303
        assert infra.terminate_backends(url) >= 1
        assert post(client, token, "custom", analytics="1").status_code == 303
        assert client.get("/healthz").status_code == 200
        assert ledger_count(app) == 2
        assert app.test_cli_runner().invoke(args=["consent", "verify"]).exit_code == 0
        with app.app_context():
            db.engine.dispose()


def test_postgres_ledger_lock_held_fails_closed_not_hanging(tmp_path):
    """#27 on PostgreSQL: another session holds the ledger's advisory lock."""
    import psycopg

    from lorchestre.consent.ledger import LEDGER_LOCK
    from lorchestre.database import _advisory_key

    with infra.postgres_database("locked") as url:
        app = make_app(
            tmp_path, SQLALCHEMY_DATABASE_URI=url, POSTGRES_LOCK_TIMEOUT_MS=200
        )
        client = app.test_client()
        token = csrf_from(client.get("/fr/").data)
        plain_url = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain_url) as blocker:
            blocker.execute(
                "SELECT pg_advisory_xact_lock(%s)", (_advisory_key(LEDGER_LOCK),)
            )
            accept = post(client, token, "accept_all")
            refuse = post(
                client, token, "reject_all", headers={"Accept": "application/json"}
            )
            blocker.rollback()
        assert_fail_closed(accept)
        assert_fail_closed(refuse)
        assert "refusal has been applied" in refuse.get_json()["message"]["en"]
        assert ledger_count(app) == 0
        assert post(client, token, "accept_all").status_code == 303
        assert ledger_count(app) == 1
        with app.app_context():
            db.engine.dispose()


# --- PostgreSQL stopped: nothing listens where the database should be ------------

PAGES = (
    "/fr/",
    "/en/privacy",
    "/fr/legal",
    "/en/cookies",
    "/fr/contact",
    "/en/my-data",
)


@pytest.fixture
def no_database():
    """The app pointed at a PostgreSQL port where nothing listens."""
    port = infra.closed_port()
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": TEST_SECRET,
            "COOKIE_SECURE": False,
            "SQLALCHEMY_DATABASE_URI": (
                f"postgresql+psycopg://postgres@127.0.0.1:{port}/gone?connect_timeout=2"
            ),
        }
    )


def granting_cookie(app) -> str:
    """A genuine consent cookie that accepts everything, as if recorded earlier."""
    with app.test_request_context("/"):
        return services.encode_cookie(
            services.new_consent_id(),
            services.choices_for("accept_all"),
            services.utcnow(),
        )


@pytest.mark.parametrize("path", PAGES)
def test_pages_render_while_the_database_is_down(no_database, path):
    client = no_database.test_client()
    assert client.get(path).status_code == 200
    client.set_cookie(services.COOKIE_NAME, granting_cookie(no_database))
    assert client.get(path).status_code == 200


def test_health_check_says_503_while_the_database_is_down(no_database):
    response = no_database.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("action", ["accept_all", "custom"])
def test_acceptance_fails_closed_while_the_database_is_down(no_database, action):
    client = no_database.test_client()
    token = csrf_from(client.get("/fr/").data)
    response = post(client, token, action, analytics="1")
    assert_fail_closed(response)
    assert services.COOKIE_NAME not in set_cookies(response)
    assert "analytics-example.js" not in client.get("/fr/").text


@pytest.mark.parametrize("action", ["reject_all", "withdraw"])
def test_refusal_is_honoured_while_the_database_is_down(no_database, action):
    """The refusal sticks: a cookie that granted anything is dropped, not kept."""
    client = no_database.test_client()
    client.set_cookie(services.COOKIE_NAME, granting_cookie(no_database))
    token = csrf_from(client.get("/fr/cookies").data)
    assert "analytics-example.js" in client.get("/fr/").text
    response = post(client, token, action)
    assert_fail_closed(response)
    assert "Max-Age=0" in set_cookies(response)[services.COOKIE_NAME]
    page = client.get("/fr/").text
    assert "analytics-example.js" not in page
    assert 'id="consent-banner"' in page  # nothing recorded: asked again, nothing on


def test_failed_acceptance_does_not_leave_an_older_acceptance_in_force(no_database):
    """Narrowing a choice (all -> analytics only) that cannot be recorded: nothing on."""
    client = no_database.test_client()
    client.set_cookie(services.COOKIE_NAME, granting_cookie(no_database))
    token = csrf_from(client.get("/fr/cookies").data)
    response = post(client, token, "custom", analytics="1")
    assert_fail_closed(response)
    assert "analytics-example.js" not in client.get("/fr/").text


def test_a_recorded_refusal_survives_a_failed_acceptance(no_database):
    """A cookie that grants nothing is already the safe state: it is kept."""
    client = no_database.test_client()
    with no_database.test_request_context("/"):
        refusal = services.encode_cookie(
            services.new_consent_id(),
            services.choices_for("reject_all"),
            services.utcnow(),
        )
    client.set_cookie(services.COOKIE_NAME, refusal)
    token = csrf_from(client.get("/fr/cookies").data)
    response = post(client, token, "accept_all")
    assert_fail_closed(response)
    assert services.COOKIE_NAME not in set_cookies(response)
    assert 'id="consent-banner"' not in client.get("/fr/").text  # no nagging


# --- Redis down: rate limits fail open, per process -------------------------------


def test_redis_down_consent_still_recorded_and_still_limited_per_process(app_factory):
    """Chosen policy: a dead Redis costs no consent; each process keeps a memory limit."""
    app = app_factory(
        RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{infra.closed_port()}/5",
        CONSENT_RATE_LIMIT="3 per minute",
    )
    client = app.test_client()
    assert client.get("/fr/privacy").status_code == 200
    token = csrf_from(client.get("/fr/").data)
    statuses = [post(client, token, "reject_all").status_code for _ in range(5)]
    assert statuses == [303, 303, 303, 429, 429]
    assert ledger_count(app) == 3


# --- SMTP down: the visitor is answered, the outbox keeps the mail and retries ------

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def outbox_by_kind(app) -> dict[str, OutboxMessage]:
    with app.app_context():
        rows = db.session.scalars(sa.select(OutboxMessage)).all()
        db.session.expunge_all()
    return {row.kind: row for row in rows}


@pytest.mark.parametrize("fault", ["refused", "timeout", "dropped_mid_data"])
def test_smtp_down_loses_no_mail_and_delivers_it_once_when_back(
    app_factory, time_machine, fault
):
    """Real SMTP on 127.0.0.1: nothing listening, a server that never answers, or one
    that hangs up in the middle of DATA. The contact POST is unaffected (nothing is
    sent during a request); `outbox send` exits 1 and backs off; once the server is
    back, each mail is delivered exactly once."""
    with ExitStack() as stack:
        if fault == "refused":
            port, smtp = infra.closed_port(), None
        else:
            smtp = stack.enter_context(running_smtp_stub())
            port = smtp.port
            smtp.hang = fault == "timeout"
            smtp.drop_mid_data = fault == "dropped_mid_data"
        app = app_factory(
            MAIL_BACKEND="smtp",
            MAIL_SERVER="127.0.0.1",
            MAIL_PORT=port,
            MAIL_USE_TLS=False,
            MAIL_TIMEOUT=1,  # the stuck server costs each run one second
        )
        time_machine.move_to(T0, tick=False)
        response = post_contact(app.test_client(), "fr")
        assert response.status_code == 303
        assert response.headers["Location"].endswith("/fr/contact/thanks")
        runner = app.test_cli_runner()

        # Three runs while the server is down, each stopping at its first failure.
        for moment in (T0, T0 + timedelta(seconds=61), T0 + timedelta(seconds=200)):
            time_machine.move_to(moment, tick=False)
            result = runner.invoke(args=["outbox", "send"])
            assert result.exit_code == 1, result.output
            assert "0 sent, 1 to retry later, 0 given up; 2 waiting" in result.output
        rows = outbox_by_kind(app)
        ack, notification = rows["contact_ack"], rows["contact_notification"]
        assert {row.status for row in rows.values()} == {"pending"}
        assert {row.claim_token for row in rows.values()} == {None}
        # Exponential back-off: 60 s after the first failure, 120 s after the second.
        assert (ack.attempts, ack.next_attempt_at) == (2, T0 + timedelta(seconds=320))
        assert (notification.attempts, notification.next_attempt_at) == (
            1,
            T0 + timedelta(seconds=121),
        )
        assert ack.last_error and notification.last_error
        with app.app_context():
            assert db.session.scalar(sa.select(sa.func.count(ContactMessage.id))) == 1
        if smtp is not None:
            assert smtp.received == [] and smtp.connections == 3

        # The server is back.
        if fault == "refused":
            smtp = stack.enter_context(running_smtp_stub(port))
        smtp.hang = smtp.drop_mid_data = False
        time_machine.move_to(T0 + timedelta(seconds=400), tick=False)
        result = runner.invoke(args=["outbox", "send"])
        assert result.exit_code == 0, result.output
        assert "2 sent, 0 to retry later, 0 given up; 0 waiting" in result.output
        again = runner.invoke(args=["outbox", "send"])
        assert "0 sent" in again.output and again.exit_code == 0
        rows = outbox_by_kind(app)
        assert {row.status for row in rows.values()} == {"sent"}
        assert sorted(smtp.message_ids()) == sorted(r.message_id for r in rows.values())
        assert {r.attempts for r in rows.values()} == {3, 2}
