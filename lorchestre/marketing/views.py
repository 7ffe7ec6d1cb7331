"""Unsubscribe from marketing e-mails: GET asks, POST does it (also RFC 8058)."""

from __future__ import annotations

from flask import Blueprint, g, render_template, request

from ..extensions import csrf
from . import services
from .services import LIST_UNSUBSCRIBE_POST, InvalidUnsubscribeLink

bp = Blueprint("marketing", __name__)


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
# The signed link is the credential: a mail provider's one-click POST has no session.
@csrf.exempt
def unsubscribe(token: str) -> str | tuple[str, int]:
    """GET shows a button (mail scanners prefetch links); POST unsubscribes."""
    try:
        public_id = services.check_unsubscribe_token(token)
    except InvalidUnsubscribeLink:
        return render_template("marketing/unsubscribe.html", state="invalid"), 400
    if request.method == "GET":
        return render_template("marketing/unsubscribe.html", state="confirm")
    one_click = (
        request.form.get("List-Unsubscribe") == LIST_UNSUBSCRIBE_POST.partition("=")[2]
    )
    services.unsubscribe(
        public_id,
        channel="one_click" if one_click else "unsubscribe_link",
        language=g.lang_code,
    )
    return render_template("marketing/unsubscribe.html", state="done")
