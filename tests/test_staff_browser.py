"""Real Chromium: the staff dashboard renders cleanly and moves when a visitor chooses."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask

from lorchestre.rights.services import register_request
from tests.staff_support import FAST_ARGON2, PASSWORD, create_staff, seed_ledger

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _cheap_hashing(app: Flask) -> None:
    app.config["STAFF_ARGON2_PARAMS"] = FAST_ARGON2


def keep(path: Path, name: str) -> None:
    """Copy a screenshot under test-artifacts/ so a person can look at it after the run."""
    target = ROOT / "test-artifacts" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, target)


def sign_in(page, base: str, email: str, target: str = "/staff/") -> None:
    page.goto(f"{base}{target}")
    assert "/staff/login" in page.url  # anonymous: sent to the sign-in page
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}{target}")


def total_choices(page) -> int:
    text = page.text_content(".staff-tiles li:first-child .tile-value") or ""
    return int("".join(ch for ch in text if ch.isdigit()))


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_dashboard_renders_cleanly_and_moves_when_a_visitor_chooses(
    app, live_server, new_page, screenshot_dir, lang
) -> None:
    now = datetime.now(UTC)
    with app.app_context():
        seed_ledger(4000, now - timedelta(days=29), now - timedelta(minutes=5))
    create_staff(app, "marketing@lorchestreparfum.com", "marketing")

    staff = new_page(locale=lang, extra_http_headers={"Accept-Language": lang})
    sign_in(staff, live_server, "marketing@lorchestreparfum.com")
    staff.wait_for_load_state("networkidle")
    assert staff.evaluate("document.documentElement.lang") == lang
    assert staff.locator("svg.chart").count() == 3
    assert staff.locator("#chart-days rect").count() >= 30 * 3
    before = total_choices(staff)
    assert before == 4000
    shot = screenshot_dir / f"staff-dashboard-{lang}.png"
    staff.screenshot(path=str(shot), full_page=True)
    keep(shot, f"staff/dashboard-{lang}.png")

    # The same numbers as CSV, downloaded by the browser.
    with staff.expect_download() as download:
        staff.click("section[aria-labelledby=per-day] a.staff-download")
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows[-1][0] == "total" and int(rows[-1][5]) == 4000

    # Another browser: a visitor accepts everything on the public site.
    visitor = new_page()
    visitor.goto(f"{live_server}/en/")
    visitor.click("button[name=action][value=accept_all]")
    visitor.wait_for_load_state("networkidle")
    staff.reload()
    assert total_choices(staff) == before + 1

    origins = staff.evaluate(
        "performance.getEntriesByType('resource').map(e => new URL(e.name).origin)"
    )
    assert set(origins) <= {live_server}
    assert staff.console_errors == []  # includes any CSP violation report


def test_staff_pages_have_no_serious_accessibility_violation(
    app, live_server, new_page
) -> None:
    from axe_playwright_python.sync_playwright import Axe

    now = datetime.now(UTC)
    with app.app_context():
        seed_ledger(500, now - timedelta(days=10), now - timedelta(minutes=5))
    create_staff(app, "admin@lorchestreparfum.com", "admin")
    with app.test_request_context():
        register_request(
            kind="erase",
            email="camille@example.fr",
            language="fr",
            received_at=now - timedelta(days=40),
        )
    page = new_page(bypass_csp=True)  # axe-core is injected by the test, not the site
    serious = {}
    paths = ["/staff/login?next=/staff/", "/staff/", "/staff/ledger", "/staff/register",
             "/staff/audit", "/staff/accounts", "/staff/account", "/staff/account/totp",
             "/staff/requests", "/staff/requests/new", "/staff/requests/1"]  # fmt: skip
    for path in paths:
        page.goto(f"{live_server}{path}")
        if path == "/staff/":  # signed in after the sign-in page was checked
            sign_in(page, live_server, "admin@lorchestreparfum.com")
        results = Axe().run(page)
        found = [
            (v["id"], [n["target"] for n in v["nodes"]][:3])
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        if found:
            serious[path] = found
    assert serious == {}


def test_the_dpo_downloads_an_audit_bundle_that_verifies_without_our_code(
    app, live_server, new_page, screenshot_dir
) -> None:
    now = datetime.now(UTC)
    with app.app_context():
        seed_ledger(1500, now - timedelta(days=3), now - timedelta(minutes=5))
    create_staff(app, "dpo@lorchestreparfum.com", "dpo")
    page = new_page()
    sign_in(page, live_server, "dpo@lorchestreparfum.com", "/staff/ledger")
    page.click("form[action$='/ledger/verify'] button")
    assert "Verified: 1,500 records" in page.text_content(".staff-result-ok")
    shot = screenshot_dir / "staff-ledger.png"
    page.screenshot(path=str(shot), full_page=True)
    keep(shot, "staff/ledger-en.png")

    with page.expect_download() as download:
        page.click("form[action$='/ledger/audit-bundle'] button")
    with zipfile.ZipFile(download.value.path()) as bundle:
        manifest = json.loads(bundle.read("manifest.json"))
        prev = "0" * 64
        for line in bundle.read("ledger.jsonl").decode("utf-8").splitlines():
            rec = json.loads(line)
            body = {k: v for k, v in rec.items() if k != "hash"}
            c = json.dumps(
                body, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            )
            assert rec["prev_hash"] == prev
            assert hashlib.sha256((prev + "\n" + c).encode()).hexdigest() == rec["hash"]
            prev = rec["hash"]
    assert manifest["head_hash"] == prev and manifest["row_count"] == 1500
    assert page.console_errors == []


def test_the_dpo_works_through_the_rights_register_in_french(
    app, live_server, new_page, screenshot_dir
) -> None:
    now = datetime.now(UTC)
    with app.test_request_context():
        for kind, days in (("erase", 40), ("access", 26), ("object", 3)):
            register_request(
                kind=kind,
                email=f"{kind}@example.fr",
                language="fr",
                received_at=now - timedelta(days=days),
            )
    create_staff(app, "dpo@lorchestreparfum.com", "dpo")
    page = new_page(locale="fr", extra_http_headers={"Accept-Language": "fr"})
    sign_in(page, live_server, "dpo@lorchestreparfum.com", "/staff/requests")
    overdue = page.locator("tr.rr-row-overdue")
    assert overdue.count() == 1
    assert "En retard de" in (overdue.text_content() or "")
    assert page.locator("tr.rr-row-soon").count() == 1
    shot = screenshot_dir / "staff-requests-fr.png"
    page.screenshot(path=str(shot), full_page=True)
    keep(shot, "staff/requests-fr.png")

    # The newest request: extend it with a reason, then record the answer.
    page.click("tbody tr:last-child th a")
    page.fill("#extend-reason", "Archives papier dans deux boutiques")
    page.click("form[action$='/extend'] button")
    assert "Délai prolongé de deux mois" in page.text_content(".staff-flashes")
    assert "Archives papier dans deux boutiques" in page.text_content(".staff-facts")
    shot = screenshot_dir / "staff-request-fr.png"
    page.screenshot(path=str(shot), full_page=True)
    keep(shot, "staff/request-fr.png")
    page.click("form[action$='/done'] button")
    assert "Demande marquée comme traitée." in page.text_content(".staff-flashes")
    assert page.locator("form[action$='/done']").count() == 0
    assert page.console_errors == []
