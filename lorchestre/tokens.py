"""Signed tokens, one serializer per purpose so a token can never serve another purpose."""

from __future__ import annotations

from flask import current_app
from itsdangerous import URLSafeTimedSerializer

SALT_CONSENT_COOKIE = "lorchestre.consent-cookie.v1"
SALT_UNSUBSCRIBE = "lorchestre.marketing-unsubscribe.v1"
SALT_RIGHTS_REQUEST = "lorchestre.rights-request.v1"
SALT_RIGHTS_DOWNLOAD = "lorchestre.rights-download.v1"


def serializer(salt: str) -> URLSafeTimedSerializer:
    """A serializer keyed by the app's secret and the purpose's own salt."""
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt)
