"""Rendered public pages kept in memory, with the one per-visitor part filled in per request.

The home, privacy and legal pages depend only on the path, the language, the visitor's
consent choices (banner or gated tags) and the GPC signal; their only per-visitor text is
the CSRF token of the banner form. So the first render of each variant is kept with that
token replaced by a marker, and later requests put this visitor's own token back: same
bytes as a fresh render, without running some fifty gettext and thirty url_for calls.
Pages with a query string are rendered normally, so the cache cannot be grown from
outside; it is per process, bounded, and lost on restart (nothing in it is a secret).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import current_app, g, request
from flask_wtf.csrf import generate_csrf

from . import policy
from .consent.services import current_consent, gpc_signal

MARKER = "\x00csrf-token\x00"  # cannot occur in rendered HTML: text input refuses NUL
MAX_ENTRIES = 512


def _key() -> tuple | None:
    if request.query_string or request.method != "GET":
        return None
    state = current_consent()
    return (
        request.script_root,
        request.path,
        g.get("lang_code"),
        None if state is None else tuple(sorted(state.choices.items())),
        gpc_signal(),
        policy.CURRENT_POLICY.version,
    )


def cached_page(view: Callable[..., str]) -> Callable[..., Any]:
    """Serve ``view``'s HTML from the per-process cache when it allows it."""

    @wraps(view)
    def wrapper(**kwargs: Any) -> str:
        if not current_app.config.get("PAGE_CACHE", True):
            return view(**kwargs)
        key = _key()
        if key is None:
            return view(**kwargs)
        cache: dict = current_app.extensions.setdefault("lorchestre_page_cache", {})
        entry = cache.get(key)
        if entry is not None:
            template, has_token = entry
            return template.replace(MARKER, generate_csrf()) if has_token else template
        html = view(**kwargs)
        token = g.get(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"))
        if MARKER not in html:
            if len(cache) >= MAX_ENTRIES:
                cache.clear()
            cache[key] = (html.replace(token, MARKER), True) if token else (html, False)
        return html

    return wrapper
