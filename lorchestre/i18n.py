"""Language handling: language in the URL, Accept-Language for "/", Babel's locale selector."""

from __future__ import annotations

from flask import Flask, g, redirect, request, url_for
from werkzeug.wrappers import Response

from .config import DEFAULT_LANGUAGE, LANGUAGES

LANG_PREFIX = "/<any(fr, en):lang_code>"


def preferred_language() -> str:
    """Best language for this request from Accept-Language, French when nothing fits."""
    try:
        match = request.accept_languages.best_match(LANGUAGES)
    except (ValueError, TypeError):  # a header werkzeug could not make sense of
        match = None
    return match or DEFAULT_LANGUAGE


def current_language() -> str:
    """The page's language: from the URL when there is one, else negotiated."""
    lang = g.get("lang_code")
    if lang in LANGUAGES:
        return lang
    # An unmatched URL (404, 405) still says its language in its first segment.
    prefix = request.path.split("/", 2)[1] if request.path.count("/") >= 2 else ""
    return prefix if prefix in LANGUAGES else preferred_language()


def other_language(lang: str) -> str:
    """The language a page links to as its alternative."""
    return "en" if lang == "fr" else "fr"


def init_app(app: Flask) -> None:
    """Register the URL processors and the root redirect."""

    @app.url_value_preprocessor
    def _pull_lang_code(_endpoint, values) -> None:
        # Reset on every request: Flask 3.1 test clients can keep one app context.
        g.lang_code = values.pop("lang_code", None) if values else None

    @app.url_defaults
    def _add_lang_code(endpoint: str, values: dict) -> None:
        if "lang_code" in values or not g.get("lang_code"):
            return
        if app.url_map.is_endpoint_expecting(endpoint, "lang_code"):
            values["lang_code"] = g.lang_code

    @app.get("/")
    def root() -> Response:
        """Send the visitor to the home page in the language their browser prefers."""
        response = redirect(url_for("pages.home", lang_code=preferred_language()), 302)
        response.headers["Vary"] = "Accept-Language"
        return response
