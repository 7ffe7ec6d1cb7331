"""Contact form: GET shows it; a valid POST stores the lead and redirects to thanks."""

from __future__ import annotations

from flask import Blueprint, current_app, g, redirect, render_template, url_for
from werkzeug.wrappers import Response

from ..database import DatabaseUnavailable
from ..errors import RETRY_AFTER_SECONDS
from ..extensions import limiter
from .forms import ContactForm
from .services import ContactSubmission, submit_contact

bp = Blueprint("contact", __name__)


def _rate_limit() -> str:
    """The configured per-client limit, read per request so tests and env can set it."""
    return current_app.config["CONTACT_RATE_LIMIT"]


@bp.route("/contact", methods=["GET", "POST"])
@limiter.limit(_rate_limit, methods=["POST"])
def form() -> Response | str | tuple[str, int, dict[str, str]]:
    """Show the form; on a valid POST store it and redirect (post/redirect/get)."""
    form = ContactForm()
    if form.validate_on_submit():
        # A filled honeypot gets the same answer as a person, and nothing is stored.
        if not form.is_bot():
            try:
                submit_contact(ContactSubmission.from_form(form, g.lang_code))
            except DatabaseUnavailable:
                current_app.logger.warning("contact form: database unavailable")
                page = render_template("contact/form.html", form=form, unavailable=True)
                return page, 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}
        return redirect(url_for("contact.thanks"), 303)
    return render_template("contact/form.html", form=form, unavailable=False)


@bp.get("/contact/thanks")
def thanks() -> str:
    """Confirmation after a message was sent."""
    return render_template("contact/thanks.html")
