"""DPO leads list: roles, literal search, escaping, pagination, CSV, audit log."""

from __future__ import annotations

import csv
import io
import secrets
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from flask import Flask

from lorchestre.database import write_transaction
from lorchestre.extensions import db
from lorchestre.models import (
    ContactMessage,
    Lead,
    MarketingConsentEvent,
    StaffAuditEvent,
)
from lorchestre.staff.leads import PAGE_SIZE, like_pattern, retention_due
from tests.staff_support import (
    EMAILS,
    FAST_ARGON2,
    ROLES,
    create_staff,
    new_client,
    sign_in,
    signed_in,
)

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture(autouse=True)
def _cheap_hashing(app: Flask) -> None:
    app.config["STAFF_ARGON2_PARAMS"] = FAST_ARGON2


@pytest.fixture
def staff(app: Flask) -> None:
    for role in ROLES:
        create_staff(app, EMAILS[role], role)


def add_lead(
    app: Flask,
    name: str,
    email: str,
    *,
    company: str | None = None,
    minutes_ago: int = 0,
    message: str = "Bonjour",
    opt_in: bool = False,
    status: str = "prospect",
) -> str:
    """Insert a lead with one message (and an opt-in if asked); returns its public id."""
    with app.app_context(), write_transaction():
        when = NOW - timedelta(minutes=minutes_ago)
        lead = Lead(
            public_id=secrets.token_urlsafe(16),
            email=email,
            email_key=email.lower(),
            status=status,
            language="fr",
            name=name,
            company=company,
            created_at=when,
            last_interaction_at=when,
            marketing_opt_in=opt_in,
            marketing_opt_in_at=when if opt_in else None,
        )
        db.session.add(lead)
        db.session.add(
            ContactMessage(lead=lead, body=message, language="fr", created_at=when)
        )
        if opt_in:
            db.session.add(
                MarketingConsentEvent(
                    lead=lead,
                    event="opt_in",
                    occurred_at=when,
                    channel="contact_form",
                    language="fr",
                    wording_version="v1",
                )
            )
        db.session.flush()
        return lead.public_id


def events(app: Flask, action: str) -> list[StaffAuditEvent]:
    with app.app_context():
        found = list(
            db.session.scalars(
                sa.select(StaffAuditEvent)
                .where(StaffAuditEvent.action == action)
                .order_by(StaffAuditEvent.id)
            )
        )
        db.session.expunge_all()
        return found


def fetch(client, path: str, **kwargs):
    """GET, running a streamed download to its end and closing it, as a browser does."""
    response = client.get(path, **kwargs)
    response.get_data()
    response.close()
    return response


def csv_of(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


# --- Roles ------------------------------------------------------------------------------


@pytest.fixture
def one_lead(app: Flask) -> str:
    return add_lead(app, "Camille Durand", "camille@example.fr", company="Maison C")


def lead_paths(public_id: str) -> list[str]:
    return ["/staff/leads", "/staff/leads?q=cam", "/staff/leads.csv",
            f"/staff/leads/{public_id}"]  # fmt: skip


def test_anonymous_visitors_are_sent_to_sign_in(app, staff, one_lead) -> None:
    client = new_client(app)
    for path in lead_paths(one_lead):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/staff/login?next=")


def test_marketing_gets_403_logged_and_never_sees_an_address(
    app, staff, one_lead
) -> None:
    client = signed_in(app, "marketing")
    for path in lead_paths(one_lead):
        response = fetch(client, path)
        assert response.status_code == 403, path
        assert "camille@example.fr" not in response.text
        assert "Camille" not in response.text
    denied = events(app, "access.denied")
    assert [e.target for e in denied] == [
        "/staff/leads", "/staff/leads", "/staff/leads.csv", f"/staff/leads/{one_lead}"
    ]  # fmt: skip
    assert all(e.detail == {"role": "marketing", "required": "dpo"} for e in denied)
    dashboard = client.get("/staff/").text
    assert "/staff/leads" not in dashboard and "camille@example.fr" not in dashboard


@pytest.mark.parametrize("role", ["dpo", "admin"])
def test_dpo_and_admin_see_the_leads(app, staff, one_lead, role) -> None:
    client = signed_in(app, role)
    assert 'href="/staff/leads"' in client.get("/staff/").text  # navigation link
    listing = client.get("/staff/leads")
    assert listing.status_code == 200
    assert "camille@example.fr" in listing.text and "Maison C" in listing.text
    assert fetch(client, "/staff/leads.csv").status_code == 200
    detail = client.get(f"/staff/leads/{one_lead}")
    assert detail.status_code == 200 and "camille@example.fr" in detail.text
    assert client.get("/staff/leads/no-such-lead").status_code == 404


# --- Search -----------------------------------------------------------------------------


@pytest.fixture
def tricky(app: Flask) -> None:
    add_lead(app, "Ana 100% Rose", "ana@example.fr", minutes_ago=1)
    add_lead(app, "Ben 1000 Roses", "ben@example.fr", minutes_ago=2)
    add_lead(app, "Chloé a_b", "chloe@example.fr", minutes_ago=3)
    add_lead(app, "Dan axb", "dan@example.fr", minutes_ago=4)
    add_lead(app, r"Eve back\slash", "eve@example.fr", minutes_ago=5)
    add_lead(app, "Fay", "fay@example.fr", company="PARFUMS Lumière", minutes_ago=6)


def found(client, query: str) -> set[str]:
    response = client.get("/staff/leads", query_string={"q": query})
    assert response.status_code == 200, query
    return {
        email
        for email in ("ana", "ben", "chloe", "dan", "eve", "fay")
        if f"{email}@example.fr" in response.text
    }


def test_search_by_name_email_company_case_insensitive(app, staff, tricky) -> None:
    client = signed_in(app, "dpo")
    assert found(client, "ROSE") == {"ana", "ben"}
    assert found(client, "DAN@EXAMPLE") == {"dan"}
    assert found(client, "parfums") == {"fay"}
    assert found(client, "   ") == {"ana", "ben", "chloe", "dan", "eve", "fay"}


def test_sql_metacharacters_match_literally(app, staff, tricky) -> None:
    client = signed_in(app, "dpo")
    assert found(client, "100%") == {"ana"}
    assert found(client, "%") == {"ana"}
    assert found(client, "a_b") == {"chloe"}
    assert found(client, "_") == {"chloe"}
    assert found(client, "\\") == {"eve"}
    assert found(client, "k\\s") == {"eve"}
    assert like_pattern("a%b_c\\") == "%a\\%b\\_c\\\\%"


@pytest.mark.parametrize(
    "query",
    ["' OR 1=1--", '" OR ""="', "'; DROP TABLE lead; --", "\x00",
     "%%%%", "\\%", "a" * 5000, "é\u0301", "<script>", "{{ 7*7 }}"],
)  # fmt: skip
def test_no_input_ever_gives_a_500(app, staff, tricky, query) -> None:
    client = signed_in(app, "dpo")
    for path in ("/staff/leads", "/staff/leads.csv"):
        response = fetch(client, path, query_string={"q": query, "page": "2"})
        assert response.status_code == 200, (path, query)
    injected = client.get("/staff/leads", query_string={"q": "' OR 1=1--"})
    assert "@example.fr" not in injected.text
    assert fetch(client, "/staff/leads?q=%ED%A0%80%FF%00").status_code == 200
    for page in ("-5", "abc", "99999999999999999999999", "0"):
        assert client.get(f"/staff/leads?page={page}").status_code == 200
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 6


# --- Escaping ---------------------------------------------------------------------------


def test_an_xss_payload_is_rendered_escaped(app, staff) -> None:
    public_id = add_lead(app, XSS, "x@example.fr", company=XSS, message=XSS)
    client = signed_in(app, "dpo")
    for text in (
        client.get(f"/staff/leads/{public_id}").text,
        client.get("/staff/leads").text,
        client.get("/staff/leads", query_string={"q": XSS}).text,
    ):
        assert "<script>alert" not in text and "<img src=x" not in text
        assert "&lt;script&gt;alert(" in text


# --- Pagination, order, retention date --------------------------------------------------


def test_pagination_25_per_page_latest_interaction_first(app, staff) -> None:
    for i in range(PAGE_SIZE + 5):
        add_lead(app, f"Lead {i:02d}", f"lead{i:02d}@example.fr", minutes_ago=i)
    client = signed_in(app, "dpo")
    first = client.get("/staff/leads").text
    second = client.get("/staff/leads?page=2").text
    on_first = [i for i in range(30) if f"lead{i:02d}@example.fr" in first]
    on_second = [i for i in range(30) if f"lead{i:02d}@example.fr" in second]
    assert on_first == list(range(PAGE_SIZE)) and on_second == list(range(25, 30))
    assert first.index("lead00@") < first.index("lead01@") < first.index("lead24@")
    assert "Page 1 of 2" in first and 'href="/staff/leads?page=2"' in first
    assert "Page 2 of 2" in second and "?page=3" not in second
    assert "@example.fr" not in client.get("/staff/leads?page=3").text
    searched = client.get("/staff/leads?q=lead2").text  # lead20..lead29
    assert searched.count("@example.fr") == 10


def test_retention_due_is_three_years_after_the_last_interaction(app, staff) -> None:
    add_lead(app, "Old", "old@example.fr")
    with app.app_context():
        lead = db.session.scalars(sa.select(Lead)).one()
        assert retention_due(lead).date().isoformat() == "2029-03-10"
        lead.last_interaction_at = datetime(2024, 2, 29, 9, tzinfo=UTC)
        assert retention_due(lead).date().isoformat() == "2027-02-28"
    page = signed_in(app, "dpo").get("/staff/leads").text
    assert "Mar 10, 2029" in page


# --- Detail page ------------------------------------------------------------------------


def test_detail_shows_messages_and_consent_history(app, staff) -> None:
    public_id = add_lead(
        app, "Inès", "ines@example.fr", message="Un flacon, s’il vous plaît.",
        opt_in=True,
    )  # fmt: skip
    page = signed_in(app, "dpo").get(f"/staff/leads/{public_id}").text
    assert "Un flacon, s’il vous plaît." in page
    assert "Opt-in" in page and "contact_form" in page and "v1" in page
    logged = events(app, "view.lead")
    assert [e.target for e in logged] == [public_id]
    assert logged[0].actor == EMAILS["dpo"]


# --- CSV --------------------------------------------------------------------------------


def test_csv_neutralises_formulas_and_follows_the_search(app, staff) -> None:
    add_lead(app, '=HYPERLINK("http://evil")', "eq@example.fr", company="+33 cmd")
    add_lead(app, "@SUM(A1)", "at@example.fr", company="-2+3")
    add_lead(app, "Plain", "plain@example.fr", company="Maison")
    client = signed_in(app, "dpo")
    response = fetch(client, "/staff/leads.csv")
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = csv_of(response)
    assert rows[0][:3] == ["public_id", "name", "email"]
    cells = {cell for row in rows[1:] for cell in row}
    assert '\'=HYPERLINK("http://evil")' in cells and "'@SUM(A1)" in cells
    assert "'+33 cmd" in cells and "'-2+3" in cells
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells)
    assert len(rows) == 4

    only = csv_of(fetch(client, "/staff/leads.csv?q=plain"))
    assert [row[2] for row in only[1:]] == ["plain@example.fr"]


def test_csv_is_not_limited_to_one_page(app, staff) -> None:
    for i in range(PAGE_SIZE + 3):
        add_lead(app, f"L{i}", f"l{i}@example.fr", minutes_ago=i)
    rows = csv_of(fetch(signed_in(app, "dpo"), "/staff/leads.csv"))
    assert len(rows) == 1 + PAGE_SIZE + 3


# --- Audit log --------------------------------------------------------------------------


def test_every_view_search_and_download_is_logged(app, staff, one_lead) -> None:
    client = signed_in(app, "admin")
    client.get("/staff/leads")
    client.get("/staff/leads?q=Cam&page=2")
    fetch(client, "/staff/leads.csv?q=cam")
    client.get(f"/staff/leads/{one_lead}")
    views = events(app, "view.leads")
    assert [e.detail for e in views] == [
        {"q": "", "page": 1},
        {"q": "Cam", "page": 2},
    ]
    assert all(e.actor == EMAILS["admin"] for e in views)
    assert [e.detail for e in events(app, "export.leads")] == [{"q": "cam"}]
    assert [e.target for e in events(app, "view.lead")] == [one_lead]
    audit_page = client.get("/staff/audit").text
    assert "view.leads" in audit_page and "export.leads" in audit_page


def test_the_leads_pages_are_in_french_for_a_french_browser(
    app, staff, one_lead
) -> None:
    client = new_client(app, "fr")
    assert sign_in(client, EMAILS["dpo"]).status_code == 303
    listing = client.get("/staff/leads?q=cam").text
    assert "Contacts correspondant à «\u00a0cam\u00a0»\u00a0: 1" in listing
    assert "Dernière interaction" in listing and "Fin de conservation" in listing
    detail = client.get(f"/staff/leads/{one_lead}").text
    assert "Historique du consentement marketing" in detail
