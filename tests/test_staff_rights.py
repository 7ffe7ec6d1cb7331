"""DPO rights-request register: deadlines, overdue flag, extension, answer, refusal, entry, CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from flask import Flask

from lorchestre.extensions import db
from lorchestre.models import RightsRequest, StaffAuditEvent
from lorchestre.rights.services import (
    ADDRESS_LIMIT,
    NO_DATA,
    register_request,
    submit_request,
)
from tests.contact_helpers import post_contact
from tests.staff_support import (
    EMAILS,
    FAST_ARGON2,
    ROLES,
    create_staff,
    csrf_of,
    signed_in,
)

T0 = datetime(2027, 3, 10, 8, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _setup(app: Flask, time_machine) -> None:
    app.config["STAFF_ARGON2_PARAMS"] = FAST_ARGON2
    time_machine.move_to(T0, tick=False)
    for role in ROLES:
        create_staff(app, EMAILS[role], role)


def enter(app: Flask, kind: str = "access", days_ago: int = 0, **kw) -> int:
    """A request entered by the DPO, received ``days_ago`` days before T0."""
    with app.test_request_context():
        return register_request(
            kind=kind,
            email=kw.pop("email", "camille@example.fr"),
            language=kw.pop("language", "fr"),
            received_at=T0 - timedelta(days=days_ago),
        ).id


def entry(app: Flask, request_id: int) -> RightsRequest:
    with app.app_context():
        found = db.session.get(RightsRequest, request_id)
        db.session.expunge(found)
        return found


def audit_actions(app: Flask) -> list[str]:
    with app.app_context():
        return list(
            db.session.scalars(
                sa.select(StaffAuditEvent.action).order_by(StaffAuditEvent.id)
            )
        )


def post_form(client, path: str, page: str, data: dict[str, str]):
    token = csrf_of(client.get(page).data)
    return client.post(path, data={"csrf_token": token, **data})


def row_of(html: str, request_id: int) -> str:
    """The table row of one request in the register page."""
    marker = f'href="/staff/requests/{request_id}"'
    start = html.rindex("<tr", 0, html.index(marker))
    return html[start : html.index("</tr>", start)]


def test_open_requests_come_by_deadline_with_overdue_ones_flagged(app) -> None:
    late = enter(app, "erase", days_ago=31)  # 7 Feb: due 7 March, 3 days ago
    soon = enter(app, "access", days_ago=24)  # 14 Feb: due 14 March
    fresh = enter(app, "object", days_ago=1)
    closed = enter(app, "rectify", days_ago=2)
    with app.test_request_context():
        from lorchestre.rights.services import mark_done

        mark_done(closed)
    html = signed_in(app, "dpo").get("/staff/requests").text
    assert (
        html.index(f'/staff/requests/{late}"')
        < html.index(f'/staff/requests/{soon}"')
        < html.index(f'/staff/requests/{fresh}"')
    )
    assert f'/staff/requests/{closed}"' not in html  # the default view: open only
    assert 'class="rr-row-overdue"' in row_of(html, late)
    assert "Overdue by 3 days" in row_of(html, late)
    assert 'class="rr-row-soon"' in row_of(html, soon)
    assert "Due in 4 days" in row_of(html, soon)
    assert "Due in 30 days" in row_of(html, fresh)
    tiles = html[html.index('class="staff-tiles"') : html.index("</ul>")]
    assert [t.split("<")[0] for t in tiles.split('class="tile-value">')[1:]] == [
        "3",
        "1",
        "1",
    ]
    overdue = signed_in(app, "dpo").get("/staff/requests?view=overdue").text
    assert f'/staff/requests/{late}"' in overdue
    assert f'/staff/requests/{soon}"' not in overdue
    closed_view = signed_in(app, "dpo").get("/staff/requests?view=closed").text
    assert f'/staff/requests/{closed}"' in closed_view
    assert f'/staff/requests/{late}"' not in closed_view
    only_erase = signed_in(app, "dpo").get("/staff/requests?view=all&kind=erase").text
    assert f'/staff/requests/{late}"' in only_erase
    assert f'/staff/requests/{soon}"' not in only_erase


def test_the_register_speaks_french(app) -> None:
    late = enter(app, "erase", days_ago=30)
    html = signed_in(app, "dpo", lang="fr").get("/staff/requests").text
    assert '<html lang="fr">' in html
    assert "Demandes d’exercice des droits" in html
    assert "En retard de 2\u00a0jours" in row_of(html, late)
    assert "Effacement" in row_of(html, late)


def test_extension_moves_the_deadline_once_with_its_reason(app) -> None:
    request_id = enter(app, days_ago=10)
    client = signed_in(app, "dpo")
    page = f"/staff/requests/{request_id}"
    response = post_form(
        client,
        f"{page}/extend",
        page,
        {"extend-reason": "Paper archives in two boutiques"},
    )
    assert response.status_code == 303
    extended = entry(app, request_id)
    # 28 Feb at 09:00 in Paris, plus three months: 28 May at 09:00, summer time.
    assert extended.due_at == datetime(2027, 5, 28, 7, 0, tzinfo=UTC)
    assert extended.extension_reason == "Paper archives in two boutiques"
    html = client.get(page).text
    assert "Deadline extended by two months" in html
    assert "Paper archives in two boutiques" in html
    assert "Extend the deadline" not in html  # the form is gone: once only
    again = post_form(client, f"{page}/extend", page, {"extend-reason": "Once more"})
    assert again.status_code == 409
    assert "can be extended only once" in again.text
    assert entry(app, request_id).extension_reason == "Paper archives in two boutiques"
    assert audit_actions(app).count("rights.extend") == 1


def test_an_overdue_request_can_no_longer_be_extended(app) -> None:
    request_id = enter(app, days_ago=40)
    client = signed_in(app, "dpo")
    page = f"/staff/requests/{request_id}"
    response = post_form(client, f"{page}/extend", page, {"extend-reason": "Late"})
    assert response.status_code == 409
    assert "within the first month" in response.text
    assert entry(app, request_id).extended_at is None


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        ("", "This field is required."),
        ("   ", "This field is required."),
        ("x" * 501, "Field cannot be longer than 500 characters."),
        ("Two\r\nlines", "on one line"),
        ("RTL \u202e override", "on one line"),
    ],
)
def test_a_bad_reason_is_refused_and_the_input_kept(app, reason, error) -> None:
    request_id = enter(app)
    client = signed_in(app, "dpo")
    page = f"/staff/requests/{request_id}"
    response = post_form(client, f"{page}/refuse", page, {"refuse-reason": reason})
    assert response.status_code == 400
    assert error in response.text
    assert entry(app, request_id).status == "received"
    assert "rights.refuse" not in audit_actions(app)


def test_a_bad_reason_is_explained_in_french(app) -> None:
    request_id = enter(app)
    client = signed_in(app, "dpo", lang="fr")
    page = f"/staff/requests/{request_id}"
    response = post_form(client, f"{page}/extend", page, {"extend-reason": ""})
    assert response.status_code == 400
    assert "Veuillez corriger" in response.text


def test_answered_and_refused_requests_are_closed_for_good(app) -> None:
    answered, refused = enter(app), enter(app, "erase")
    client = signed_in(app, "dpo")
    for request_id, path, data, said in (
        (answered, "done", {}, "Request marked as answered."),
        (
            refused,
            "refuse",
            {"refuse-reason": "Identity could not be checked"},
            "complain to the CNIL",
        ),
    ):
        page = f"/staff/requests/{request_id}"
        response = post_form(client, f"{page}/{path}", page, data)
        assert response.status_code == 303
        assert said in client.get(response.headers["Location"]).text
    done = entry(app, answered)
    assert (done.status, done.completed_at) == ("done", T0)
    no = entry(app, refused)
    assert (no.status, no.refusal_reason) == (
        "refused",
        "Identity could not be checked",
    )
    html = client.get(f"/staff/requests/{answered}").text
    assert "Mark as answered" not in html and "Refuse the request" not in html
    page = f"/staff/requests/{answered}"
    token = csrf_of(client.get("/staff/account").data)
    again = client.post(f"{page}/done", data={"csrf_token": token})
    assert again.status_code == 303
    assert "This request is closed" in client.get(page).text
    assert audit_actions(app).count("rights.done") == 1
    assert audit_actions(app).count("rights.refuse") == 1


def test_what_the_desk_did_is_explained(app, client) -> None:
    with app.test_request_context():
        submit_request(email="nobody@example.fr", kind="access", language="fr")
    with app.app_context():
        desk = db.session.scalar(sa.select(RightsRequest))
        assert desk.refusal_reason == NO_DATA
        request_id = desk.id
    html = signed_in(app, "dpo").get(f"/staff/requests/{request_id}").text
    assert "No data is held for this address: no e-mail was sent." in html
    assert "Self-service desk" in html
    assert ADDRESS_LIMIT not in html and NO_DATA not in html


def test_a_known_person_links_to_their_file(app, client) -> None:
    assert post_contact(client).status_code == 303
    request_id = enter(app, email="Camille@Example.fr")
    html = signed_in(app, "dpo").get(f"/staff/requests/{request_id}").text
    assert "/staff/leads/" in html
    unknown = enter(app, email="someone@example.fr")
    assert (
        "Not in the CRM" in signed_in(app, "dpo").get(f"/staff/requests/{unknown}").text
    )


def test_entering_a_request_received_by_post(app) -> None:
    client = signed_in(app, "dpo")
    response = post_form(
        client,
        "/staff/requests/new",
        "/staff/requests/new",
        {
            "kind": "rectify",
            "email": "camille@example.fr",
            "language": "en",
            "received_on": "2027-03-01",
        },
    )
    assert response.status_code == 303
    with app.app_context():
        created = db.session.scalar(sa.select(RightsRequest))
        assert (created.kind, created.channel, created.language) == (
            "rectify",
            "staff",
            "en",
        )
        assert created.received_at == datetime(2027, 3, 1, 11, 0, tzinfo=UTC)  # noon
        assert created.due_at == datetime(2027, 4, 1, 10, 0, tzinfo=UTC)  # in Paris
        assert "camille" not in repr(
            db.session.execute(sa.text("SELECT * FROM rights_request")).all()
        )
    assert response.headers["Location"] == f"/staff/requests/{created.id}"
    assert "rights.register" in audit_actions(app)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"email": "not an address"}, "valid e-mail address"),
        ({"email": "a@x.fr\r\nBcc: v@evil.example"}, "valid e-mail address"),
        ({"kind": "delete-everything"}, "Not a valid choice"),
        ({"kind": ""}, "Choose the type of request."),
        ({"received_on": "2027-03-11"}, "cannot be in the future"),
        ({"received_on": "10/03/2027"}, "Enter a date as YYYY-MM-DD."),
        ({"language": "de"}, "Not a valid choice"),
    ],
)
def test_a_bad_entry_is_refused_with_the_input_kept(app, data, error) -> None:
    form = {
        "kind": "access",
        "email": "camille@example.fr",
        "language": "fr",
        "received_on": "",
        **data,
    }
    client = signed_in(app, "dpo")
    response = post_form(client, "/staff/requests/new", "/staff/requests/new", form)
    assert response.status_code == 400
    assert error in response.text
    if form["email"] == "not an address":
        assert 'value="not an address"' in response.text
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(RightsRequest.id))) == 0


def test_register_csv_has_dates_and_reasons_never_an_address(app) -> None:
    first = enter(app, days_ago=3, email="camille@example.fr")
    second = enter(app, "erase", email="dominique@example.fr")
    with app.test_request_context():
        from lorchestre.rights.services import refuse_request

        refuse_request(second, '=HYPERLINK("http://evil.example")')
    response = signed_in(app, "dpo").get("/staff/requests.csv?view=all")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    text = response.get_data(as_text=True)
    assert "@example.fr" not in text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["number", "kind", "channel"]
    by_number = {row[0]: row for row in rows[1:]}
    assert by_number[str(first)][4] == "received"
    assert by_number[str(first)][5] == "2027-03-07T08:00:00.000000Z"
    assert by_number[str(second)][11] == '\'=HYPERLINK("http://evil.example")'
    assert "export.rights_register" in audit_actions(app)


@pytest.mark.parametrize(
    "query",
    ["view=<script>", "kind=%27%20OR%201=1--", "page=99999999999999999999", "page=-3",
     "view=overdue&kind=erase&page=2", "kind=%00"],
)  # fmt: skip
def test_odd_filters_give_a_page_not_an_error(app, query) -> None:
    enter(app)
    response = signed_in(app, "dpo").get(f"/staff/requests?{query}")
    assert response.status_code == 200
    assert "<script>" not in response.text


def test_an_unknown_request_is_404(app) -> None:
    assert signed_in(app, "dpo").get("/staff/requests/424242").status_code == 404


def test_views_are_logged_and_marketing_never_sees_the_register(app) -> None:
    request_id = enter(app)
    client = signed_in(app, "dpo")
    client.get("/staff/requests")
    client.get(f"/staff/requests/{request_id}")
    assert {"view.rights_register", "view.rights_request"} <= set(audit_actions(app))
    marketing = signed_in(app, "marketing")
    assert "/staff/requests" not in marketing.get("/staff/").text
    assert marketing.get(f"/staff/requests/{request_id}").status_code == 403
