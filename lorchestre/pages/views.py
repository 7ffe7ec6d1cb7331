"""Public pages: home, privacy policy, legal notice, and the health check."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, current_app, g, render_template

from ..consent.declarations import load_categories
from ..extensions import db
from ..pagecache import cached_page
from ..policy import CURRENT_POLICY

bp = Blueprint("pages", __name__)
health_bp = Blueprint("health", __name__)


@bp.get("/")
@cached_page
def home() -> str:
    """Who the house is, and links to everything else."""
    return render_template("pages/home.html")


@bp.get("/privacy")
@cached_page
def privacy() -> str:
    """The privacy policy in the page's language, with the generated cookie table."""
    return render_template(
        "pages/privacy.html",
        policy=CURRENT_POLICY,
        policy_fragment=f"pages/policy/{g.lang_code}.html",
        categories=load_categories(),
    )


@bp.get("/legal")
@cached_page
def legal() -> str:
    """The legal notice (mentions légales)."""
    return render_template(
        "pages/legal.html", legal_fragment=f"pages/legal/{g.lang_code}.html"
    )


@health_bp.get("/healthz")
def healthz() -> tuple[str, int, dict[str, str]]:
    """200 "ok" when the app and its database answer, 503 otherwise."""
    headers = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}
    try:
        db.session.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError:
        current_app.logger.warning("health check: database not answering")
        db.session.rollback()
        return "database unavailable\n", 503, headers
    finally:
        db.session.rollback()
    return "ok\n", 200, headers
