"""What every template can use: consent gating, the language switch, the banner's data."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, g, request, url_for
from flask_babel import format_date, format_datetime, get_locale
from werkzeug.routing import BuildError

from .consent.declarations import load_categories
from .consent.services import consented, current_consent, gpc_signal
from .i18n import current_language, other_language


def switch_language_url() -> str:
    """The same page in the other language, or that language's home page."""
    target = other_language(current_language())
    if request.endpoint and request.view_args is not None and g.get("lang_code"):
        try:
            return url_for(request.endpoint, **request.view_args, lang_code=target)
        except BuildError:
            pass
    return url_for("pages.home", lang_code=target)


def current_path() -> str:
    """This page's path and query, for the banner's ``next`` field."""
    path = request.full_path
    return path[:-1] if path.endswith("?") else path


# "1 décembre" is written "1er décembre" in French; Babel's patterns do not know it.
_FRENCH_FIRST = re.compile(r"(?<![\d.,:])1(?=[ \u00a0][^\W\d_])")


def _french_ordinal_first(text: str) -> str:
    locale = get_locale()
    if locale is None or locale.language != "fr":
        return text
    return _FRENCH_FIRST.sub("1er", text)


def local_date(value: Any, format: str | None = None) -> str:
    """Flask-Babel's format_date, with the French "1er" for the first of the month."""
    return _french_ordinal_first(format_date(value, format))


def local_datetime(value: Any, format: str | None = None) -> str:
    """Flask-Babel's format_datetime, with the French "1er" for the first of the month."""
    return _french_ordinal_first(format_datetime(value, format))


def init_app(app: Flask) -> None:
    """Expose the helpers to Jinja."""
    app.jinja_env.globals.update(
        consented=consented,
        current_consent=current_consent,
        gpc_signal=gpc_signal,
        switch_language_url=switch_language_url,
        current_path=current_path,
        consent_categories=load_categories,
        format_date=local_date,
        format_datetime=local_datetime,
    )

    @app.context_processor
    def _language() -> dict[str, str]:
        lang = current_language()
        return {"lang": lang, "other_lang": other_language(lang)}
