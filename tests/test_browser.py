"""Real Chromium: pages render cleanly, the banner works with and without JavaScript."""

from __future__ import annotations

import shutil

import pytest
import sqlalchemy as sa

from lorchestre.consent.services import COOKIE_NAME
from lorchestre.extensions import db
from lorchestre.models import ConsentRecord
from lorchestre.policy import CURRENT_POLICY

from .conftest import ROOT

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
OPTIONAL_COOKIES = {"lorchestre_analytics", "lorchestre_ads", "lorchestre_prefs"}


def keep(path, name: str) -> None:
    """Copy a screenshot under test-artifacts/ so a person can look at it after the run."""
    target = ROOT / "test-artifacts" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, target)


def records(app) -> list[ConsentRecord]:
    with app.app_context():
        return list(
            db.session.scalars(sa.select(ConsentRecord).order_by(ConsentRecord.seq))
        )


@pytest.mark.parametrize("lang", ["fr", "en"])
@pytest.mark.parametrize("page_name", ["privacy", "legal", "", "cookies"])
def test_pages_render_without_errors_or_csp_violations(
    live_server, new_page, tmp_path, lang, page_name
):
    page = new_page()
    response = page.goto(f"{live_server}/{lang}/{page_name}")
    assert response.status == 200
    page.wait_for_load_state("networkidle")
    assert page.console_errors == []
    assert page.evaluate("document.documentElement.lang") == lang
    # nothing was requested from another origin
    origins = page.evaluate(
        "performance.getEntriesByType('resource').map(e => new URL(e.name).origin)"
    )
    assert set(origins) <= {live_server}
    shot = tmp_path / f"{page_name or 'home'}-{lang}.png"
    page.screenshot(path=str(shot), full_page=True)
    keep(shot, f"pages/{page_name or 'home'}-{lang}.png")


@pytest.mark.parametrize("lang", ["fr", "en"])
@pytest.mark.parametrize("page_name", ["privacy", "legal", "", "cookies"])
def test_accessibility_no_serious_violation(live_server, new_page, lang, page_name):
    from axe_playwright_python.sync_playwright import Axe

    page = new_page(
        bypass_csp=True
    )  # axe-core is injected by the test, not by the site
    page.goto(f"{live_server}/{lang}/{page_name}")
    results = Axe().run(page)
    serious = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert serious == []


@pytest.mark.parametrize("javascript", [False, True])
def test_reject_all_with_and_without_javascript(app, live_server, new_page, javascript):
    page = new_page(java_script_enabled=javascript)
    page.goto(f"{live_server}/fr/privacy")
    banner = page.locator("#consent-banner")
    assert banner.is_visible()
    assert page.locator("script[data-category]").count() == 0
    page.get_by_role("button", name="Tout refuser").click()
    if javascript:
        banner.wait_for(state="detached")
        assert page.url == f"{live_server}/fr/privacy"  # no reload, no navigation
    else:
        page.wait_for_url(f"{live_server}/fr/privacy")
        assert page.locator("#consent-banner").count() == 0
    [record] = records(app)
    assert record.action == "reject_all"
    assert record.channel == ("js" if javascript else "form")
    names = {c["name"] for c in page.context.cookies()}
    assert COOKIE_NAME in names and not names & OPTIONAL_COOKIES
    page.reload()
    assert page.locator("#consent-banner").count() == 0
    assert page.locator("script[data-category]").count() == 0


def test_accept_all_with_javascript_enables_gated_tag(app, live_server, new_page):
    page = new_page()
    page.goto(f"{live_server}/en/")
    page.get_by_role("button", name="Accept all").click()
    page.wait_for_selector("script[data-category='analytics']", state="attached")
    # Poll from Python: wait_for_function evaluates a string in the page, which the
    # site's CSP (no 'unsafe-eval') refuses whenever the first check is not yet true.
    for _ in range(200):
        if any(c["name"] == "lorchestre_analytics" for c in page.context.cookies()):
            break
        page.wait_for_timeout(50)
    else:
        pytest.fail("the analytics example never set its cookie")
    assert records(app)[0].action == "accept_all"


def test_customise_layer_without_javascript(app, live_server, new_page):
    page = new_page(java_script_enabled=False)
    page.goto(f"{live_server}/en/legal")
    layer = page.locator("#consent-customise")
    assert not layer.is_visible()
    page.get_by_role("link", name="Customise").click()
    assert layer.is_visible()
    boxes = layer.locator("input[type=checkbox]")
    assert boxes.count() == 3
    assert all(not boxes.nth(i).is_checked() for i in range(3))
    layer.get_by_label("Personalisation").check()
    layer.get_by_role("button", name="Save my choices").click()
    page.wait_for_url(f"{live_server}/en/legal")
    [record] = records(app)
    assert (record.action, record.analytics, record.personalization) == (
        "custom",
        False,
        True,
    )


def test_withdraw_from_the_preferences_page_without_javascript(
    app, live_server, new_page
):
    page = new_page(java_script_enabled=False)
    page.goto(f"{live_server}/fr/")
    page.get_by_role("button", name="Tout accepter").click()
    page.context.add_cookies(
        [{"name": "lorchestre_ads", "value": "x", "url": live_server}]
    )
    page.locator(".site-footer").get_by_role("link", name="Gérer mes cookies").click()
    page.get_by_role("button", name="Retirer tout mon consentement").click()
    page.wait_for_url(f"{live_server}/fr/cookies")
    names = {c["name"] for c in page.context.cookies()}
    assert "lorchestre_ads" not in names and COOKIE_NAME in names
    assert [r.action for r in records(app)] == ["accept_all", "withdraw"]
    assert page.locator(".history-table tbody tr").count() == 2


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_accept_and_reject_look_the_same(live_server, new_page, viewport):
    page = new_page(viewport=viewport)
    page.goto(f"{live_server}/fr/")
    styles = page.evaluate(
        """() => [...document.querySelectorAll('#consent-banner .consent-actions .consent-btn')]
        .map(el => { const s = getComputedStyle(el), r = el.getBoundingClientRect();
          return [Math.round(r.width), Math.round(r.height), s.color, s.backgroundColor,
                  s.fontSize, s.fontWeight, s.fontFamily, s.borderTopColor, s.borderTopWidth]; })"""
    )
    assert len(styles) == 3
    assert styles[0] == styles[1] == styles[2]


def test_banner_overlays_without_layout_shift(live_server, new_page):
    page = new_page()
    page.goto(f"{live_server}/fr/privacy")
    position = page.evaluate(
        "getComputedStyle(document.getElementById('consent-banner')).position"
    )
    assert position == "fixed"


def test_gpc_signal_is_honoured(app, live_server, new_page):
    page = new_page(extra_http_headers={"Sec-GPC": "1"})
    page.goto(f"{live_server}/en/")
    assert page.locator(".consent-gpc").is_visible()
    assert page.locator("script[data-category]").count() == 0
    page.get_by_role("button", name="Reject all").click()
    page.locator("#consent-banner").wait_for(state="detached")
    [record] = records(app)
    assert record.gpc is True


@pytest.mark.parametrize("lang", ["fr", "en"])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_banner_screenshots_per_policy_version(
    app, live_server, new_page, lang, viewport
):
    """CNIL proof method: dated screenshots of the banner, per version, desktop and phone."""
    page = new_page(viewport=viewport)
    page.goto(f"{live_server}/{lang}/")
    folder = app.config["BANNER_SCREENSHOTS_DIR"] / CURRENT_POLICY.version
    folder.mkdir(parents=True, exist_ok=True)
    kind = "desktop" if viewport is DESKTOP else "phone"
    shot = folder / f"banner-{lang}-{kind}.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    keep(shot, f"banner/{CURRENT_POLICY.version}/banner-{lang}-{kind}.png")
