"""Hostile input against the contact form and the rights desk, beyond their own tests.

Bad-inputs #11: a homoglyph of a known address is another address, and never reaches
that person's data through the rights desk; an NFD spelling is the same address.
#12: formula-looking values stay exactly as typed in the JSON access report (the CSV
exports prefix them: tests/test_staff_leads.py, tests/test_staff_stats.py).
"""

from __future__ import annotations

import json

import pytest

from lorchestre.rights.services import NO_DATA

from .test_rights import (
    CAMILLE,
    ask,
    confirm,
    download,
    entries,
    link_mails,
    request_link,
    seed,
)

JOSE = CAMILLE | {"name": "José García", "email": "josé@exemple.fr"}


@pytest.mark.parametrize(
    "look_alike",
    [
        "c\u0430mille@example.fr",  # Cyrillic а
        "\uff43\uff41\uff4d\uff49\uff4c\uff4c\uff45@example.fr",  # fullwidth
        "camille@ex\u0430mple.fr",  # Cyrillic а in the domain
    ],
)
def test_a_homoglyph_address_never_reaches_the_others_data(app, client, look_alike):
    """#11: the same answer as for anyone, no link mailed, the request refused."""
    seed(client, CAMILLE)
    genuine = ask(client, kind="access")
    assert len(link_mails(app)) == 1
    forged = ask(client, email=look_alike, kind="access")
    assert (forged.status_code, forged.headers["Location"]) == (
        genuine.status_code,
        genuine.headers["Location"],
    )
    mails = link_mails(app)
    assert len(mails) == 1 and mails[0].to_address == CAMILLE["email"]
    last = entries(app)[-1]
    assert (last.status, last.refusal_reason, last.lead_id) == (
        "refused",
        NO_DATA,
        None,
    )


def test_an_nfd_spelling_is_the_same_person(app, client):
    """#11: "jose\u0301" typed with a combining accent reaches the lead "josé"."""
    seed(client, JOSE)
    assert ask(client, email="jose\u0301@exemple.fr", kind="access").status_code == 303
    mails = link_mails(app)
    assert [mail.to_address for mail in mails] == ["josé@exemple.fr"]


FORMULAS = {
    "name": '=HYPERLINK("http://evil.example","x")',
    "company": "+cmd|' /C calc'!A0",
    "message": "@SUM(1+1)*cmd|' /C calc'!A0 and -2+3",
}


def test_formulas_come_back_unchanged_in_the_json_access_report(app, client):
    """#12: the JSON download is data, not a spreadsheet: nothing prefixed or altered."""
    seed(client, CAMILLE | FORMULAS)
    page = confirm(client, request_link(app, client, "access"))
    report = json.loads(download(client, page).data)
    assert report["contact_details"]["name"] == FORMULAS["name"]
    assert report["contact_details"]["company"] == FORMULAS["company"]
    assert FORMULAS["message"] in json.dumps(report, ensure_ascii=False)
