"""Consent endpoints: POST /consent, the preferences page, and the GPC well-known file."""

from __future__ import annotations

import sqlalchemy as sa
from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
)
from flask_babel import force_locale
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from ..database import DatabaseUnavailable
from ..errors import RETRY_AFTER_SECONDS
from ..extensions import db, limiter
from .declarations import load_categories
from .forms import InvalidSubmission, parse_submission
from .ledger import format_timestamp
from .services import (
    COOKIE_NAME,
    REFUSALS,
    choices_for,
    current_consent,
    expire_refused_cookies,
    gpc_signal,
    history,
    record_choice,
    set_consent_cookie,
)

bp = Blueprint("consent", __name__)
public_bp = Blueprint("consent_public", __name__)


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > 0


def _consent_rate_limit() -> str:
    """The configured per-client limit, read per request so tests and env can set it."""
    return current_app.config["CONSENT_RATE_LIMIT"]


@public_bp.after_request
def _rate_limited_means_nothing_optional(response: Response) -> Response:
    """A POST refused by the rate limit was not recorded: fail closed like a 503."""
    if response.status_code == 429 and request.method == "POST":
        leave_nothing_optional(response)
    return response


@public_bp.post("/consent")
@limiter.limit(_consent_rate_limit)
def record() -> Response:
    """Record a banner or preferences-page choice, then set the cookie."""
    try:
        submission = parse_submission(request.form)
    except InvalidSubmission:
        abort(400)
    g.lang_code = submission.lang  # error pages and messages in the visitor's language
    as_json = _wants_json()
    choices = choices_for(submission.action, submission.selected)
    state = current_consent()
    try:
        recorded = record_choice(
            action=submission.action,
            choices=choices,
            locale=submission.lang,
            channel="js" if as_json else "form",
            gpc=gpc_signal(),
            consent_id=state.consent_id if state else None,
        )
    except DatabaseUnavailable:
        return _not_recorded(submission.action, submission.lang, as_json)

    if as_json:
        response = jsonify(
            consent_id=recorded.consent_id,
            choices=recorded.choices,
            recorded_at=format_timestamp(recorded.recorded_at),
        )
    else:
        response = redirect(submission.next_path, 303)
    set_consent_cookie(response, recorded)
    expire_refused_cookies(response, recorded.choices)
    return response


def _not_recorded(action: str, lang: str, as_json: bool) -> Response:
    """Fail closed: nothing optional is enabled; a refusal is still applied."""
    refusal = action in REFUSALS
    messages = {}
    for locale in ("fr", "en"):
        with force_locale(locale):
            messages[locale] = (
                _(
                    "Your refusal has been applied, but we could not record it. Please try again later."
                )
                if refusal
                else _(
                    "We could not record your choice, so nothing optional has been enabled. Please try again in a moment."
                )
            )
    if as_json:
        response = jsonify(error="unavailable", message=messages)
    else:
        response = Response(
            render_template("consent/unavailable.html", messages=messages, lang=lang),
            mimetype="text/html",
        )
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    leave_nothing_optional(response)
    return response


def leave_nothing_optional(response: Response) -> None:
    """For a choice that was not recorded: no optional cookie, no consent granting one.

    A consent cookie that grants any category is dropped too, or an earlier
    acceptance would stay in force over the refusal the visitor just made. One that
    grants nothing is already the safe state and is kept (no banner nagging).
    """
    expire_refused_cookies(response, choices_for("reject_all"))
    state = current_consent()
    if state and any(state.choices.values()):
        response.delete_cookie(
            COOKIE_NAME,
            path="/",
            secure=current_app.config["COOKIE_SECURE"],
            httponly=True,
            samesite="Lax",
        )


@bp.get("/cookies")
def preferences() -> str:
    """Current choices, consent ID and history; change or withdraw."""
    state = current_consent()
    records, unavailable = [], False
    if state:
        try:
            records = history(state.consent_id)
        except sa.exc.SQLAlchemyError:
            # The page must still work without the database: it is where a
            # visitor withdraws, and a refusal is honoured even when unlogged.
            current_app.logger.warning("preferences: consent history unavailable")
            db.session.rollback()
            unavailable = True
    return render_template(
        "consent/preferences.html",
        state=state,
        records=records,
        history_unavailable=unavailable,
        categories=load_categories(),
    )


@public_bp.get("/.well-known/gpc.json")
def gpc_json() -> Response:
    """Declare that this site honours Global Privacy Control."""
    response = jsonify(gpc=True, lastUpdate="2026-11-25")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response
