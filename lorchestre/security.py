"""Security headers for every response, and the production start-up checks."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, request
from flask import Request as FlaskRequest
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response

from .config import DEV_SECRET_KEY

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)


class InsecureConfiguration(RuntimeError):
    """Production was asked to start with a setting that would expose visitors."""


def check_production_config(app: Flask) -> None:
    """Refuse to start in production with the development secret or insecure cookies."""
    if app.config["ENV_NAME"] != "production":
        return
    secret = app.config.get("SECRET_KEY") or ""
    if secret == DEV_SECRET_KEY or len(secret) < 32:
        raise InsecureConfiguration(
            "LORCHESTRE_SECRET_KEY must be set to a random value of 32+ characters "
            "in production (the development key is refused)."
        )
    if not app.config["COOKIE_SECURE"]:
        raise InsecureConfiguration(
            "LORCHESTRE_COOKIE_SECURE=false is refused in production."
        )


class Request(FlaskRequest):
    """Flask's request, with two form-parsing gaps closed.

    Werkzeug counts only multipart parts; a URL-encoded body within
    MAX_CONTENT_LENGTH could still carry thousands of fields. Both now answer 413.
    A multipart part without a name came out under the key None, on which
    Flask-WTF's token lookup crashed (500): such parts are dropped.
    """

    def _load_form_data(self) -> None:
        super()._load_form_data()
        parsed = self.__dict__  # where Werkzeug caches form and files
        for name in ("form", "files"):
            if None not in parsed[name]:
                continue
            for value in parsed[name].getlist(None):
                if hasattr(value, "close"):
                    value.close()  # a dropped upload is never closed by Flask
            parsed[name] = self.parameter_storage_class(
                (key, value)
                for key, value in parsed[name].items(multi=True)
                if key is not None
            )
        limit = self.max_form_parts
        if limit is None:
            return
        fields = sum(len(values) for _, values in self.form.lists())
        if fields + sum(len(values) for _, values in self.files.lists()) > limit:
            raise RequestEntityTooLarge()


def _hostname(url: str) -> str | None:
    """The lower-case host name of a URL, or None when it has none or is malformed."""
    try:
        return urlsplit(url).hostname
    except ValueError:  # e.g. "http://[oops"
        return None


def _origin_is_foreign() -> bool:
    """An Origin header naming another host (or "null") on a state-changing request."""
    origin = request.headers.get("Origin")
    if origin is None:
        return False  # older browsers and privacy tools: the CSRF token still applies
    hostname = _hostname(origin)
    return hostname is None or hostname != _hostname(f"//{request.host}")


def init_app(app: Flask) -> None:
    """Attach the request checks and the headers every response carries."""
    app.request_class = Request

    @app.before_request
    def _same_origin_writes() -> None:
        # Defence in depth next to Flask-WTF, which checks Referer only over HTTPS.
        if request.method in UNSAFE_METHODS and _origin_is_foreign():
            raise CSRFError("The request comes from another origin.")

    @app.after_request
    def _security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault(
            "Permissions-Policy", "interest-cohort=(), browsing-topics=()"
        )
        if request.is_secure:
            headers.setdefault(
                "Strict-Transport-Security", "max-age=63072000; includeSubDomains"
            )
        return response
