"""Helpers shared by the contact, outbox and retention tests."""

from __future__ import annotations

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from .conftest import csrf_from

VALID = {
    "name": "Camille Martin",
    "email": "camille@example.fr",
    "message": "Bonjour, je cherche un parfum boisé.",
}


def post_contact(
    client: FlaskClient, lang: str = "en", *, headers: dict | None = None, **fields
) -> TestResponse:
    """GET the form (for its CSRF token), then POST the given fields over VALID."""
    page = client.get(f"/{lang}/contact")
    data = {"csrf_token": csrf_from(page.data), **VALID, **fields}
    data = {key: value for key, value in data.items() if value is not None}
    return client.post(f"/{lang}/contact", data=data, headers=headers or {})
