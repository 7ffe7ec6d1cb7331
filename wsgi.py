"""WSGI entry point for gunicorn (`gunicorn wsgi:app`): production unless told otherwise."""

import os

from lorchestre import create_app

os.environ.setdefault("LORCHESTRE_ENV_NAME", "production")
app = create_app()
