"""The factory: configuration layers, production checks, security headers, limits."""

from __future__ import annotations

import pytest

from lorchestre import create_app
from lorchestre.config import DEV_SECRET_KEY
from lorchestre.extensions import limiter
from lorchestre.security import InsecureConfiguration
from tests.conftest import csrf_from

PAGES = [
    "/fr/",
    "/en/privacy",
    "/fr/legal",
    "/en/cookies",
    "/fr/contact",
    "/en/my-data",
]


def test_environment_overrides_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("LORCHESTRE_PROXY_COUNT", "1")
    monkeypatch.setenv(
        "LORCHESTRE_SQLALCHEMY_DATABASE_URI", f"sqlite:///{tmp_path}/x.db"
    )
    app = create_app()
    assert app.config["PROXY_COUNT"] == 1
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("/x.db")


def test_default_database_is_sqlite_in_instance(tmp_path, monkeypatch):
    monkeypatch.delenv("LORCHESTRE_SQLALCHEMY_DATABASE_URI", raising=False)
    app = create_app({"TESTING": True})
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("instance/lorchestre.db")


@pytest.mark.parametrize("secret", [DEV_SECRET_KEY, "short", ""])
def test_production_refuses_weak_secret(secret):
    with pytest.raises(InsecureConfiguration):
        create_app({"ENV_NAME": "production", "SECRET_KEY": secret})


def test_production_refuses_insecure_cookies():
    with pytest.raises(InsecureConfiguration):
        create_app(
            {"ENV_NAME": "production", "SECRET_KEY": "x" * 40, "COOKIE_SECURE": False}
        )


def test_production_starts_with_a_real_secret(tmp_path):
    app = create_app(
        {
            "ENV_NAME": "production",
            "SECRET_KEY": "x" * 40,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/p.db",
        }
    )
    assert app.config["SESSION_COOKIE_SECURE"] is True


@pytest.mark.parametrize(
    "url", [*PAGES, "/", "/de/privacy", "/healthz", "/static/css/site.css"]
)
def test_security_headers_on_every_response(client, url):
    response = client.get(url)
    response.close()  # static files are streamed from disk
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "Strict-Transport-Security" not in response.headers


def test_hsts_only_over_https(client):
    response = client.get("/fr/", base_url="https://localhost")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


def test_session_cookie_is_hardened(app):
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_oversized_body_is_refused(client, csrf_token):
    response = client.post(
        "/consent",
        data={"csrf_token": csrf_token, "action": "reject_all", "next": "x" * 100_000},
    )
    assert response.status_code == 413


def test_healthz_reports_database(client, app):
    assert client.get("/healthz").data == b"ok\n"


def test_healthz_503_when_database_is_gone(tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/missing/dir/x.db",
        }
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 503


def test_unexpected_error_gives_a_bilingual_500_page(app):
    def boom():
        raise RuntimeError("unexpected")

    app.add_url_rule("/fr/boom", view_func=boom)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = app.test_client().get("/fr/boom")
    assert response.status_code == 500
    assert (
        "Un incident est survenu" in response.text
        and "Something went wrong" in response.text
    )
    assert "RuntimeError" not in response.text


@pytest.mark.parametrize(("code", "fr", "en"), [(404, "Page introuvable", "Page not found"),
                                                 (405, "Méthode non autorisée", "Method not allowed")])  # fmt: skip
def test_error_pages_speak_both_languages(client, code, fr, en):
    response = client.get("/en/nope") if code == 404 else client.post("/en/privacy")
    assert response.status_code == code
    assert response.text.index(en) < response.text.index(fr)  # page language first
    assert '<html lang="en">' in response.text


def test_only_routes_with_a_limit_consult_the_rate_limiter(app, client, monkeypatch):
    calls = []
    check = limiter._check_request_limit

    def counting(*args, **kwargs):
        calls.append(kwargs.get("in_middleware", True))
        return check(*args, **kwargs)

    monkeypatch.setattr(limiter, "_check_request_limit", counting)
    assert client.get("/en/privacy").status_code == 200
    assert calls == []  # no hook on every request any more
    page = client.get("/en/contact")
    client.post("/en/contact", data={"csrf_token": csrf_from(page.data)})
    assert calls and not any(calls)  # only the route's own decorator, never the hook
