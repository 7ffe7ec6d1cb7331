"""Staff area: accounts and CLI, sign-in, throttling, sessions, roles, exports, register."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import sqlalchemy as sa
from flask import Flask

from lorchestre.consent.exports import write_export
from lorchestre.extensions import db
from lorchestre.models import ConsentRecord, StaffAuditEvent, StaffUser
from lorchestre.policy import retention_settings
from lorchestre.rights.services import register_request
from lorchestre.staff.exports import parse_trailer
from lorchestre.staff.register import build_register
from tests.staff_support import (
    EMAILS,
    FAST_ARGON2,
    PASSWORD,
    ROLES,
    create_staff,
    csrf_of,
    new_client,
    seed_ledger,
    sign_in,
    signed_in,
)


@pytest.fixture(autouse=True)
def _cheap_hashing(app: Flask) -> None:
    app.config["STAFF_ARGON2_PARAMS"] = FAST_ARGON2


@pytest.fixture
def staff(app: Flask) -> dict[str, int]:
    """One account per role, plus a spare one to disable; role → id."""
    ids = {role: create_staff(app, EMAILS[role], role) for role in ROLES}
    ids["spare"] = create_staff(app, "spare@lorchestreparfum.com", "marketing")
    return ids


def events(app: Flask, action: str | None = None) -> list[StaffAuditEvent]:
    """Audit events, oldest first (optionally of one action)."""
    with app.app_context():
        query = sa.select(StaffAuditEvent).order_by(StaffAuditEvent.id)
        if action:
            query = query.where(StaffAuditEvent.action == action)
        found = list(db.session.scalars(query))
        db.session.expunge_all()
        return found


def cli(app: Flask, *args: str, stdin: str | None = None):
    return app.test_cli_runner().invoke(args=["staff", *args], input=stdin)


# --- Accounts from the command line ------------------------------------------------------


def test_cli_creates_lists_disables_enables_and_resets(app: Flask) -> None:
    result = cli(
        app, "create", " Anna@Lorchestreparfum.com", "--role", "dpo", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "anna@lorchestreparfum.com (dpo)" in result.output
    with app.app_context():
        user = db.session.scalars(sa.select(StaffUser)).one()
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash

    listing = cli(app, "list")
    assert "anna@lorchestreparfum.com\tdpo\tactive\t-\tnever" in listing.output

    assert cli(app, "disable", "anna@lorchestreparfum.com").exit_code == 0
    assert "disabled" in cli(app, "list").output
    assert cli(app, "enable", "ANNA@lorchestreparfum.com").exit_code == 0

    reset = cli(
        app, "reset-password", "anna@lorchestreparfum.com", "--password-stdin",
        stdin="another long passphrase\n",
    )  # fmt: skip
    assert reset.exit_code == 0, reset.output
    client = new_client(app)
    assert sign_in(client, "anna@lorchestreparfum.com").status_code == 200  # old one
    assert (
        sign_in(
            client, "anna@lorchestreparfum.com", "another long passphrase"
        ).status_code
        == 303
    )
    actions = [e.action for e in events(app)]
    assert actions[:4] == [
        "staff.create",
        "staff.disable",
        "staff.enable",
        "staff.reset_password",
    ]
    assert events(app, "staff.create")[0].actor == "cli"


def test_cli_prompts_for_the_password_twice(app: Flask) -> None:
    result = cli(app, "create", "bo@lorchestreparfum.com", "--role", "marketing",
                 stdin=f"{PASSWORD}\n{PASSWORD}\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "created bo@lorchestreparfum.com (marketing)" in result.output


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["create", "x@lorchestreparfum.com", "--role", "dpo", "--password-stdin"], "short\n",
         "at least 12 characters"),
        (["create", "not-an-address", "--role", "dpo", "--password-stdin"], PASSWORD + "\n",
         "not a valid e-mail address"),
        (["create", "x@lorchestreparfum.com", "--role", "root", "--password-stdin"], PASSWORD + "\n",
         "Invalid value for '--role'"),
        (["disable", "nobody@lorchestreparfum.com"], None, "no staff account"),
        (["reset-password", "nobody@lorchestreparfum.com", "--password-stdin"], PASSWORD + "\n",
         "no staff account"),
    ],
)  # fmt: skip
def test_cli_refusals_exit_non_zero_with_a_reason(app, args, stdin, message) -> None:
    result = cli(app, *args, stdin=stdin)
    assert result.exit_code != 0
    assert message in result.output


def test_cli_on_a_database_not_created_yet_says_what_to_do(app_factory, tmp_path):
    app = app_factory(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'new.db'}")
    with app.app_context():
        db.drop_all()  # as before the first `flask db upgrade`
    result = cli(app, "create", "x@lorchestreparfum.com", "--role", "dpo",
                 "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    assert result.exit_code == 1
    assert "flask --app lorchestre db upgrade" in result.output
    assert "Traceback" not in result.output


def test_cli_refuses_a_second_account_with_the_same_address(app: Flask) -> None:
    create_staff(app, "dup@lorchestreparfum.com", "marketing")
    result = cli(app, "create", "DUP@lorchestreparfum.com", "--role", "dpo",
                 "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    assert result.exit_code == 1
    assert "already exists" in result.output


# --- Who may open what ------------------------------------------------------------------

# (method, path, the least role that may use it); "{spare}" is another account's id.
STAFF_URLS = [
    ("GET", "/staff/", "marketing"),
    ("GET", "/staff/stats.csv", "marketing"),
    ("GET", "/staff/account", "marketing"),
    ("POST", "/staff/account", "marketing"),
    ("GET", "/staff/account/totp", "marketing"),
    ("POST", "/staff/account/totp", "marketing"),
    ("POST", "/staff/account/totp/disable", "marketing"),
    ("GET", "/staff/ledger", "dpo"),
    ("POST", "/staff/ledger/export", "dpo"),
    ("POST", "/staff/ledger/audit-bundle", "dpo"),
    ("POST", "/staff/ledger/verify", "dpo"),
    ("GET", "/staff/register", "dpo"),
    ("GET", "/staff/register.json", "dpo"),
    ("GET", "/staff/register.md", "dpo"),
    ("GET", "/staff/audit", "dpo"),
    ("GET", "/staff/leads", "dpo"),
    ("GET", "/staff/leads.csv", "dpo"),
    ("GET", "/staff/requests", "dpo"),
    ("GET", "/staff/requests.csv", "dpo"),
    ("GET", "/staff/requests/new", "dpo"),
    ("POST", "/staff/requests/new", "dpo"),
    ("GET", "/staff/requests/{request}", "dpo"),
    ("POST", "/staff/requests/{request}/extend", "dpo"),
    ("POST", "/staff/requests/{request}/refuse", "dpo"),
    ("POST", "/staff/requests/{request}/done", "dpo"),
    ("GET", "/staff/accounts", "admin"),
    ("POST", "/staff/accounts/{spare}/disable", "admin"),
    ("POST", "/staff/accounts/{spare}/enable", "admin"),
]
POST_DATA = {
    "/staff/ledger/export": {"format": "jsonl"},
    "/staff/requests/new": {
        "kind": "access",
        "email": "camille@example.fr",
        "language": "fr",
    },
    "/staff/requests/{request}/extend": {"extend-reason": "Archives on paper"},
    "/staff/requests/{request}/refuse": {"refuse-reason": "Identity not proven"},
}


def test_the_table_covers_every_staff_url(app: Flask) -> None:
    adapter = app.url_map.bind("localhost")
    covered = {
        (adapter.match(p.format(spare=1, request=1), method=m)[0], m)
        for m, p, _ in STAFF_URLS
    }
    covered |= {("staff.login", "GET"), ("staff.login", "POST"), ("staff.logout", "POST"),
                ("staff.login_code", "GET"), ("staff.login_code", "POST")}  # fmt: skip
    covered.add(("staff.lead_detail", "GET"))  # needs a lead: test_staff_leads.py
    rules = {
        (rule.endpoint, method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("staff.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert rules == covered


@pytest.fixture
def rights_request(app: Flask) -> int:
    """An open rights request entered by the DPO; its register number."""
    with app.test_request_context():
        return register_request(
            kind="erase", email="camille@example.fr", language="fr"
        ).id


def _call(client, method: str, template: str, token: str, **ids: int):
    path = template.format(**ids)
    if method == "GET":
        response = client.get(path)
    else:
        response = client.post(
            path, data={"csrf_token": token, **POST_DATA.get(template, {})}
        )
    response.get_data()  # run streamed downloads to the end, so their context closes
    response.close()
    return response


@pytest.mark.parametrize(("method", "path", "minimum"), STAFF_URLS)
def test_anonymous_visitors_are_sent_to_sign_in(
    app, staff, rights_request, method, path, minimum
) -> None:
    client = new_client(app)
    token = csrf_of(client.get("/staff/login").data)
    response = _call(
        client, method, path, token, spare=staff["spare"], request=rights_request
    )
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/staff/login?next=")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "minimum"), STAFF_URLS)
def test_each_role_gets_its_pages_and_403_elsewhere(
    app, staff, rights_request, role, method, path, minimum
) -> None:
    client = signed_in(app, role)
    token = csrf_of(client.get("/staff/account").data)
    response = _call(
        client, method, path, token, spare=staff["spare"], request=rights_request
    )
    path = path.format(spare=staff["spare"], request=rights_request)
    allowed = ROLES.index(role) >= ROLES.index(minimum)
    if allowed:
        assert response.status_code in (200, 303), (response.status_code, path)
    else:
        assert response.status_code == 403
        denied = events(app, "access.denied")
        assert denied[-1].target == path
        assert denied[-1].actor == EMAILS[role]
        assert denied[-1].detail == {"role": role, "required": minimum}


def test_navigation_shows_only_what_the_role_may_open(app, staff) -> None:
    marketing = signed_in(app, "marketing").get("/staff/").text
    assert "/staff/ledger" not in marketing and "/staff/accounts" not in marketing
    dpo = signed_in(app, "dpo").get("/staff/").text
    assert "/staff/ledger" in dpo and "/staff/accounts" not in dpo
    admin = signed_in(app, "admin").get("/staff/").text
    assert "/staff/ledger" in admin and "/staff/accounts" in admin


@pytest.mark.parametrize(
    "path",
    ["/staff/logout", "/staff/ledger/export", "/staff/ledger/verify",
     "/staff/ledger/audit-bundle", "/staff/account", "/staff/accounts/1/disable"],
)  # fmt: skip
def test_posts_without_a_csrf_token_are_refused(app, staff, path) -> None:
    client = signed_in(app, "admin")
    response = client.post(path, data={"format": "jsonl"})
    assert response.status_code == 400
    assert "export.ledger" not in [e.action for e in events(app)]
    assert client.get("/staff/").status_code == 200  # still signed in


def test_staff_pages_are_private_and_not_cached(app, staff) -> None:
    response = signed_in(app, "marketing").get("/staff/")
    assert response.headers["Cache-Control"] == "no-store"
    assert "noindex" in response.headers["X-Robots-Tag"]
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert 'style="' not in response.text and "<script" not in response.text


def test_public_pages_are_untouched_by_a_staff_session(app, staff) -> None:
    client = signed_in(app, "marketing")
    response = client.get("/fr/")
    assert response.status_code == 200
    assert "remember_token" not in " ".join(response.headers.getlist("Set-Cookie"))


# --- Sign-in, throttling, sessions -------------------------------------------------------


def test_wrong_password_and_unknown_account_get_the_same_answer(app, staff) -> None:
    wrong = sign_in(new_client(app), EMAILS["dpo"], "not the password at all")
    unknown = sign_in(
        new_client(app), "nobody@lorchestreparfum.com", "not the password"
    )
    assert wrong.status_code == unknown.status_code == 200
    message = "Incorrect e-mail address or password."
    assert message in wrong.text and message in unknown.text
    failed = events(app, "login.failed")
    assert [e.actor for e in failed] == [
        EMAILS["dpo"]
    ]  # the unknown address is not kept
    assert "nobody" not in json.dumps([e.detail for e in events(app)])


def test_a_disabled_account_cannot_sign_in_and_gets_the_same_answer(app, staff) -> None:
    cli(app, "disable", EMAILS["dpo"])
    response = sign_in(new_client(app), EMAILS["dpo"])
    assert response.status_code == 200
    assert "Incorrect e-mail address or password." in response.text


def test_sign_in_is_throttled_per_account_known_or_not(app, staff) -> None:
    for address in (EMAILS["dpo"], "nobody@lorchestreparfum.com"):
        for _ in range(5):
            client = new_client(app)
            assert sign_in(client, address, "wrong password!").status_code == 200
        blocked = sign_in(new_client(app), address, PASSWORD)  # even the right one
        assert blocked.status_code == 429
        assert int(blocked.headers["Retry-After"]) > 0
        assert "Too many attempts" in blocked.text
    # Another account from the same client is not blocked by those.
    assert sign_in(new_client(app), EMAILS["admin"]).status_code == 303


def test_sign_in_is_throttled_per_client(app, staff) -> None:
    app.config["STAFF_LOGIN_LIMIT_PER_CLIENT"] = "4 per 15 minutes"
    for n in range(4):
        sign_in(new_client(app), f"guess{n}@lorchestreparfum.com", "wrong password!")
    blocked = sign_in(new_client(app), EMAILS["admin"])
    assert blocked.status_code == 429


def test_a_successful_sign_in_clears_the_account_counter(app, staff) -> None:
    for _ in range(4):
        sign_in(new_client(app), EMAILS["dpo"], "wrong password!")
    assert sign_in(new_client(app), EMAILS["dpo"]).status_code == 303
    for _ in range(4):
        sign_in(new_client(app), EMAILS["dpo"], "wrong password!")
    assert sign_in(new_client(app), EMAILS["dpo"]).status_code == 303


def _session_cookie(client) -> str:
    return client.get_cookie("lorchestre_session").value


def _replay(app: Flask, cookie: str):
    other = new_client(app)
    other.set_cookie("lorchestre_session", cookie)
    return other.get("/staff/")


def test_a_session_cookie_replayed_after_sign_out_is_rejected(app, staff) -> None:
    client = signed_in(app, "dpo")
    assert client.get("/staff/").status_code == 200
    stolen = _session_cookie(client)
    assert _replay(app, stolen).status_code == 200  # the copy works while signed in

    token = csrf_of(client.get("/staff/").data)
    response = client.post("/staff/logout", data={"csrf_token": token})
    assert response.headers["Location"] == "/staff/login"
    assert client.get("/staff/").status_code == 302
    replayed = _replay(app, stolen)
    assert replayed.status_code == 302
    assert replayed.headers["Location"].startswith("/staff/login")
    assert [e.action for e in events(app)][-2:] == ["login", "logout"]


def test_disabling_an_account_ends_its_sessions(app, staff) -> None:
    victim = signed_in(app, "marketing")
    admin = signed_in(app, "admin")
    token = csrf_of(admin.get("/staff/accounts").data)
    response = admin.post(
        f"/staff/accounts/{staff['marketing']}/disable", data={"csrf_token": token}
    )
    assert response.status_code == 303
    assert victim.get("/staff/").status_code == 302
    assert "is disabled and signed out" in admin.get("/staff/accounts").text
    admin.post(
        f"/staff/accounts/{staff['marketing']}/enable", data={"csrf_token": token}
    )
    assert victim.get("/staff/").status_code == 302  # the old session stays dead
    assert signed_in(app, "marketing").get("/staff/").status_code == 200


def test_an_admin_cannot_disable_their_own_account(app, staff) -> None:
    admin = signed_in(app, "admin")
    token = csrf_of(admin.get("/staff/accounts").data)
    admin.post(f"/staff/accounts/{staff['admin']}/disable", data={"csrf_token": token})
    assert "You cannot disable your own account." in admin.get("/staff/accounts").text
    assert admin.get("/staff/").status_code == 200


def test_changing_the_password_ends_other_sessions_but_not_this_one(app, staff) -> None:
    here, elsewhere = signed_in(app, "dpo"), signed_in(app, "dpo")
    token = csrf_of(here.get("/staff/account").data)
    new = "a brand new passphrase"
    wrong = here.post("/staff/account", data={
        "csrf_token": token, "current": "not it", "new": new, "confirm": new})  # fmt: skip
    assert "The current password is not correct." in wrong.text
    short = here.post("/staff/account", data={
        "csrf_token": token, "current": PASSWORD, "new": "short", "confirm": "short"})  # fmt: skip
    assert "at least 12 characters" in short.text
    done = here.post("/staff/account", data={
        "csrf_token": token, "current": PASSWORD, "new": new, "confirm": new})  # fmt: skip
    assert done.status_code == 303
    assert here.get("/staff/").status_code == 200
    assert elsewhere.get("/staff/").status_code == 302
    assert sign_in(new_client(app), EMAILS["dpo"], new).status_code == 303


@pytest.mark.parametrize(
    "target",
    ["//evil.example/", "/\\evil.example", "https://evil.example/", "javascript:alert(1)",
     "\t//evil.example", "/%09/evil.example", "/fr/", "staff/", "/staff\\..\\evil"],
)  # fmt: skip
def test_next_never_leaves_the_staff_area(app, staff, target) -> None:
    response = sign_in(new_client(app), EMAILS["marketing"], next_path=target)
    assert response.status_code == 303
    assert response.headers["Location"] == "/staff/"


def test_next_leads_back_to_the_page_asked_for(app, staff) -> None:
    client = new_client(app)
    first = client.get("/staff/ledger")
    assert first.headers["Location"] == "/staff/login?next=/staff/ledger"
    response = sign_in(client, EMAILS["dpo"], next_path="/staff/ledger")
    assert response.headers["Location"] == "/staff/ledger"


def test_two_step_sign_in_with_totp(app, staff) -> None:
    client = signed_in(app, "dpo")
    page = client.get("/staff/account/totp").text
    with client.session_transaction() as session:
        secret = session["staff_totp_setup"]
    assert " ".join(secret[i : i + 4] for i in range(0, 32, 4)) in page
    token = csrf_of(page)
    bad = client.post(
        "/staff/account/totp", data={"csrf_token": token, "code": "000000"}
    )
    assert "This code is not valid" in bad.text
    code = pyotp.TOTP(secret).now()
    assert (
        client.post(
            "/staff/account/totp", data={"csrf_token": token, "code": code}
        ).status_code
        == 303
    )
    assert "On: signing in asks for a code" in client.get("/staff/account").text

    fresh = new_client(app)
    first = sign_in(fresh, EMAILS["dpo"], next_path="/staff/ledger")
    assert first.headers["Location"] == "/staff/login/code"
    assert (
        fresh.get("/staff/").status_code == 302
    )  # the password alone does not sign in
    step = fresh.get("/staff/login/code")
    token = csrf_of(step.data)
    assert (
        "not valid"
        in fresh.post(
            "/staff/login/code", data={"csrf_token": token, "code": "123456"}
        ).text
    )
    # The code used to turn TOTP on cannot be used again.
    assert (
        "not valid"
        in fresh.post(
            "/staff/login/code", data={"csrf_token": token, "code": code}
        ).text
    )
    totp = pyotp.TOTP(secret)
    later = totp.at(datetime.now(UTC) + timedelta(seconds=30))
    done = fresh.post("/staff/login/code", data={"csrf_token": token, "code": later})
    assert done.status_code == 303 and done.headers["Location"] == "/staff/ledger"
    assert fresh.get("/staff/ledger").status_code == 200
    assert events(app, "login")[-1].detail == {"totp": True}


def test_the_code_step_without_a_password_step_goes_back_to_sign_in(app, staff) -> None:
    response = new_client(app).get("/staff/login/code")
    assert response.headers["Location"] == "/staff/login"


# --- Marketing sees aggregates only -----------------------------------------------------


def test_marketing_pages_never_show_personal_data(app, staff) -> None:
    with app.app_context():
        seed_ledger(300, datetime.now(UTC) - timedelta(days=5), datetime.now(UTC))
        ids = list(db.session.scalars(sa.select(ConsentRecord.consent_id)))
        hashes = list(db.session.scalars(sa.select(ConsentRecord.hash)))
    client = signed_in(app, "marketing")
    pages = [client.get("/staff/").text, client.get("/staff/account").text]
    pages += [
        client.get(f"/staff/stats.csv?table={t}").text
        for t in ("daily", "categories", "languages")
    ]
    pages.append(client.get("/staff/?from=2020-01-01&to=2020-12-31").text)
    for text in pages:
        assert not any(consent_id in text for consent_id in ids)
        assert not any(h in text for h in hashes)
        assert "spare@" not in text and EMAILS["dpo"] not in text
    dashboard = pages[0]
    assert EMAILS["marketing"] not in dashboard  # not even one's own address
    assert "300" in dashboard


# --- DPO: exports, bundle, verification, register ---------------------------------------


@pytest.fixture
def ledger(app: Flask) -> None:
    with app.app_context():
        start = datetime(2026, 3, 1, tzinfo=UTC)
        seed_ledger(2500, start, start + timedelta(days=10))


def _export(client, fmt: str, **dates: str):
    token = csrf_of(client.get("/staff/ledger").data)
    return client.post(
        "/staff/ledger/export", data={"csrf_token": token, "format": fmt, **dates}
    )


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_ledger_export_matches_the_cli_and_ends_with_a_trailer(
    app, staff, ledger, fmt
) -> None:
    client = signed_in(app, "dpo")
    response = _export(client, fmt)
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.is_streamed
    data = response.get_data()
    trailer = parse_trailer(data)
    assert trailer["row_count"] == 2500 and trailer["intact"]
    with app.app_context():
        expected = io.StringIO()
        write_export(expected, fmt)
        head = db.session.scalar(
            sa.select(ConsentRecord.hash).order_by(ConsentRecord.seq.desc())
        )
    body = data.decode().rsplit("\n", 2)[0] + "\n"
    assert body == expected.getvalue()  # record lines are exactly the CLI's
    assert trailer["head_hash"] == head
    assert str(trailer["last_seq"]) == "2500"
    logged = events(app, "export.ledger")[-1]
    assert logged.actor == EMAILS["dpo"] and logged.detail["format"] == fmt


def test_ledger_export_by_date_range(app, staff, ledger) -> None:
    client = signed_in(app, "dpo")
    data = _export(
        client, "jsonl", **{"from": "2026-03-03", "to": "2026-03-04"}
    ).get_data()
    trailer = parse_trailer(data)
    records = [json.loads(line) for line in data.decode().splitlines()[:-1]]
    assert len(records) == trailer["row_count"] == 500
    assert {r["recorded_at"][:10] for r in records} == {"2026-03-03", "2026-03-04"}
    assert trailer["since"] == "2026-03-03T00:00:00.000000Z"
    assert trailer["until"] == "2026-03-05T00:00:00.000000Z"


def test_a_cut_export_is_detected(app, staff, ledger) -> None:
    data = _export(signed_in(app, "dpo"), "csv").get_data()
    with pytest.raises(ValueError, match="no trailer"):
        parse_trailer(data[: len(data) // 2])
    tampered = data.replace(b",accept_all,", b",reject_all,", 1)
    assert parse_trailer(tampered)["intact"] is False


def test_a_download_cut_short_closes_its_cursor(app, staff) -> None:
    with app.app_context():
        seed_ledger(
            12_000, datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)
        )
    client = signed_in(app, "dpo")
    token = csrf_of(client.get("/staff/ledger").data)
    response = client.post(
        "/staff/ledger/export",
        data={"csrf_token": token, "format": "csv"},
        buffered=False,
    )
    first = next(iter(response.response))
    assert first.startswith(b"seq,consent_id,recorded_at,action,")
    response.close()  # the browser went away: on PostgreSQL the server-side cursor closes
    assert client.get("/staff/ledger").status_code == 200


def test_a_bad_export_form_is_shown_again_with_its_errors(app, staff) -> None:
    client = signed_in(app, "dpo")
    response = _export(client, "jsonl", **{"from": "2026-03-05", "to": "2026-03-01"})
    assert response.status_code == 400
    assert "The end date is before the start date." in response.text
    response = _export(client, "xml")
    assert response.status_code == 400
    assert not events(app, "export.ledger")


def test_audit_bundle_downloads_and_verifies_without_our_code(
    app, staff, ledger
) -> None:
    client = signed_in(app, "dpo")
    token = csrf_of(client.get("/staff/ledger").data)
    response = client.post("/staff/ledger/audit-bundle", data={"csrf_token": token})
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    assert response.headers["X-Ledger-Row-Count"] == "2500"
    data = response.get_data()
    response.close()  # the server closes the file when the download ends
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        manifest = json.loads(bundle.read("manifest.json"))
        for name, digest in manifest["files"].items():
            assert hashlib.sha256(bundle.read(name)).hexdigest() == digest
        # The README's recipe, standard library only.
        prev, seq = "0" * 64, 0
        for line in bundle.read("ledger.jsonl").decode("utf-8").splitlines():
            rec = json.loads(line)
            seq += 1
            assert rec["seq"] == seq and rec["prev_hash"] == prev
            body = {k: v for k, v in rec.items() if k != "hash"}
            c = json.dumps(
                body, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            )
            assert hashlib.sha256((prev + "\n" + c).encode()).hexdigest() == rec["hash"]
            prev = rec["hash"]
    assert manifest["row_count"] == seq == 2500 and manifest["head_hash"] == prev
    assert response.headers["X-Ledger-Head-Hash"] == prev
    logged = events(app, "export.audit_bundle")[-1]
    assert logged.detail == {"row_count": 2500, "head_hash": prev, "verified": True}


def test_verify_shows_the_head_hash_and_names_a_broken_record(
    app, staff, ledger
) -> None:
    client = signed_in(app, "dpo")
    page = client.get("/staff/ledger").text
    with app.app_context():
        head = db.session.scalar(
            sa.select(ConsentRecord.hash).order_by(ConsentRecord.seq.desc())
        )
    assert head in page and "2,500" in page
    token = csrf_of(page)
    ok = client.post("/staff/ledger/verify", data={"csrf_token": token})
    assert "Verified: 2,500 records" in ok.text and head in ok.text
    with app.app_context():
        db.session.execute(
            sa.update(ConsentRecord)
            .where(ConsentRecord.seq == 1234)
            .values(locale="xx")
        )
        db.session.commit()
    broken = client.post("/staff/ledger/verify", data={"csrf_token": token})
    assert "BROKEN at seq 1234" in broken.text
    assert events(app, "ledger.verify")[-1].detail["first_bad_seq"] == 1234


def test_register_lists_every_activity_and_downloads(app, staff) -> None:
    client = signed_in(app, "dpo")
    page = client.get("/staff/register", headers={"Accept-Language": "en"}).text
    for text in ("Audience measurement cookies", "Targeted advertising cookies",
                 "Personalisation cookies", "Strictly necessary cookies (exempt from consent)",
                 "Cookie consent and its proof", "Contact requests, prospects and clients",
                 "lorchestre_analytics: 13 months at most", "Argon2id", "Siret 83181639200011"):  # fmt: skip
        assert text in page, text
    md = client.get("/staff/register.md?lang=en")
    assert md.mimetype == "text/markdown"
    assert md.text.startswith("# Record of processing activities (GDPR art. 30)")
    data = client.get("/staff/register.json?lang=fr").get_json()
    assert data["locale"] == "fr"
    assert {a["key"] for a in data["activities"]} == {
        "consent", "necessary", "analytics", "advertising", "personalization",
        "contact", "rights", "staff",
    }  # fmt: skip
    french = client.get("/staff/register?lang=fr").text
    assert "Cookies «\u00a0Mesure d’audience\u00a0»" in french
    assert [e.target for e in events(app, "export.register")] == ["md", "json"]


def test_every_retention_setting_appears_in_the_register(app) -> None:
    with app.test_request_context():
        register = build_register("en")
    claimed = {key for a in register.activities for key in a.retention_keys}
    assert claimed == set(retention_settings())
    assert register.sources["retention_settings"] == retention_settings()


def test_audit_log_page_shows_events_newest_first(app, staff) -> None:
    client = signed_in(app, "dpo")
    client.get("/staff/register.md")
    page = client.get("/staff/audit").text
    assert page.index("export.register") < page.index("staff.create")
    assert events(app, "view.audit_log")


def test_stats_csv_is_logged_as_an_export(app, staff) -> None:
    client = signed_in(app, "marketing")
    response = client.get(
        "/staff/stats.csv?table=categories&from=2026-01-01&to=2026-01-31"
    )
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["category", "accepted", "choices", "opt_in_rate"]
    logged = events(app, "export.stats")[-1]
    assert logged.target == "categories"
    assert logged.detail == {"from": "2026-01-01", "to": "2026-01-31"}
    assert client.get("/staff/stats.csv?table=secrets").status_code == 404
