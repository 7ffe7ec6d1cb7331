"""Configuration defaults: safe for local development, overridden by LORCHESTRE_* variables."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PROJECT_ROOT / "templates"
STATIC_DIR = PROJECT_ROOT / "static"
TRANSLATIONS_DIR = PROJECT_ROOT / "translations"

DEV_SECRET_KEY = "dev-only-secret-key-never-use-in-production"

LANGUAGES = ("fr", "en")
DEFAULT_LANGUAGE = "fr"


class DefaultConfig:
    """Development defaults; every name can be overridden as LORCHESTRE_<NAME>."""

    ENV_NAME = "development"  # "production" turns on the strict start-up checks
    SECRET_KEY = DEV_SECRET_KEY
    SQLALCHEMY_DATABASE_URI: str | None = None  # None: SQLite in instance/
    SQLALCHEMY_ENGINE_OPTIONS: dict = {}
    SQLITE_BUSY_TIMEOUT_MS = 5000
    POSTGRES_LOCK_TIMEOUT_MS = 5000  # same role on PostgreSQL (lock_timeout per write)

    BABEL_DEFAULT_LOCALE = DEFAULT_LANGUAGE
    BABEL_TRANSLATION_DIRECTORIES = str(TRANSLATIONS_DIR)

    # Cookies: Secure by default; development turns it off through the env file.
    COOKIE_SECURE = True
    SESSION_COOKIE_NAME = "lorchestre_session"
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    PERMANENT_SESSION_LIFETIME = 60 * 60 * 8

    MAX_CONTENT_LENGTH = 64 * 1024
    MAX_FORM_PARTS = 100
    WTF_CSRF_TIME_LIMIT = (
        None  # tied to the session instead, so a long read never loses a form
    )

    # Number of reverse proxies in front of the app whose X-Forwarded-* headers are trusted.
    PROXY_COUNT = 0
    TRUSTED_HOSTS: list[str] | None = None

    # Rate limits (Flask-Limiter); "memory://" is per process, use redis:// with several.
    RATELIMIT_STORAGE_URI = "memory://"
    RATELIMIT_HEADERS_ENABLED = True
    # Redis keys are "<key_prefix>:LIMITER/..."; short timeouts, so a Redis that stops
    # answering costs one request half a second before the fallback below takes over.
    RATELIMIT_STORAGE_OPTIONS: dict = {
        "key_prefix": "lorchestre",
        "socket_connect_timeout": 0.5,
        "socket_timeout": 0.5,
    }
    # Fail open when Redis is down: limits are abuse protection, never a reason to lose
    # a visitor's refusal. Each process keeps counting in memory meanwhile (the limit
    # becomes per process, it does not vanish) and returns to Redis once it answers.
    # Flask-Limiter reads these two once per process, from the first app it sees.
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    RATELIMIT_SWALLOW_ERRORS = True
    # POST /consent per client address: generous, a person clicks a few times at most.
    CONSENT_RATE_LIMIT = "60 per minute"

    BASE_URL = "http://127.0.0.1:5000"

    # Dated screenshots of the banner per policy version (a CNIL proof method); the
    # audit bundle includes them. None: instance/banner-screenshots.
    BANNER_SCREENSHOTS_DIR: str | None = None

    # Contact form: Flask-Limiter syntax, counted per client address on POST only.
    CONTACT_RATE_LIMIT = "5 per minute; 30 per day"

    # Rights desk (/<lang>/my-data): requests per client (Flask-Limiter syntax, POST
    # only); confirmation e-mails per address in any 24 hours, whoever asks; how long
    # the link in that e-mail and the download button of an access report work.
    RIGHTS_RATE_LIMIT = "5 per minute; 20 per day"
    RIGHTS_ADDRESS_LIMIT = 3
    RIGHTS_LINK_MAX_AGE = 24 * 60 * 60
    RIGHTS_DOWNLOAD_MAX_AGE = 60 * 60

    # E-mail (Flask-Mailman). SMTP when MAIL_SERVER is set; otherwise each message is
    # written as an .eml file into MAIL_FILE_PATH (default instance/outbox/). Links in
    # e-mails are built on BASE_URL, never on the request's Host.
    MAIL_SERVER: str | None = None
    MAIL_PORT = 587
    MAIL_USE_TLS = True  # STARTTLS on the submission port
    MAIL_USE_SSL = False
    MAIL_USERNAME: str | None = None
    MAIL_PASSWORD: str | None = None
    MAIL_TIMEOUT = 30  # seconds; a stuck server must not stall the outbox forever
    MAIL_DEFAULT_SENDER = "L'ORCHESTRE PARFUM <contact@lorchestreparfum.com>"
    MAIL_BACKEND: str | None = None  # None: derived from the settings above
    MAIL_FILE_PATH: str | None = None
    HOUSE_NOTIFICATION_ADDRESS = "contact@lorchestreparfum.com"

    # Outbox delivery: exponential back-off from OUTBOX_RETRY_BASE_SECONDS, capped, then
    # given up after OUTBOX_MAX_ATTEMPTS; a claim older than the timeout is retried.
    OUTBOX_MAX_ATTEMPTS = 10
    OUTBOX_RETRY_BASE_SECONDS = 60
    OUTBOX_RETRY_MAX_SECONDS = 6 * 60 * 60
    OUTBOX_CLAIM_TIMEOUT_SECONDS = 15 * 60
    OUTBOX_KEEP_DAYS = 30  # delivered or abandoned mails are deleted after this

    # Staff area (spec §8). Login attempts are counted in the rate-limit storage above.
    # Flask-Login: a staff session moved to another address or browser is dropped.
    SESSION_PROTECTION = "strong"
    STAFF_LOGIN_LIMIT_PER_ACCOUNT = "5 per 15 minutes"
    STAFF_LOGIN_LIMIT_PER_CLIENT = "30 per 15 minutes"
    STAFF_PASSWORD_MIN_LENGTH = 12
    # Argon2id cost; {} keeps argon2-cffi's RFC 9106 low-memory profile (t=3, 64 MiB, p=4).
    # Hashes made with other parameters are upgraded at the next successful login.
    STAFF_ARGON2_PARAMS: dict = {}
    STAFF_TOTP_ISSUER = "L'ORCHESTRE PARFUM"
    # The staff statistics count UTC days; a day is rolled up this long after it ends.
    STAFF_ROLLUP_GRACE_MINUTES = 15
    # Contact for data protection questions, printed in the processing register.
    DPO_CONTACT = "contact@lorchestreparfum.com"
