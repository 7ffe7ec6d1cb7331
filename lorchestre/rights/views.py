"""Rights desk: ask by e-mail link, confirm by POST, see or download, correct, erase, object."""

from __future__ import annotations

import json

from flask import (
    Blueprint,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from ..database import utcnow
from ..errors import render_bilingual
from ..extensions import limiter
from ..policy import RIGHTS_REGISTER_YEARS
from . import services
from .forms import KIND_LABELS, RectifyForm, RequestForm
from .services import LinkProblem, Outcome

bp = Blueprint("rights", __name__)

LINK_PROBLEM_STATUS = {"invalid": 400, "expired": 410, "used": 410, "gone": 410}


def _rate_limit() -> str:
    """The configured per-client limit, read per request so tests and env can set it."""
    return current_app.config["RIGHTS_RATE_LIMIT"]


def _private(body: str, status: int = 200) -> Response:
    """A page showing someone's data: never stored by a browser or a proxy."""
    response = Response(body, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def _link_problem(problem: LinkProblem) -> Response:
    """The page for a link that must not act, and no data."""
    # The token itself is never logged: for a genuine one, that would be a credential.
    current_app.logger.info("rights desk: link refused (%s)", problem.state)
    body = render_bilingual(
        f"rights/link_{problem.state}.html", hours=services.link_hours()
    )
    return _private(body, LINK_PROBLEM_STATUS[problem.state])


@bp.route("/my-data", methods=["GET", "POST"])
@limiter.limit(_rate_limit, methods=["POST"])
def desk() -> Response | str:
    """The request form; every valid POST gets the same redirect, known address or not."""
    form = RequestForm()
    if form.validate_on_submit():
        services.submit_request(
            email=form.email.data,
            kind=form.kind.data,
            language=g.lang_code,
            consent_id=form.consent_id.data or None,
        )
        return redirect(url_for("rights.sent"), 303)
    return render_template("rights/desk.html", form=form, hours=services.link_hours())


@bp.get("/my-data/sent")
def sent() -> str:
    """What happens next; says nothing about whether the address is known."""
    return render_template("rights/sent.html", hours=services.link_hours())


@bp.route("/my-data/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str) -> Response:
    """GET shows what the link will do and changes nothing; only the POST acts."""
    try:
        public_id = services.check_link(token)
        pending = services.open_request(public_id)
    except LinkProblem as problem:
        return _link_problem(problem)
    form = RectifyForm(obj=pending) if pending.kind == "rectify" else FlaskForm()
    if form.validate_on_submit():
        changes = form.changes() if isinstance(form, RectifyForm) else None
        try:
            outcome = services.carry_out(public_id, changes)
        except LinkProblem as problem:
            return _link_problem(problem)
        return _private(_render_outcome(outcome))
    body = render_template(
        "rights/confirm.html",
        pending=pending,
        form=form,
        register_years=RIGHTS_REGISTER_YEARS,
    )
    return _private(body)


def _render_outcome(outcome: Outcome) -> str:
    """The page that says what a confirmed request did."""
    if outcome.kind == "access":
        return render_template(
            "rights/report.html",
            report=outcome.report,
            grant=outcome.download_grant,
            kind_labels=KIND_LABELS,
        )
    return render_template(
        "rights/done.html", outcome=outcome, register_years=RIGHTS_REGISTER_YEARS
    )


@bp.post("/my-data/download")
def download() -> Response:
    """The access report as a JSON file, for the page that just showed it."""
    try:
        report = services.download_report(request.form.get("grant", ""))
    except LinkProblem as problem:
        return _link_problem(problem)
    body = json.dumps(
        report,
        ensure_ascii=False,
        indent=2,
        default=services.report_json_default,
    )
    filename = f"lorchestre-parfum-my-data-{utcnow():%Y-%m-%d}.json"
    return Response(
        body + "\n",
        mimetype="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
