"""Error pages: every error answers with a page in both languages, never a stack trace."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, render_template, request
from flask_babel import force_locale
from flask_wtf.csrf import CSRFError
from markupsafe import Markup
from werkzeug.exceptions import HTTPException, InternalServerError, SecurityError
from werkzeug.wrappers import Response

from .database import DatabaseUnavailable
from .i18n import current_language, other_language

ERROR_PAGES = (400, 403, 404, 405, 413, 429, 500, 503)
RETRY_AFTER_SECONDS = 30


def render_bilingual(name: str, **context: Any) -> str:
    """Render a page built on errors/base.html, its message repeated in the other language."""
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


def init_app(app: Flask) -> None:
    """Register the handlers."""

    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError):
        return render_error(400, reason="csrf")

    @app.errorhandler(SecurityError)
    def _untrusted_host(_error: SecurityError):
        # A Host outside TRUSTED_HOSTS: no URL can be built for it, so no page either.
        return Response(
            "400 Bad Request: unknown host.\n"
            "400 Requête incorrecte\u00a0: hôte inconnu.\n",
            status=400,
            mimetype="text/plain",
        )

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
