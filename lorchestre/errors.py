"""Error pages: every error answers with a page in both languages, never a stack trace."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Flask, current_app, render_template, request
from flask.globals import request_ctx
from flask_babel import force_locale
from flask_wtf.csrf import CSRFError
from markupsafe import Markup
from werkzeug.exceptions import HTTPException, InternalServerError, SecurityError

from .database import DatabaseUnavailable
from .i18n import current_language, other_language

ERROR_PAGES = (400, 403, 404, 405, 413, 429, 500, 503)
RETRY_AFTER_SECONDS = 30


def render_bilingual(name: str, **context: Any) -> str:
    """Render a page built on errors/base.html, its message repeated in the other language."""
    _bind_fallback_url_adapter()
    template = current_app.jinja_env.get_template(name)
    with force_locale(other_language(current_language())):
        other = template.new_context(context)
        other_title = Markup("".join(template.blocks["title"](other)))
        other_message = Markup("".join(template.blocks["message"](other)))
    return render_template(
        name,
        other_title=other_title,
        other_message=other_message,
        hide_banner=True,
        **context,
    )


def render_error(code: int, reason: str | None = None) -> tuple[str, int]:
    """Render errors/<code>.html in the page's language, with the other language below."""
    name = f"errors/{code if code in ERROR_PAGES else 500}.html"
    return render_bilingual(name, reason=reason), code


def _bind_fallback_url_adapter() -> None:
    """Give the request a URL adapter when routing never ran (untrusted Host).

    Flask leaves ``url_adapter`` unset when the Host header fails TRUSTED_HOSTS, and
    the error page's ``url_for`` would then fail with a 500 -- whichever error is
    being rendered (a before_request check may refuse the request first). Bind to
    BASE_URL's host instead: the page only builds relative links, so the bad host
    is never echoed.
    """
    if request_ctx.url_adapter is not None:
        return
    base = urlsplit(current_app.config["BASE_URL"])
    request_ctx.url_adapter = current_app.url_map.bind(
        base.netloc or "localhost", url_scheme=base.scheme or "https"
    )


def init_app(app: Flask) -> None:
    """Register the handlers."""

    @app.errorhandler(SecurityError)
    def _untrusted_host(_error: SecurityError):
        app.logger.warning("refused a request for an untrusted host")
        return render_error(400)

    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError):
        return render_error(400, reason="csrf")

    @app.errorhandler(DatabaseUnavailable)
    def _database_unavailable(_error: DatabaseUnavailable):
        app.logger.warning(
            "database unavailable on %s %s", request.method, request.path
        )
        body, code = render_error(503)
        return body, code, {"Retry-After": str(RETRY_AFTER_SECONDS)}

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if error.code is None or error.code < 400:
            return error
        body, code = render_error(error.code)
        response = app.make_response((body, code))
        if error.code == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        if error.code in (429, 503):
            retry = getattr(error, "retry_after", None)
            response.headers["Retry-After"] = str(retry or RETRY_AFTER_SECONDS)
        return response

    @app.errorhandler(InternalServerError)
    def _server_error(_error: InternalServerError):
        return render_error(500)
