"""Shared fixtures: an app per test on SQLite (default) or LORCHESTRE_TEST_DATABASE_URL."""

from __future__ import annotations

import os
import re
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
        "SECRET_KEY": "test-secret-key-0123456789abcdef0123456789",
        "SQLALCHEMY_DATABASE_URI": database_url(tmp_path),
        "COOKIE_SECURE": False,
        "RATELIMIT_STORAGE_URI": "memory://",
    }
    config.update(overrides)
    app = create_app(config)
    with app.app_context():
        db.drop_all()
        db.create_all()
    return app


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    """The application, with an empty database that is dropped afterwards."""
    app = make_app(tmp_path)
    yield app
    with app.app_context():
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


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
