"""Rights desk: how a visitor exercises their data-protection rights."""

from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("rights", __name__)


@bp.get("/my-data")
def desk() -> str:
    """The visitor's rights and how to exercise them."""
    return render_template("rights/desk.html")
