"""Contact page."""

from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("contact", __name__)


@bp.get("/contact")
def form() -> str:
    """How to reach the house."""
    return render_template("contact/form.html")
