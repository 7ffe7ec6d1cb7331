"""L'ORCHESTRE PARFUM: the application factory."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from flask import Flask

from . import cli, errors, i18n, outbox, security, templating
from .config import STATIC_DIR, TEMPLATES_DIR, DefaultConfig
from .database import configure_engine
from .extensions import babel, csrf, db, limiter, login_manager, mail, migrate


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the application: config, extensions, i18n, blueprints, errors, CLI."""
    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder=str(TEMPLATES_DIR),
        static_folder=str(STATIC_DIR),
    )
    app.config.from_object(DefaultConfig)
    # Own copies of the dict/list defaults: LORCHESTRE_A__B=... edits nested values in
    # place, which would otherwise change DefaultConfig for every later app.
    for key, value in list(app.config.items()):
        if isinstance(value, dict | list):
            app.config[key] = copy.deepcopy(value)
    app.config.from_prefixed_env("LORCHESTRE")
    if test_config:
        app.config.update(test_config)
    _derive_settings(app)
    security.check_production_config(app)

    _init_extensions(app)
    i18n.init_app(app)
    security.init_app(app)
    templating.init_app(app)
    _register_blueprints(app)
    errors.init_app(app)
    cli.init_app(app)
    return app


def _derive_settings(app: Flask) -> None:
    """Fill the settings that follow from others (database path, cookie flags)."""
    config = app.config
    if not config.get("SQLALCHEMY_DATABASE_URI"):
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        config["SQLALCHEMY_DATABASE_URI"] = (
            f"sqlite:///{Path(app.instance_path) / 'lorchestre.db'}"
        )
    config["SESSION_COOKIE_SECURE"] = bool(config["COOKIE_SECURE"])
    # Test pooled connections before use, so a restarted PostgreSQL costs no request.
    config["SQLALCHEMY_ENGINE_OPTIONS"] = {
        "pool_pre_ping": True,
        **config["SQLALCHEMY_ENGINE_OPTIONS"],
    }
    config["BANNER_SCREENSHOTS_DIR"] = Path(
        config.get("BANNER_SCREENSHOTS_DIR")
        or Path(app.instance_path) / "banner-screenshots"
    )

    if not config.get("MAIL_FILE_PATH"):
        config["MAIL_FILE_PATH"] = str(Path(app.instance_path) / "outbox")
    if not config.get("MAIL_BACKEND"):
        config["MAIL_BACKEND"] = outbox.default_backend(config)
    if config.get("PROXY_COUNT"):
        from werkzeug.middleware.proxy_fix import ProxyFix

        count = int(config["PROXY_COUNT"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)


def _init_extensions(app: Flask) -> None:
    """Bind the extension singletons to this app."""
    db.init_app(app)
    with app.app_context():
        configure_engine(db.engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])
    migrate.init_app(
        app,
        db,
        directory=str(Path(__file__).parent / "migrations"),
        render_as_batch=True,
    )
    csrf.init_app(app)
    babel.init_app(app, locale_selector=i18n.current_language)
    limiter.init_app(app)
    _limit_only_where_declared(app)
    mail.init_app(app)

    # current_user is given to staff templates only, so public pages never load a user.
    login_manager.init_app(app, add_context_processor=False)
    app.jinja_env.policies["ext.i18n.trimmed"] = True
    app.jinja_env.add_extension("jinja2.ext.do")


def _limit_only_where_declared(app: Flask) -> None:
    """Drop Flask-Limiter's check of every request; the routes with a limit check their own.

    The site sets no default, application or blueprint limit: its limits are declared on
    the few routes that take a form (``@limiter.limit``), and that decorator checks them
    itself. The before_request hook then found nothing to check, at a cost of about
    0.2 ms a request, 40 % of a cached page (docs/performance.md, item 10). A default
    or application limit set in the configuration would need the hook: it then stays.
    """
    config = app.config
    if config.get("RATELIMIT_DEFAULT") or config.get("RATELIMIT_APPLICATION"):
        return  # a limit for every route: the hook is needed after all
    hooks = app.before_request_funcs.get(None, [])
    hooks[:] = [hook for hook in hooks if hook != limiter._check_request_limit]


def _register_blueprints(app: Flask) -> None:
    """Register one blueprint per feature."""
    from .consent.views import bp as consent_bp
    from .consent.views import public_bp as consent_public_bp
    from .contact.views import bp as contact_bp
    from .marketing.views import bp as marketing_bp
    from .pages.views import bp as pages_bp
    from .pages.views import health_bp
    from .rights.views import bp as rights_bp
    from .staff.views import bp as staff_bp

    app.register_blueprint(pages_bp, url_prefix=i18n.LANG_PREFIX)
    app.register_blueprint(health_bp)
    app.register_blueprint(consent_bp, url_prefix=i18n.LANG_PREFIX)
    app.register_blueprint(consent_public_bp)
    app.register_blueprint(contact_bp, url_prefix=i18n.LANG_PREFIX)
    app.register_blueprint(rights_bp, url_prefix=i18n.LANG_PREFIX)
    app.register_blueprint(marketing_bp, url_prefix=i18n.LANG_PREFIX)

    # Staff pages are not language-prefixed: they follow the browser's language.
    app.register_blueprint(staff_bp, url_prefix="/staff")
