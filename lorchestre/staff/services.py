"""Staff accounts and sessions: roles, Argon2id passwords, session versions, throttling, TOTP."""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from typing import Any

import pyotp
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from flask import current_app, session
from flask_babel import lazy_gettext as _l
from flask_limiter.util import get_remote_address
from flask_login import login_user, logout_user
from limits import parse

from ..database import utcnow, write_transaction
from ..extensions import db, limiter, login_manager
from ..models import StaffUser
from .audit import add_event, log_event

ROLES = ("marketing", "dpo", "admin")
# Argon2 accepts any length; the cap bounds the work one request can ask for.
MAX_PASSWORD_LENGTH = 1024
TOTP_PENDING_KEY = "staff_totp_pending"
TOTP_PENDING_SECONDS = 300


class AccountError(ValueError):
    """An account operation was refused; the message may be shown to the user."""


def role_at_least(role: str, minimum: str) -> bool:
    """Whether ``role`` includes the rights of ``minimum`` (admin ⊃ dpo ⊃ marketing)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(minimum)


def normalise_email(raw: str) -> str:
    """The canonical, lower-case form of a staff address; raises AccountError."""
    try:
        return validate_email(
            raw.strip(), check_deliverability=False
        ).normalized.lower()
    except EmailNotValidError as exc:
        raise AccountError(_l("This is not a valid e-mail address.")) from exc


def check_password_strength(password: str, email: str) -> None:
    """Refuse passwords that are too short, too long or the address itself."""
    minimum = current_app.config["STAFF_PASSWORD_MIN_LENGTH"]
    if len(password) < minimum:
        raise AccountError(
            _l("The password must have at least %(num)d characters.", num=minimum)
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(
            _l(
                "The password may have at most %(num)d characters.",
                num=MAX_PASSWORD_LENGTH,
            )
        )
    if password.strip().lower() == email.lower():
        raise AccountError(_l("The password must not be the e-mail address."))


def _hasher() -> PasswordHasher:
    """This app's Argon2id hasher, built once from STAFF_ARGON2_PARAMS."""
    extensions = current_app.extensions
    if "lorchestre_argon2" not in extensions:
        hasher = PasswordHasher(**current_app.config["STAFF_ARGON2_PARAMS"])
        # Verified against when the account is unknown, so both cases cost the same.
        extensions["lorchestre_argon2"] = (hasher, hasher.hash("unknown account"))
    return extensions["lorchestre_argon2"][0]


def _dummy_hash() -> str:
    _hasher()
    return current_app.extensions["lorchestre_argon2"][1]


def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def get_by_email(email: str) -> StaffUser | None:
    """The account with this (normalised) address, if any."""
    return db.session.scalars(
        sa.select(StaffUser).where(StaffUser.email == email)
    ).first()


def find_account(raw_email: str) -> StaffUser:
    """The account for an address typed by an operator; raises AccountError."""
    user = get_by_email(normalise_email(raw_email))
    if user is None:
        raise AccountError(_l("There is no staff account with this e-mail address."))
    return user


def list_accounts() -> list[StaffUser]:
    """Every staff account, by address."""
    return list(db.session.scalars(sa.select(StaffUser).order_by(StaffUser.email)))


def create_account(
    email: str, password: str, role: str, *, actor: StaffUser | None = None
) -> StaffUser:
    """Create an active account; raises AccountError on a bad address, role or password."""
    email = normalise_email(email)
    if role not in ROLES:
        raise AccountError(_l("Unknown role."))
    check_password_strength(password, email)
    password_hash = _hasher().hash(password)  # slow: done before taking the write lock
    with write_transaction():
        if get_by_email(email) is not None:
            raise AccountError(
                _l("An account with this e-mail address already exists.")
            )
        user = StaffUser(
            email=email,
            password_hash=password_hash,
            role=role,
            active=True,
            session_version=1,
        )
        db.session.add(user)
        db.session.flush()
        add_event("staff.create", actor=actor, target=email, detail={"role": role})
    return user


def set_active(
    user_id: int, active: bool, *, actor: StaffUser | None = None
) -> StaffUser:
    """Enable or disable an account; disabling ends its sessions at once."""
    with write_transaction():
        user = db.session.get(StaffUser, user_id)
        if user is None:
            raise AccountError(_l("There is no such staff account."))
        if actor is not None and actor.id == user.id and not active:
            raise AccountError(_l("You cannot disable your own account."))
        user.active = active
        user.session_version += 1
        add_event(
            "staff.enable" if active else "staff.disable",
            actor=actor,
            target=user.email,
        )
    return user


def reset_password(
    user_id: int,
    password: str,
    *,
    clear_totp: bool = False,
    actor: StaffUser | None = None,
) -> StaffUser:
    """Set a new password (operator's reset); every session of the account ends."""
    user = db.session.get(StaffUser, user_id)
    if user is None:
        raise AccountError(_l("There is no such staff account."))
    check_password_strength(password, user.email)
    password_hash = _hasher().hash(password)
    with write_transaction():
        user = db.session.get(StaffUser, user_id)
        user.password_hash = password_hash
        user.password_changed_at = utcnow()
        user.session_version += 1
        if clear_totp:
            user.totp_secret = None
            user.totp_last_step = None
        add_event(
            "staff.reset_password",
            actor=actor,
            target=user.email,
            detail={"totp_cleared": clear_totp},
        )
    return user


def change_password(user: StaffUser, current: str, new: str) -> None:
    """The signed-in user's own change: other sessions end, this one carries on."""
    if not _password_matches(user.password_hash, current):
        raise AccountError(_l("The current password is not correct."))
    check_password_strength(new, user.email)
    password_hash = _hasher().hash(new)
    with write_transaction():
        user.password_hash = password_hash
        user.password_changed_at = utcnow()
        user.session_version += 1
        add_event("account.password_changed", actor=user)
    login_user(user)


# --- Sign-in and sessions --------------------------------------------------------------


def authenticate(raw_email: str, password: str) -> StaffUser | None:
    """The active account these credentials open, or None, in about the same time either way."""
    try:
        user = get_by_email(normalise_email(raw_email))
    except AccountError:
        user = None
    if user is None or len(password) > MAX_PASSWORD_LENGTH:
        _password_matches(_dummy_hash(), password)
        return None
    if not _password_matches(user.password_hash, password):
        log_event("login.failed", actor=user, detail={"reason": "password"})
        return None
    if not user.active:
        log_event("login.failed", actor=user, detail={"reason": "disabled"})
        return None
    if _hasher().check_needs_rehash(user.password_hash):
        # Parameters were raised since this hash was made: upgrade it while we can.
        new_hash = _hasher().hash(password)
        with write_transaction():
            user.password_hash = new_hash
    return user


def begin_session(user: StaffUser, *, second_factor: bool = False) -> None:
    """Sign the account in: record the login, then start a fresh session."""
    with write_transaction():
        user.last_login_at = utcnow()
        add_event("login", actor=user, detail={"totp": second_factor})
    session.clear()  # nothing from before the login (a pending step, a stale token) survives
    session.permanent = True  # idle sessions expire after PERMANENT_SESSION_LIFETIME
    login_user(user)


def end_session(user: StaffUser) -> None:
    """Sign out everywhere: the new session version makes any copied cookie worthless."""
    with write_transaction():
        user.session_version += 1
        add_event("logout", actor=user)
    logout_user()
    session.clear()


@login_manager.user_loader
def load_session_user(token: str) -> StaffUser | None:
    """The account a session cookie names, if still active and of the current version."""
    uid, sep, version = token.partition(":")
    if not sep or not uid.isdigit() or not version.isdigit():
        return None
    user = db.session.get(StaffUser, int(uid))
    if user is None or not user.active or user.session_version != int(version):
        return None
    return user


def _opaque(value: str) -> str:
    """A keyed digest, so rate-limit storage never holds a typed address."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, value.strip().lower().encode(), hashlib.sha256).hexdigest()[
        :32
    ]


def throttle(scope: str, account_key: str) -> int | None:
    """Count one attempt for the account and the client: None if allowed, else seconds to wait."""
    if not limiter.enabled:
        return None
    strategy = limiter.limiter
    config = current_app.config
    checks = (
        (
            config["STAFF_LOGIN_LIMIT_PER_ACCOUNT"],
            f"{scope}-account",
            _opaque(account_key),
        ),
        (
            config["STAFF_LOGIN_LIMIT_PER_CLIENT"],
            f"{scope}-client",
            get_remote_address(),
        ),
    )
    for limit, name, key in checks:
        item = parse(limit)
        if not strategy.hit(item, name, key):
            reset_at, _remaining = strategy.get_window_stats(item, name, key)
            return max(1, math.ceil(reset_at - time.time()))
    return None


def clear_throttle(scope: str, account_key: str) -> None:
    """Forget an account's failed attempts after it signed in."""
    if limiter.enabled:
        item = parse(current_app.config["STAFF_LOGIN_LIMIT_PER_ACCOUNT"])
        limiter.limiter.clear(item, f"{scope}-account", _opaque(account_key))


# --- TOTP second factor ------------------------------------------------------------------


def new_totp_secret() -> str:
    """A fresh base32 secret (160 bits)."""
    return pyotp.random_base32(32)


def totp_uri(user: StaffUser, secret: str) -> str:
    """The otpauth:// URI an authenticator app can import."""
    return pyotp.TOTP(secret).provisioning_uri(
        name=user.email, issuer_name=current_app.config["STAFF_TOTP_ISSUER"]
    )


def match_totp(secret: str, code: str, last_step: int | None) -> int | None:
    """The time step ``code`` is valid for (±30 s), unless already used; else None."""
    code = "".join(code.split())
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(utcnow())
    for step in (current - 1, current, current + 1):
        if last_step is not None and step <= last_step:
            continue  # a code is good once: a replayed or older one is refused
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def start_second_step(user: StaffUser, next_path: str) -> None:
    """Remember, for a few minutes, that this browser passed the password step."""
    session.clear()
    session[TOTP_PENDING_KEY] = {
        "uid": user.id,
        "v": user.session_version,
        "until": int(time.time()) + TOTP_PENDING_SECONDS,
        "next": next_path,
    }


def pending_second_step() -> tuple[StaffUser, str] | None:
    """The account waiting for its code in this session, and where to go next."""
    data: dict[str, Any] | None = session.get(TOTP_PENDING_KEY)
    if not isinstance(data, dict) or data.get("until", 0) < time.time():
        return None
    user = db.session.get(StaffUser, data.get("uid"))
    if (
        user is None
        or not user.active
        or not user.totp_secret
        or user.session_version != data.get("v")
    ):
        return None
    return user, str(data.get("next", ""))


def complete_second_step(user: StaffUser, code: str) -> bool:
    """Check the code, spend its time step, and sign in; False if the code is wrong."""
    step = match_totp(user.totp_secret or "", code, user.totp_last_step)
    if step is None:
        log_event("login.failed", actor=user, detail={"reason": "totp"})
        return False
    # Spend the step with a conditional UPDATE, so two requests racing with one code
    # cannot both succeed on either database.
    with write_transaction():
        spent = db.session.execute(
            sa.update(StaffUser)
            .where(
                StaffUser.id == user.id,
                sa.or_(
                    StaffUser.totp_last_step.is_(None), StaffUser.totp_last_step < step
                ),
            )
            .values(totp_last_step=step)
        ).rowcount
    if spent != 1:
        return False
    begin_session(user, second_factor=True)
    return True


def enable_totp(user: StaffUser, secret: str, code: str) -> bool:
    """Turn the second factor on once the user proves their app has the secret."""
    step = match_totp(secret, code, None)
    if step is None:
        return False
    with write_transaction():
        user.totp_secret = secret
        user.totp_last_step = step
        user.session_version += 1
        add_event("account.totp_enabled", actor=user)
    login_user(user)
    return True


def disable_totp(user: StaffUser, password: str) -> None:
    """Turn the second factor off, after re-entering the password."""
    if not _password_matches(user.password_hash, password):
        raise AccountError(_l("The current password is not correct."))
    with write_transaction():
        user.totp_secret = None
        user.totp_last_step = None
        user.session_version += 1
        add_event("account.totp_disabled", actor=user)
    login_user(user)
