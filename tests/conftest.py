"""Shared fixtures: an app per test on SQLite (default) or LORCHESTRE_TEST_DATABASE_URL."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from lorchestre import create_app
from lorchestre.extensions import db

ROOT = Path(__file__).resolve().parent.parent
TEST_DATABASE_URL = os.environ.get("LORCHESTRE_TEST_DATABASE_URL", "")
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
TEST_SECRET = "test-secret-key-0123456789abcdef0123456789"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile the catalogues once, so French pages are really French."""
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "lorchestre", "translate", "compile"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


def database_url(tmp_path: Path) -> str:
    """PostgreSQL when CI asks for it, else a file SQLite (real WAL, real locks)."""
    return TEST_DATABASE_URL or f"sqlite:///{tmp_path / 'test.db'}"


def make_app(tmp_path: Path, **overrides) -> Flask:
    """A test app with a fresh schema; CSRF stays on."""
    config = {
        "TESTING": True,
        "SECRET_KEY": TEST_SECRET,
        "SQLALCHEMY_DATABASE_URI": database_url(tmp_path),
        "COOKIE_SECURE": False,
        "RATELIMIT_STORAGE_URI": "memory://",
        "BANNER_SCREENSHOTS_DIR": str(tmp_path / "banner-screenshots"),
    }
    config.update(overrides)
    app = create_app(config)
    with app.app_context():
        db.drop_all()
        db.create_all()
    return app


@pytest.fixture
def app_factory(tmp_path: Path) -> Iterator:
    """Factory for extra apps with overridden settings; each is torn down after the test."""
    apps: list[Flask] = []

    def factory(**overrides) -> Flask:
        app = make_app(tmp_path, **overrides)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.drop_all()
            db.engine.dispose()


@pytest.fixture
def app(app_factory) -> Flask:
    """The application, with an empty database that is dropped afterwards."""
    return app_factory()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client (cookies kept between requests)."""
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    """A CLI runner for `flask` commands."""
    return app.test_cli_runner()


def csrf_from(html: bytes | str) -> str:
    """The CSRF token a page's form carries."""
    text = html.decode() if isinstance(html, bytes) else html
    match = CSRF_INPUT.search(text)
    assert match, "no csrf_token input in the page"
    return match.group(1)


@pytest.fixture
def csrf_token(client: FlaskClient) -> str:
    """A valid CSRF token for ``client``'s session, read from a real page."""
    return csrf_from(client.get("/fr/").data)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app served on a free local port in a thread; yields its base URL."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium driven by Playwright (no browser download)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def new_page(chromium, tmp_path: Path):
    """Factory: a fresh browser context and page, recording console errors and CSP reports.

    ``new_page(java_script_enabled=False, extra_http_headers={...}, viewport={...})``
    returns a page with ``page.console_errors`` (a list) attached.
    """
    contexts = []

    def factory(**options):
        options.setdefault("viewport", {"width": 1280, "height": 900})
        context = chromium.new_context(**options)
        contexts.append(context)
        page = context.new_page()
        page.console_errors = []
        page.on(
            "console",
            lambda msg: (
                page.console_errors.append(msg.text) if msg.type == "error" else None
            ),
        )
        page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
        return page

    yield factory
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot_dir(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """Where a test writes its screenshots; copied under test-artifacts/ for review."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    yield folder
    target = ROOT / "test-artifacts" / re.sub(r"[^\w.-]+", "_", request.node.name)
    for shot in folder.glob("*.png"):
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target / shot.name)
